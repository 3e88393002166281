// Loads checkpoint tensors into torch::nn::Module parameters by name.
// Module code registers its submodules/parameters with the checkpoint's key names, so loading is a
// lookup: module.named_parameters() (and named_buffers() that are persistent) <-> TensorStore keys.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/safetensors.h"

namespace qwen::models {

struct LoadReport {
  std::vector<std::string> missing;     // parameters the module has, the checkpoint lacks
  std::vector<std::string> unexpected;  // checkpoint tensors the module does not have
};

// Copies (or, when dtype/device allow, maps without a second host copy) every parameter of `module`
// from `store`. Shape mismatches and missing tensors throw io::CheckpointError naming the
// component, the tensor, the expected and the found shape, and listing all missing/unexpected
// names. Floating-point parameters/buffers are converted to `dtype`, integer ones keep their type.
// Buffers the checkpoint lacks are treated as computed by the module: kept (moved to `device`,
// dtype kept). On CPU, a tensor stored in `dtype` aliases the file mapping (copy-on-write pages:
// in-place updates are private to the process). On CUDA the stored bytes go from the mapping
// straight to the device and are converted there (no second host copy). Returned report:
// `unexpected` lists the ignored (prefix-matched) names; `missing` is empty. `ignore_unexpected`:
// key prefixes that may be present without a parameter (e.g. "visual." when the vision tower is not
// loaded, "lm_head.").
LoadReport load_module(torch::nn::Module& module, const io::TensorStore& store,
                       const std::string& component, torch::Dtype dtype, torch::Device device,
                       const std::vector<std::string>& ignore_unexpected = {});

// The same from an opened component (io::open_component / io::ModelFolder::weights), in any format
// of io/tensor_format.h; the loading path of the engine (models/weights_format.cpp). Plain tensors
// load exactly as above. A quantised (fp8, scaled fp8, GGUF) 2-D weight of a models::Linear stays
// quantised: a QuantizedWeight (zero-copy over the mapping on CPU, the stored bytes only on
// another device) that the Linear dequantises per forward (LinearImpl::set_quantized). Any other
// quantised tensor (1-D norms / biases, convolutions, embedding tables) is dequantised at load in
// float32 and converted to `dtype`, as ComfyUI-GGUF does for small tensors. Shapes are checked
// against the logical (dequantised) shapes.
LoadReport load_module(torch::nn::Module& module, const io::ComponentWeights& weights,
                       const std::string& component, torch::Dtype dtype, torch::Device device,
                       const std::vector<std::string>& ignore_unexpected = {});

// One tensor from the store, converted to `dtype` on `device` (F32/F16/BF16/F8*/I64/I32/U8/BOOL).
torch::Tensor to_tensor(const io::TensorRef& ref, torch::Dtype dtype,
                        torch::Device device = torch::kCPU);
// As stored (no conversion); zero-copy over the mapping when aligned, else a copy.
torch::Tensor to_tensor_raw(const io::TensorRef& ref);

}  // namespace qwen::models
