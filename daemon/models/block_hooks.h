// Hooks a transformer calls around each of its blocks (memory modes, issue #13): what a
// placement needs to bring a block's weights onto the device before it runs and let them go
// after. Torch-free. The 20B transformer has its own PlacementHooks (models/transformer.h, with
// the per-job modulation precompute); the Qwen-Image-2.1 transformer takes these
// (models/block_stream.h BlockStreamer implements them).
#pragma once

#include <cstddef>

namespace qwen::models {

struct BlockHooks {
  virtual ~BlockHooks() = default;
  virtual void before_block(size_t index) = 0;
  virtual void after_block(size_t index) = 0;
  // Every weight the hooks copied goes back to the host (a forward that failed part-way).
  virtual void release_all() = 0;
};

}  // namespace qwen::models
