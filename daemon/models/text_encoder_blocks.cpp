#include "models/text_encoder_blocks.h"

#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>

namespace qwen::models::qwenvl {

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}), /*requires_grad=*/false);
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  const auto dtype = x.scalar_type();
  auto xf = x.to(torch::kFloat32);
  auto var = xf.pow(2).mean(-1, /*keepdim=*/true);
  xf = xf * torch::rsqrt(var + eps_);
  return weight * xf.to(dtype);
}

GatedMLPImpl::GatedMLPImpl(int64_t dim, int64_t hidden, bool bias) {
  gate_proj = register_module("gate_proj", Linear(dim, hidden, bias));
  up_proj = register_module("up_proj", Linear(dim, hidden, bias));
  down_proj = register_module("down_proj", Linear(hidden, dim, bias));
}

torch::Tensor GatedMLPImpl::forward(const torch::Tensor& x) {
  return down_proj(torch::silu(gate_proj(x)) * up_proj(x));
}

torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half);
  auto x2 = x.narrow(-1, half, half);
  return torch::cat({-x2, x1}, -1);
}

torch::Tensor sdpa(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                   const torch::Tensor& mask, bool causal) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  std::optional<torch::Tensor> m;
  if (mask.defined()) m = mask;
  return at::scaled_dot_product_attention(q, k, v, m, 0.0, causal && !mask.defined(), scale);
}

torch::Tensor embed_tokens_checked(const torch::Tensor& weight, const torch::Tensor& input_ids) {
  if (!input_ids.defined() || input_ids.dim() != 2)
    throw std::invalid_argument("input_ids must be [batch, length]");
  if (input_ids.numel() == 0) throw std::invalid_argument("input_ids is empty");
  auto ids = input_ids.to(weight.device(), torch::kInt64);
  const int64_t vocab = weight.size(0);
  const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
  if (lo < 0 || hi >= vocab)
    throw std::invalid_argument("token id " + std::to_string(lo < 0 ? lo : hi) +
                                " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
  return torch::embedding(weight, ids);
}

}  // namespace qwen::models::qwenvl
