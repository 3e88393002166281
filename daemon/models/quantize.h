// Quantise-on-load to fp8 (`--quantize fp8`; which tensors: io/quantize_on_load.h): a plain float
// weight becomes a models::QuantizedWeight::fp8, stored as float8 e4m3fn with one float32 scale
// per tensor, the layout of ComfyUI's scaled fp8 files (models/quant.h dequantises it as
// float(q) * scale, as those files are).
//
// ComfyUI's UNETLoader `weight_dtype = fp8_e4m3fn` (nodes.py -> model_options["dtype"] =
// torch.float8_e4m3fn, comfy/sd.py load_diffusion_model_state_dict) casts each weight to fp8
// without a scale; values beyond ±448 then saturate and small weights lose precision to the
// subnormals. We deviate on purpose and scale per tensor as ComfyUI's own quantiser does for the
// "fp8mixed" files it publishes (comfy/quant_ops.py TensorCoreFP8Layout.quantize: scale =
// amax / 448), so the result is the same weight those files would hold.
#pragma once

#include <torch/torch.h>

#include "models/quant.h"

namespace qwen::models {

// The largest finite float8 e4m3fn value.
inline constexpr float kFp8E4m3Max = 448.0f;

// `w` (any floating dtype, any device, any shape) as fp8 e4m3fn with a per-tensor scale:
//   W32   = float32(w)
//   amax  = max |W32|                       (exact: no rounding in a max)
//   scale = amax / 448  in float32, or 1 when amax is 0 (an all-zero weight)
//   q     = float8_e4m3fn(W32 / scale)     (float32 division, then torch's conversion)
// and dequantises to float32(q) * scale. torch's float -> float8_e4m3fn conversion
// (c10 fp8e4m3fn_from_fp32_value, the same C10_HOST_DEVICE code on CPU and CUDA) rounds to
// nearest, ties to even, and saturates at ±448, so the bytes are the same on every device. The
// result lives on w's device; its scale is a 0-d float32 tensor (what io files give).
// Throws c10::Error for a non-floating `w`.
QuantizedWeight quantize_fp8(const torch::Tensor& w);

}  // namespace qwen::models
