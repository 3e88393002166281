// Block streaming for a transformer given as a list of blocks (memory mode `stream`, issue #13):
// blocks [resident_blocks, L) stay in (pinned) host memory and are copied to the device before
// they run, the next block's copy on a side stream while the current one computes, and let go
// after; everything else of the model is moved to the device. The same machinery as the 20B
// transformer's TransformerPlacement (models/offload.h HostWeights), without its modulation
// precompute: it serves the Qwen-Image-2.1 transformer, whose one shared modulation is computed
// in the forward. On the CPU the "device" copies are real host copies, so tests run it and get
// the resident numbers bit for bit.
#pragma once

#include <torch/torch.h>

#include <optional>
#include <vector>

#include "models/block_hooks.h"
#include "models/offload.h"

namespace qwen::models {

class BlockStreamer : public BlockHooks {
 public:
  // `model` is loaded (on the CPU, or on `device`); `blocks` is its list of blocks. Afterwards
  // blocks [resident_blocks, L) are in host memory and every other tensor of `model` on `device`.
  BlockStreamer(torch::nn::Module& model, torch::nn::ModuleList& blocks, torch::Device device,
                int64_t resident_blocks, bool pin = true);
  void before_block(size_t index) override;
  void after_block(size_t index) override;
  void release_all() override;

  const PlacementStats& stats() const { return stats_; }
  int64_t streamed_blocks() const;
  int64_t host_bytes() const;  // weights kept in host memory

 private:
  void prefetch(size_t index);
  std::vector<HostWeights> blocks_;  // streamed blocks (empty entries for resident ones)
  std::optional<c10::Stream> side_;
  PlacementStats stats_;
};

}  // namespace qwen::models
