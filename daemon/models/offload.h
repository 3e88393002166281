// Placement machinery of the memory modes (issue #13, plan/memory_plan.h): weights kept in host
// memory (page-locked on an accelerator) and put on the device only while they are used.
//
//  HostWeights           the tensors of a module (parameters, buffers, quantised Linear weights)
//                        in host memory, with the module pointing at them; upload() copies them
//                        to the device (on a side stream when given) and points the module at
//                        the copies, release() points it back at the host copies and lets the
//                        device copies go once the compute stream is past them.
//  TransformerPlacement  the transformer's PlacementHooks: the timestep-only img_mod / txt_mod
//                        weights stay on the host and their outputs for every step of a job are
//                        computed once per job (QwenImageTransformer2DModelImpl::
//                        compute_modulations, the same ops as in forward, so the same numbers);
//                        in streaming mode blocks [resident, L) are copied in before use, the next
//                        one's copy on a side stream overlapping the current block's compute.
//
// On the CPU the "device" copies are real copies in host memory, so tests run the same code paths
// (and the images are bit-identical to all-resident: the arithmetic is the same).
#pragma once

#include <c10/core/Event.h>
#include <c10/core/Stream.h>
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/quant.h"
#include "models/transformer.h"

namespace qwen::models {

class LinearImpl;

class HostWeights {
 public:
  HostWeights() = default;
  // Takes the tensors of `module` whose names (module.named_parameters() style, e.g.
  // "attn.to_q.weight") `take` accepts (every one when empty), copies them to host memory
  // (page-locked when `pin` and the device is an accelerator, in one exact-size host_buffer of
  // models/device_memory.h; on the CPU they are kept as they are) and points the module at the
  // host copies: whatever was on the device is freed. Tensors already in host memory of the
  // right kind (page-locked for an accelerator: what a HostLoad of models/weights.h loaded) are
  // adopted as they are, without a copy.
  HostWeights(torch::nn::Module& module, torch::Device device, bool pin,
              const std::function<bool(const std::string&)>& take = {});
  HostWeights(HostWeights&&) = default;
  HostWeights& operator=(HostWeights&&) = default;

  // Starts the copies to the device on `stream` (the current stream when nullopt) and points the
  // module at the device copies; wait() before using them. No-op when already on the device.
  void upload(std::optional<c10::Stream> stream = std::nullopt);
  // Makes the current stream wait for the copies of upload().
  void wait();
  // Points the module back at the host copies. The device copies are freed (on an accelerator:
  // once the current stream has finished its queued work on them).
  void release();
  bool on_device() const { return on_device_; }
  int64_t bytes() const { return bytes_; }
  // Of bytes(), those the constructor had to copy into host memory (0 when all were adopted).
  int64_t copied_bytes() const { return copied_bytes_; }
  size_t tensors() const { return entries_.size() + quantized_.size(); }

 private:
  struct Entry {
    torch::Tensor param;  // the module's handle (set_data re-points it)
    torch::Tensor host;
    torch::Tensor dev;
  };
  struct QEntry {
    LinearImpl* linear = nullptr;
    QuantizedWeight host, dev;
  };
  torch::Device device_{torch::kCPU};
  std::vector<Entry> entries_;
  std::vector<QEntry> quantized_;
  std::optional<c10::Event> ready_;
  bool on_device_ = false;
  int64_t bytes_ = 0;
  int64_t copied_bytes_ = 0;
};

// Moves every tensor of `module` that `take` accepts (parameters, buffers, quantised Linear
// weights) to `device`, tensor by tensor (the host never holds a second full copy).
void move_tensors(torch::nn::Module& module, torch::Device device,
                  const std::function<bool(const std::string&)>& take = {});

// Statistics of a placement (bench output, logs).
struct PlacementStats {
  int64_t streamed_bytes = 0;    // block bytes copied to the device
  int64_t modulation_bytes = 0;  // modulation weight bytes copied to the device
  double wait_seconds = 0;       // host time spent waiting for copies (0 when fully overlapped)
  // Streamed blocks whose copy started ahead of the block (on the side stream, overlapping the
  // previous block or, for the first streamed block of a pass, the previous pass / the job's
  // start), and those whose copy the block itself had to start and wait for whole.
  int64_t prefetched_blocks = 0;
  int64_t unprefetched_blocks = 0;
};

class BlockStreamer;

class TransformerPlacement : public PlacementHooks {
 public:
  // `model` is loaded (on the CPU, or on `device`, or placed by a HostLoad (models/weights.h)
  // with host_tensor()); afterwards the modulation weights of every block (and, with `stream`,
  // blocks [resident_blocks, L)) are in host memory and everything else on `device`.
  TransformerPlacement(QwenImageTransformer2DModelImpl& model, torch::Device device, bool stream,
                       int64_t resident_blocks, bool pin = true);
  ~TransformerPlacement() override;
  // Whether the placement keeps the tensor `name` of the model (named_parameters() style) in host
  // memory: what the engine gives HostLoad so that those load straight into (pinned) host memory.
  static bool host_tensor(const std::string& name, bool stream, int64_t resident_blocks);
  void before_block(size_t index) override;
  void after_block(size_t index) override;
  bool precomputes_modulation() const override { return true; }
  std::vector<TimestepModulation> precompute_modulation(
      QwenImageTransformer2DModelImpl& model, const std::vector<torch::Tensor>& timesteps,
      torch::Dtype dtype, const torch::Tensor& additional_t_cond = {}) override;
  // A job of `passes` transformer passes starts (the denoising loop: steps x 1 or 2 with CFG):
  // the first streamed block is copied in now, and at the end of each pass but the last, the
  // first streamed block of the next pass (side stream, event-synchronised by before_block's
  // wait), so no pass starts by waiting for a whole block copy. end_passes() ends it and lets a
  // copy that no pass used go (a cancelled or failed job).
  void begin_passes(int64_t passes);
  void end_passes();
  // Every host-kept weight back on the host (after a failed job: nothing it copied stays).
  void release_all();
  PlacementStats stats() const;  // the streamer's and the modulation's
  int64_t streamed_blocks() const;
  int64_t host_bytes() const;         // weights kept in host memory
  int64_t copied_host_bytes() const;  // of which HostWeights had to copy (0: the load put them)
  int64_t blocks_on_device() const;   // streamed blocks whose device copy is live now

 private:
  void prefetch_mod(size_t index);
  torch::Device device_;
  std::unique_ptr<BlockStreamer> blocks_;  // the streamed blocks (models/block_stream.h)
  std::vector<HostWeights> mods_;          // per block: img_mod + txt_mod
  std::optional<c10::Stream> side_;
  int64_t modulation_bytes_ = 0;
};

}  // namespace qwen::models
