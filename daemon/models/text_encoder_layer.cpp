#include "models/text_encoder_layer.h"

#include "models/mrope.h"

namespace qwen::models::qwenvl {

TextAttentionImpl::TextAttentionImpl(const TextEncoderConfig& cfg)
    : heads_(cfg.num_attention_heads),
      kv_heads_(cfg.num_key_value_heads),
      head_dim_(cfg.head_dim()) {
  const int64_t h = cfg.hidden_size;
  q_proj = register_module("q_proj", Linear(h, heads_ * head_dim_, true));
  k_proj = register_module("k_proj", Linear(h, kv_heads_ * head_dim_, true));
  v_proj = register_module("v_proj", Linear(h, kv_heads_ * head_dim_, true));
  o_proj = register_module("o_proj", Linear(heads_ * head_dim_, h, false));
}

torch::Tensor TextAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                         const torch::Tensor& sin, const torch::Tensor& mask) {
  const int64_t B = x.size(0), L = x.size(1);
  auto q = q_proj(x).view({B, L, heads_, head_dim_}).transpose(1, 2);
  auto k = k_proj(x).view({B, L, kv_heads_, head_dim_}).transpose(1, 2);
  auto v = v_proj(x).view({B, L, kv_heads_, head_dim_}).transpose(1, 2);
  q = apply_rope(q, cos, sin);
  k = apply_rope(k, cos, sin);
  if (kv_heads_ != heads_) {
    // Query head j reads kv head j / group (repeat_interleave, as transformers' repeat_kv).
    const int64_t group = heads_ / kv_heads_;
    k = k.repeat_interleave(group, 1);
    v = v.repeat_interleave(group, 1);
  }
  auto o = sdpa(q, k, v, mask, /*causal=*/true);
  o = o.transpose(1, 2).reshape({B, L, heads_ * head_dim_});
  return o_proj(o);
}

DecoderLayerImpl::DecoderLayerImpl(const TextEncoderConfig& cfg) {
  self_attn = register_module("self_attn", TextAttention(cfg));
  mlp = register_module("mlp", GatedMLP(cfg.hidden_size, cfg.intermediate_size, /*bias=*/false));
  input_layernorm = register_module("input_layernorm", RMSNorm(cfg.hidden_size, cfg.rms_norm_eps));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(cfg.hidden_size, cfg.rms_norm_eps));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                        const torch::Tensor& sin, const torch::Tensor& mask) {
  auto h = x + self_attn(input_layernorm(x), cos, sin, mask);
  return h + mlp(post_attention_layernorm(h));
}

}  // namespace qwen::models::qwenvl
