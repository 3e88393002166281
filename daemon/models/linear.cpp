#include "models/linear.h"

#include "models/quant.h"

namespace qwen::models {

LinearImpl::LinearImpl(int64_t in, int64_t out, bool has_bias) {
  weight = register_parameter("weight", torch::empty({out, in}), /*requires_grad=*/false);
  if (has_bias) bias = register_parameter("bias", torch::empty({out}), /*requires_grad=*/false);
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  if (merged_.defined()) return at::linear(x, merged_, bias);
  auto y =
      qweight_ ? quantized_linear(x, *qweight_, bias, fp8_matmul_) : at::linear(x, weight, bias);
  // peft/tuners/lora/layer.py Linear.forward: result = result + lora_B(lora_A(x)) * scaling.
  for (const auto& b : lora_) y = y + at::linear(at::linear(x, b.down), b.up) * b.scale;
  return y;
}

void LinearImpl::set_lora(std::vector<LoraBranch> branches, bool merge) {
  clear_lora();
  if (branches.empty()) return;
  if (!merge) {
    lora_ = std::move(branches);
    return;
  }
  torch::NoGradGuard no_grad;
  const auto dtype = weight.scalar_type();  // the placeholder of a quantised weight follows it too
  auto w = qweight_ ? qweight_->dequantize(torch::kFloat32, weight.device())
                    : weight.to(torch::kFloat32);
  if (!qweight_) w = w.clone();
  for (const auto& b : branches)
    w.add_(at::matmul(b.up.to(torch::kFloat32), b.down.to(torch::kFloat32)), b.scale);
  merged_ = w.to(dtype);
}

void LinearImpl::clear_lora() {
  lora_.clear();
  merged_ = torch::Tensor();
}

void LinearImpl::set_quantized(QuantizedWeight w) {
  torch::NoGradGuard no_grad;
  weight.set_data(
      torch::empty({0}, torch::TensorOptions().dtype(weight.scalar_type()).device(w.device())));
  qweight_ = std::make_shared<const QuantizedWeight>(std::move(w));
}

void LinearImpl::to(torch::Device device, torch::Dtype dtype, bool non_blocking) {
  torch::nn::Module::to(device, dtype, non_blocking);
  if (qweight_)
    qweight_ = std::make_shared<const QuantizedWeight>(qweight_->to(device, non_blocking));
}

void LinearImpl::to(torch::Dtype dtype, bool non_blocking) {
  torch::nn::Module::to(dtype, non_blocking);
}

void LinearImpl::to(torch::Device device, bool non_blocking) {
  torch::nn::Module::to(device, non_blocking);
  if (qweight_)
    qweight_ = std::make_shared<const QuantizedWeight>(qweight_->to(device, non_blocking));
}

int64_t quantized_weight_bytes(torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& m : module.modules(/*include_self=*/true))
    if (const auto* l = dynamic_cast<const LinearImpl*>(m.get()))
      if (const QuantizedWeight* q = l->quantized()) n += q->storage_bytes();
  return n;
}

int64_t resident_bytes(torch::nn::Module& module) {
  int64_t n = quantized_weight_bytes(module);
  for (const auto& p : module.parameters()) n += p.numel() * p.element_size();
  for (const auto& b : module.buffers()) n += b.numel() * b.element_size();
  return n;
}

}  // namespace qwen::models
