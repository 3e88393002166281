// Building blocks shared by the Qwen2.5-VL language model and vision tower: RMSNorm and the
// gated (SwiGLU) MLP. Registered names mirror the checkpoint (`weight`, `gate_proj`, ...).
#pragma once

#include <torch/torch.h>

#include "models/linear.h"

namespace qwen::models::qwenvl {

using qwen::models::Linear;  // uninitialized until loaded (models/linear.h)

// Qwen2RMSNorm: float32 normalization, cast back to the input dtype, then times the weight
// (two roundings in bf16, exactly as the reference).
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

// down_proj(silu(gate_proj(x)) * up_proj(x)); biases only in the vision tower.
class GatedMLPImpl : public torch::nn::Module {
 public:
  GatedMLPImpl(int64_t dim, int64_t hidden, bool bias);
  torch::Tensor forward(const torch::Tensor& x);

  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(GatedMLP);

// The token embedding lookup of the Qwen2.5-VL and Qwen3-VL language models (nn.Embedding):
// `input_ids` [batch, length] checked against the vocabulary (`weight` [vocab, hidden]), so a bad
// id is an error naming it instead of an out-of-range read.
torch::Tensor embed_tokens_checked(const torch::Tensor& weight, const torch::Tensor& input_ids);

// GPT-NeoX half-split rotation: concat(-x[d/2:], x[:d/2]) over the last dim.
torch::Tensor rotate_half(const torch::Tensor& x);

// Scaled dot-product attention (scale 1/sqrt(head_dim)) on [B, H, L, D] tensors. `mask`: bool,
// broadcastable to [B, H, Lq, Lk], true = attend; may be undefined. `causal` adds the causal mask
// (only when `mask` is undefined).
torch::Tensor sdpa(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                   const torch::Tensor& mask, bool causal);

}  // namespace qwen::models::qwenvl
