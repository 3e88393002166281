// One Qwen2.5-VL language-model decoder layer: GQA self-attention with q/k/v bias and M-RoPE,
// SwiGLU MLP, pre-norm residuals. Registered names mirror `model.language_model.layers.{i}.*`.
#pragma once

#include <torch/torch.h>

#include "models/text_encoder_blocks.h"
#include "models/text_encoder_config.h"

namespace qwen::models::qwenvl {

class TextAttentionImpl : public torch::nn::Module {
 public:
  explicit TextAttentionImpl(const TextEncoderConfig& cfg);
  // x [B, L, hidden]; cos/sin [B, L, head_dim] in x's dtype; mask: bool [B, 1, L, L] (true =
  // attend) or undefined for plain causal attention.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask);

  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  int64_t heads_, kv_heads_, head_dim_;
};
TORCH_MODULE(TextAttention);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  explicit DecoderLayerImpl(const TextEncoderConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask);

  TextAttention self_attn{nullptr};
  GatedMLP mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

}  // namespace qwen::models::qwenvl
