// Block streaming (memory mode `stream`, issue #13), the one home of it for both transformers:
// blocks [resident_blocks, L) stay in (pinned) host memory and are copied to the device before
// they run, the next block's copy on a side stream while the current one computes, the first
// block of each pass during the previous pass (begin_passes), and let go after. It serves the
// Qwen-Image-2.1 transformer directly (its one shared modulation is computed in the forward) and
// the 20B transformer through TransformerPlacement (models/offload.h), which adds the per-job
// modulation precompute. On the CPU the "device" copies are real host copies, so tests run it and
// get the resident numbers bit for bit.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "models/block_hooks.h"
#include "models/offload.h"

namespace qwen::models {

class BlockStreamer : public BlockHooks {
 public:
  using Take = std::function<bool(const std::string&)>;
  // `model` is loaded (on the CPU, or on `device`, or placed by a HostLoad with
  // streamed_name()); `blocks` is its list of blocks. Afterwards blocks [resident_blocks, L) are
  // in host memory and every other tensor of `model` on `device`.
  BlockStreamer(torch::nn::Module& model, torch::nn::ModuleList& blocks, torch::Device device,
                int64_t resident_blocks, bool pin = true);
  // Only the blocks: the tensors of blocks [resident_blocks, L) that `take` accepts (names inside
  // the block, every one when empty) go to host memory; nothing else moves.
  BlockStreamer(torch::nn::ModuleList& blocks, torch::Device device, int64_t resident_blocks,
                bool pin, const Take& take);
  void before_block(size_t index) override;
  void after_block(size_t index) override;
  void release_all() override;
  // The first streamed block is copied in now and, at the end of each pass but the last, the
  // first streamed block of the next pass (side stream, waited for on the compute stream by its
  // before_block), so no pass starts by waiting for a whole block copy.
  void begin_passes(int64_t passes) override;
  void end_passes() override;

  const PlacementStats& stats() const { return stats_; }
  int64_t streamed_blocks() const;
  int64_t host_bytes() const;         // weights kept in host memory
  int64_t copied_host_bytes() const;  // of which HostWeights had to copy (0: the load put them)
  int64_t blocks_on_device() const;   // streamed blocks whose device copy is live now

  // Whether the tensor `name` of a model (named_parameters() style) belongs to a streamed block:
  // "<blocks_name>.<i>." with i >= resident_blocks. What the engines give HostLoad so that a
  // streamed block loads straight into (pinned) host memory.
  static bool streamed_name(const std::string& name, const std::string& blocks_name,
                            int64_t resident_blocks);

 private:
  void prefetch(size_t index, bool ahead);
  size_t first_streamed() const;     // blocks_.size() when none is streamed
  std::vector<HostWeights> blocks_;  // streamed blocks (empty entries for resident ones)
  std::optional<c10::Stream> side_;
  PlacementStats stats_;
  int64_t passes_left_ = 0;  // of the job begin_passes() announced, this one included
};

}  // namespace qwen::models
