// The planner's view of a model (plan/memory_plan.h ModelSizes) from its weight files' metadata:
// the same io::ModelSources -> io::ModelFolder -> io::ComponentWeights path the engine loads
// through, reading only headers (no tensor data). Torch-free.
#pragma once

#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/quantize_on_load.h"
#include "plan/memory_plan.h"

namespace qwen::plan {

// Every tensor the engine would load from `weights` (names starting with one of `ignore` are left
// out, as models::load_module does), with the bytes it takes on the device when loaded in a
// compute dtype of `dtype_bytes` per element: plain floating-point tensors are converted to it; a
// quantised (fp8, GGUF) 2-D Linear weight keeps its stored bytes (models/linear.h set_quantized);
// other quantised tensors are dequantised to the compute dtype.
ComponentSize component_size(const io::ComponentWeights& weights, int64_t dtype_bytes,
                             const std::vector<std::string>& ignore = {});

// The transformer `c` as quantise-on-load leaves it on the device (`--quantize fp8`,
// models/quantize.h): every plain floating-point Linear weight io::quantize_on_load_selects picks
// (the transformer blocks' Linears) at 1 byte per element plus its 4-byte float32 scale, storage
// "F8_E4M3*scale"; tensors stored quantised and all others unchanged. The format becomes
// "F8_E4M3*scale (quantised at load)" when those bytes are the largest share. None: `c` as is.
ComponentSize quantize_on_load(const ComponentSize& c, io::QuantizeMode quantize);

// The three weight components of `model` (text encoder without lm_head, and without its vision
// tower unless the model edits), the transformer's shape and the edit / zero_cond_t flags.
// Throws io::CheckpointError like ModelFolder::weights(). `quantize`: the engine's
// EngineOptions::quantize (the transformer as quantize_on_load gives it; sets quantize_fp8).
ModelSizes model_sizes(const io::ModelFolder& model, int64_t dtype_bytes = 2,
                       io::QuantizeMode quantize = io::QuantizeMode::None);

// The job a model is planned for when it loads (the engine's plan, pipelines/placement.cpp, and
// the daemon's predicted peaks, server/job.cpp): the 20B models' 1328 x 1328 image with CFG (one
// condition image for edit models); Qwen-Image-Layered's recommended decompose (issue #16: 4 layers
// at resolution 640, i.e. 6 frames of 640 x 640, 9,600 image tokens); Qwen-Image-2.1's default
// 1024 x 1024 output with one 1024 x 1024 reference and CFG (issue #15; the 40 steps do not change
// the peak). Larger jobs get the out-of-memory advice or, for 2.1's references, a KV cache check
// when they start (Qwen21Engine).
JobShape planned_job(const io::ModelFolder& model, const ModelSizes& sizes);

}  // namespace qwen::plan
