#include "models/transformer_block.h"

#include "models/transformer_rope.h"

namespace qwen::models::dit {

JointAttentionImpl::JointAttentionImpl(int64_t dim, int64_t heads, int64_t head_dim)
    : heads_(heads) {
  const int64_t inner = heads * head_dim;
  to_q = register_module("to_q", Linear(dim, inner));
  to_k = register_module("to_k", Linear(dim, inner));
  to_v = register_module("to_v", Linear(dim, inner));
  add_q_proj = register_module("add_q_proj", Linear(dim, inner));
  add_k_proj = register_module("add_k_proj", Linear(dim, inner));
  add_v_proj = register_module("add_v_proj", Linear(dim, inner));
  norm_q = register_module("norm_q", RMSNorm(head_dim));
  norm_k = register_module("norm_k", RMSNorm(head_dim));
  norm_added_q = register_module("norm_added_q", RMSNorm(head_dim));
  norm_added_k = register_module("norm_added_k", RMSNorm(head_dim));
  out_ = Linear(inner, dim);
  to_out = register_module("to_out", torch::nn::ModuleList());
  to_out->push_back(out_);
  to_out->push_back(torch::nn::Identity());  // dropout
  to_add_out = register_module("to_add_out", Linear(inner, dim));
}

std::pair<torch::Tensor, torch::Tensor> JointAttentionImpl::forward(const torch::Tensor& xa,
                                                                    const torch::Tensor& ca,
                                                                    const torch::Tensor& img_freqs,
                                                                    const torch::Tensor& txt_freqs,
                                                                    const torch::Tensor& key_mask) {
  const int64_t s_txt = ca.size(1);
  auto split = [&](const torch::Tensor& t) { return t.unflatten(-1, {heads_, -1}); };
  auto qi = norm_q(split(to_q(xa)));
  auto ki = norm_k(split(to_k(xa)));
  auto vi = split(to_v(xa));
  auto qt = norm_added_q(split(add_q_proj(ca)));
  auto kt = norm_added_k(split(add_k_proj(ca)));
  auto vt = split(add_v_proj(ca));
  qi = apply_rope(qi, img_freqs);
  ki = apply_rope(ki, img_freqs);
  qt = apply_rope(qt, txt_freqs);
  kt = apply_rope(kt, txt_freqs);
  // [text ; image] along the sequence, then [B, H, S, Dh] for SDPA.
  auto q = torch::cat({qt, qi}, 1).transpose(1, 2);
  auto k = torch::cat({kt, ki}, 1).transpose(1, 2);
  auto v = torch::cat({vt, vi}, 1).transpose(1, 2);
  std::optional<torch::Tensor> mask;
  if (key_mask.defined()) mask = key_mask.view({key_mask.size(0), 1, 1, key_mask.size(1)});
  auto o = at::scaled_dot_product_attention(q, k, v, mask);
  o = o.transpose(1, 2).flatten(2, 3).to(q.scalar_type());
  auto ot = o.slice(1, 0, s_txt);
  auto oi = o.slice(1, s_txt);
  return {out_(oi), to_add_out(ot)};
}

std::pair<torch::Tensor, torch::Tensor> modulate(const torch::Tensor& z,
                                                 const torch::Tensor& params,
                                                 const torch::Tensor& index) {
  auto chunks = params.chunk(3, -1);
  torch::Tensor shift, scale, gate;
  if (index.defined()) {
    const int64_t b = chunks[0].size(0) / 2;
    auto sel = (index.unsqueeze(-1) == 0);
    auto pick = [&](const torch::Tensor& p) {
      return torch::where(sel, p.slice(0, 0, b).unsqueeze(1), p.slice(0, b).unsqueeze(1));
    };
    shift = pick(chunks[0]);
    scale = pick(chunks[1]);
    gate = pick(chunks[2]);
  } else {
    shift = chunks[0].unsqueeze(1);
    scale = chunks[1].unsqueeze(1);
    gate = chunks[2].unsqueeze(1);
  }
  return {z * (1 + scale) + shift, gate};
}

TransformerBlockImpl::TransformerBlockImpl(int64_t dim, int64_t heads, int64_t head_dim,
                                           bool zero_cond_t)
    : zero_cond_t_(zero_cond_t) {
  img_mod_linear_ = Linear(dim, 6 * dim);
  txt_mod_linear_ = Linear(dim, 6 * dim);
  img_mod = register_module("img_mod", torch::nn::ModuleList());
  img_mod->push_back(torch::nn::SiLU());
  img_mod->push_back(img_mod_linear_);
  attn = register_module("attn", JointAttention(dim, heads, head_dim));
  img_mlp = register_module("img_mlp", FeedForward(dim));
  txt_mod = register_module("txt_mod", torch::nn::ModuleList());
  txt_mod->push_back(torch::nn::SiLU());
  txt_mod->push_back(txt_mod_linear_);
  txt_mlp = register_module("txt_mlp", FeedForward(dim));
}

BlockModulation TransformerBlockImpl::modulation(const torch::Tensor& temb) {
  // img_mod / txt_mod = Sequential(SiLU, Linear(D, 6D)); with zero_cond_t the text stream only
  // takes the real-timestep rows.
  BlockModulation m;
  m.img = img_mod_linear_(torch::silu(temb));
  auto t_txt = zero_cond_t_ ? temb.chunk(2, 0)[0] : temb;
  m.txt = txt_mod_linear_(torch::silu(t_txt));
  return m;
}

std::pair<torch::Tensor, torch::Tensor> TransformerBlockImpl::forward(
    const torch::Tensor& x_in, const torch::Tensor& c_in, const BlockModulation& mod,
    const torch::Tensor& img_freqs, const torch::Tensor& txt_freqs, const torch::Tensor& key_mask,
    const torch::Tensor& modulate_index) {
  auto img_halves = mod.img.chunk(2, -1);
  auto txt_halves = mod.txt.chunk(2, -1);

  auto [xa, g1x] = modulate(layer_norm_no_affine(x_in), img_halves[0], modulate_index);
  auto [ca, g1c] = modulate(layer_norm_no_affine(c_in), txt_halves[0], {});
  auto [ax, ac] = attn(xa, ca, img_freqs, txt_freqs, key_mask);
  auto x = x_in + g1x * ax;
  auto c = c_in + g1c * ac;

  auto [xb, g2x] = modulate(layer_norm_no_affine(x), img_halves[1], modulate_index);
  x = x + g2x * img_mlp(xb);
  auto [cb, g2c] = modulate(layer_norm_no_affine(c), txt_halves[1], {});
  c = c + g2c * txt_mlp(cb);
  return {c, x};
}

}  // namespace qwen::models::dit
