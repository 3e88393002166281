// Quantise-on-load to fp8 (models/quantize.h).
#include "models/quantize.h"

namespace qwen::models {

QuantizedWeight quantize_fp8(const torch::Tensor& w) {
  TORCH_CHECK(torch::isFloatingType(w.scalar_type()),
              "quantize_fp8: expected a floating-point weight, got ", w.scalar_type());
  torch::NoGradGuard no_grad;
  const torch::Tensor w32 = w.to(torch::kFloat32);
  const torch::Tensor amax = w32.numel() > 0 ? w32.abs().amax() : torch::zeros({}, w32.options());
  // float32 throughout: amax / 448 and w / scale are single IEEE float32 divisions. 448 is a
  // tensor on w's device, not a scalar: CUDA's div_true computes `tensor / CPU scalar` as a
  // multiplication by the reciprocal (BinaryDivTrueKernel.cu), which could differ from the CPU.
  const torch::Tensor scale =
      torch::where(amax > 0, amax / torch::full({}, kFp8E4m3Max, amax.options()),
                   torch::ones({}, amax.options()));
  torch::Tensor q = (w32 / scale).to(torch::kFloat8_e4m3fn).contiguous();
  return QuantizedWeight::fp8(std::move(q), scale.reshape({}).contiguous());
}

}  // namespace qwen::models
