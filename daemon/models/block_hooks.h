// Hooks a transformer calls around each of its blocks (memory modes, issue #13): what a
// placement needs to bring a block's weights onto the device before it runs and let them go
// after. Torch-free. The 20B transformer has its own PlacementHooks (models/transformer.h, with
// the per-job modulation precompute); the Qwen-Image-2.1 transformer takes these
// (models/block_stream.h BlockStreamer implements them; TransformerPlacement streams its blocks
// with a BlockStreamer too).
#pragma once

#include <cstddef>
#include <cstdint>

namespace qwen::models {

struct BlockHooks {
  virtual ~BlockHooks() = default;
  virtual void before_block(size_t index) = 0;
  virtual void after_block(size_t index) = 0;
  // Every weight the hooks copied goes back to the host (a forward that failed part-way).
  virtual void release_all() = 0;
  // A job of `passes` forwards starts (the denoising loop: steps x 1 or 2 with CFG), so that
  // the first block of every pass can be prefetched during the previous one; end_passes() ends it
  // and lets a copy that no pass used go (a cancelled or failed job). Forwards outside such a
  // job still work (their first block is copied when it is needed).
  virtual void begin_passes(int64_t /*passes*/) {}
  virtual void end_passes() {}
};

// begin_passes() for the life of a denoising loop, end_passes() when it ends in any way. `hooks`
// may be null (nothing to do).
class BlockPasses {
 public:
  BlockPasses(BlockHooks* hooks, int64_t passes) : hooks_(hooks) {
    if (hooks_) hooks_->begin_passes(passes);
  }
  ~BlockPasses() {
    if (hooks_) hooks_->end_passes();
  }
  BlockPasses(const BlockPasses&) = delete;
  BlockPasses& operator=(const BlockPasses&) = delete;

 private:
  BlockHooks* hooks_;
};

}  // namespace qwen::models
