// The planner's view of a model (plan/memory_plan.h ModelSizes) from its weight files' metadata:
// the same io::ModelSources -> io::ModelFolder -> io::ComponentWeights path the engine loads
// through, reading only headers (no tensor data). Torch-free.
#pragma once

#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "plan/memory_plan.h"

namespace qwen::plan {

// Every tensor the engine would load from `weights` (names starting with one of `ignore` are left
// out, as models::load_module does), with the bytes it takes on the device when loaded in a
// compute dtype of `dtype_bytes` per element: plain floating-point tensors are converted to it; a
// quantised (fp8, GGUF) 2-D Linear weight keeps its stored bytes (models/linear.h set_quantized);
// other quantised tensors are dequantised to the compute dtype.
ComponentSize component_size(const io::ComponentWeights& weights, int64_t dtype_bytes,
                             const std::vector<std::string>& ignore = {});

// The three weight components of `model` (text encoder without lm_head, and without its vision
// tower unless the model edits), the transformer's shape and the edit / zero_cond_t flags.
// Throws io::CheckpointError like ModelFolder::weights().
ModelSizes model_sizes(const io::ModelFolder& model, int64_t dtype_bytes = 2);

}  // namespace qwen::plan
