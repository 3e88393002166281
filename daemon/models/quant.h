// A weight that stays in its stored (quantised) form in memory, on CPU or GPU, and is dequantised
// just before use (ComfyUI-GGUF ops.py GGMLLayer / ComfyUI's QuantizedTensor do the same per layer
// call). Built from an io::TensorFormat (io/tensor_format.h), i.e. from any format the project
// reads; the loader keeps these instead of materialising bf16/f32 parameters.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "io/tensor_format.h"

namespace qwen::models {

class QuantizedWeight {
 public:
  enum class Kind {
    Dense,  // any torch dtype; dequantize = cast
    Fp8,    // float8 storage [shape] (+ a 1-element scale)
    Ggml,   // uint8 GGUF blocks [nbytes]
  };

  QuantizedWeight() = default;
  // Zero-copy over the file mapping (CPU) for every encoding: plain tensors as stored, fp8 bytes
  // as float8, GGUF blocks as uint8. Scales are read as float32 scalars.
  static QuantizedWeight from_format(const io::TensorFormat& f);
  static QuantizedWeight dense(torch::Tensor w);
  // `scale`: undefined (plain fp8) or 1 float; `input_scale` is kept for an fp8 matmul.
  static QuantizedWeight fp8(torch::Tensor w, torch::Tensor scale = {},
                             torch::Tensor input_scale = {});
  // `blocks`: uint8 bytes of a GGUF tensor of logical `shape`.
  static QuantizedWeight ggml(torch::Tensor blocks, io::GgmlType type, std::vector<int64_t> shape);

  bool defined() const { return storage_.defined(); }
  Kind kind() const { return kind_; }
  io::GgmlType ggml_type() const { return ggml_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  const torch::Tensor& storage() const { return storage_; }
  const torch::Tensor& scale() const { return scale_; }
  const torch::Tensor& input_scale() const { return input_scale_; }
  torch::Device device() const { return storage_.device(); }
  int64_t storage_bytes() const;     // quantised bytes held (scales included)
  std::string storage_name() const;  // "Q4_K", "F8_E4M3*scale", "BFloat16"

  // The weight in `dtype` on the storage's device (models/dequant.h: exact in float32).
  torch::Tensor dequantize(torch::Dtype dtype = torch::kFloat32) const;
  // The same on `device`: the quantised bytes are moved there first (never the dequantised
  // tensor), so a CPU-resident weight costs one small upload per call.
  torch::Tensor dequantize(torch::Dtype dtype, torch::Device device) const;
  // Rows `ids` (integer tensor of any shape, on the storage's device) of a 2-D weight, dequantised
  // into [*ids.shape, columns]: equal to dequantize(dtype)[ids], touching only those rows (GGUF
  // rows are whole blocks). For embedding tables.
  torch::Tensor rows(const torch::Tensor& ids, torch::Dtype dtype = torch::kFloat32) const;
  // A copy whose storage and scales live on `device` (quantised bytes only are copied).
  QuantizedWeight to(torch::Device device, bool non_blocking = false) const;

 private:
  Kind kind_ = Kind::Dense;
  io::GgmlType ggml_ = io::GgmlType::F32;
  std::vector<int64_t> shape_;
  torch::Tensor storage_, scale_, input_scale_;
};

// y = x W^T + b with W dequantised for this call in x's dtype on x's device. With `fp8_matmul`
// and a weight fp8_matmul_applies() accepts, the product is fp8_linear() instead; everything else
// (e5m2, GGUF, dense, shapes or dtypes the kernels refuse) takes the dequantised path, unchanged.
torch::Tensor quantized_linear(const torch::Tensor& x, const QuantizedWeight& w,
                               const torch::Tensor& bias = {}, bool fp8_matmul = false);

// fp8 tensor-core matmul (issues #13/#15; models/fp8_matmul.h chooses when it is on).
// Whether fp8_linear() can compute x W^T: W is Kind::Fp8 with float8_e4m3fn storage, 2-D
// [N, K] row-major with N and K multiples of 16 (cuBLASLt's fp8 alignment), at most one scale
// value, x has K columns and is float32 or bfloat16 (bfloat16 only on CUDA, where row-wise scaling
// writes bfloat16) and is not empty.
bool fp8_matmul_applies(const torch::Tensor& x, const QuantizedWeight& w);
// y = x W^T + b by at::_scaled_mm on float8_e4m3fn operands (x flattened to [M, K]). Mirrors
// ComfyUI's comfy/ops.py fp8_linear + comfy/quant_ops.py fp8_linear (weight kept in fp8, W^T
// passed column-major, the weight's per-tensor scale as scale_b, the bias and out_dtype = x's
// dtype handed to _scaled_mm). Deviation: ComfyUI clamps x to +-448 and casts it with scale 1 (or
// a checkpoint's static input_scale); we quantise x dynamically per row (per token): scale_a[m] =
// max(amax_k |x[m, k]|, tiny) / 448 in float32, x / scale_a rounded to e4m3, so no activation is
// ever clipped and each token uses the whole e4m3 range. A checkpoint's input_scale is therefore
// not used (a static per-tensor scale clips outliers that the dynamic one keeps). The weight
// scale is expanded to [1, N] (row-wise scaling: cuBLASLt/CUTLASS need both scales row-wise).
// Precondition: fp8_matmul_applies(x, w). The only numerical change from the dequantised path
// is x rounded to e4m3 (3 mantissa bits: relative error <= 2^-4 per element) and the fp8
// kernel's accumulation order.
torch::Tensor fp8_linear(const torch::Tensor& x, const QuantizedWeight& w,
                         const torch::Tensor& bias = {});
// Products fp8_linear() has computed in this process (a test hook: proves the path is taken).
int64_t fp8_matmul_count();

// A Linear (models/linear.h) whose weight stays quantised: same forward, same `bias` parameter
// name. The storage and scales are registered as buffers ("weight_storage", "weight_scale",
// "input_scale"), so Module::to(device) moves the quantised bytes. Not wired into the models yet.
class QuantLinearImpl : public torch::nn::Module {
 public:
  explicit QuantLinearImpl(QuantizedWeight w, torch::Tensor bias = {});
  torch::Tensor forward(const torch::Tensor& x);
  const QuantizedWeight& qweight() const { return weight_; }

  torch::Tensor bias;

 private:
  QuantizedWeight weight_;
};
TORCH_MODULE(QuantLinear);

}  // namespace qwen::models
