// Dual-stream block of QwenImageTransformer2DModel (`QwenImageTransformerBlock`, spec §2.6/§2.7):
// per-stream modulation (shift, scale, gate) x 2, LayerNorm without affine, joint attention over
// [text, image] with QK RMSNorm and RoPE, GELU-tanh MLPs. Registered names = diffusers keys.
#pragma once

#include <torch/torch.h>

#include "models/transformer_layers.h"

namespace qwen::models::dit {

// `attn` (diffusers `Attention` + `QwenDoubleStreamAttnProcessor2_0`).
class JointAttentionImpl : public torch::nn::Module {
 public:
  JointAttentionImpl(int64_t dim, int64_t heads, int64_t head_dim);
  // xa: image stream [B, S_img, D], ca: text stream [B, S_txt, D]; freqs: complex RoPE tables;
  // key_mask: bool [B, S_txt + S_img] (true = may attend) or undefined. Returns (image, text).
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& xa, const torch::Tensor& ca,
                                                  const torch::Tensor& img_freqs,
                                                  const torch::Tensor& txt_freqs,
                                                  const torch::Tensor& key_mask);

  Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  Linear add_q_proj{nullptr}, add_k_proj{nullptr}, add_v_proj{nullptr};
  RMSNorm norm_q{nullptr}, norm_k{nullptr}, norm_added_q{nullptr}, norm_added_k{nullptr};
  torch::nn::ModuleList to_out{nullptr};  // [Linear, dropout]
  Linear to_add_out{nullptr};

 private:
  int64_t heads_;
  Linear out_{nullptr};
};
TORCH_MODULE(JointAttention);

// A block's timestep-only modulation parameters: img_mod(temb) [B, 6D] ([2B, 6D] with
// zero_cond_t) and txt_mod(temb) [B, 6D].
struct BlockModulation {
  torch::Tensor img, txt;
};

class TransformerBlockImpl : public torch::nn::Module {
 public:
  TransformerBlockImpl(int64_t dim, int64_t heads, int64_t head_dim, bool zero_cond_t);
  // temb: [B, D], or [2B, D] with zero_cond_t (rows B..2B-1 = the t=0 embedding). Depends on the
  // timestep only, so the transformer computes it once per timestep (TimestepModulation).
  BlockModulation modulation(const torch::Tensor& temb);
  // mod: modulation(temb); modulate_index: int [B, S_img] (0 = real t, 1 = t=0) with zero_cond_t,
  // else undefined. Returns (text stream, image stream).
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x, const torch::Tensor& c,
                                                  const BlockModulation& mod,
                                                  const torch::Tensor& img_freqs,
                                                  const torch::Tensor& txt_freqs,
                                                  const torch::Tensor& key_mask,
                                                  const torch::Tensor& modulate_index);

  torch::nn::ModuleList img_mod{nullptr}, txt_mod{nullptr};  // [SiLU, Linear(D, 6D)]
  JointAttention attn{nullptr};
  FeedForward img_mlp{nullptr}, txt_mlp{nullptr};

 private:
  Linear img_mod_linear_{nullptr}, txt_mod_linear_{nullptr};
  bool zero_cond_t_;
};
TORCH_MODULE(TransformerBlock);

// (z * (1 + scale)) + shift with params [B, D] broadcast over tokens; with `index` (zero_cond_t)
// the params have 2B rows and each token picks rows [0, B) (index 0) or [B, 2B) (index 1).
// Returns (modulated, gate) where gate is broadcastable to z.
std::pair<torch::Tensor, torch::Tensor> modulate(const torch::Tensor& z,
                                                 const torch::Tensor& params,
                                                 const torch::Tensor& index);

}  // namespace qwen::models::dit
