#include "models/vision.h"

#include <map>
#include <stdexcept>
#include <string>

namespace qwen::models::qwenvl {

VisionPatchEmbedImpl::VisionPatchEmbedImpl(const VisionConfig& cfg) : hidden_(cfg.hidden_size) {
  proj = register_module("proj", std::make_shared<torch::nn::Module>());
  weight = proj->register_parameter(
      "weight",
      torch::empty({cfg.hidden_size, cfg.in_channels, cfg.temporal_patch_size, cfg.patch_size,
                    cfg.patch_size}),
      /*requires_grad=*/false);
}

torch::Tensor VisionPatchEmbedImpl::forward(const torch::Tensor& pixel_values) {
  const auto& w = weight;  // the loader swaps its data in place (set_data)
  const int64_t features = w.numel() / hidden_;
  if (pixel_values.dim() != 2 || pixel_values.size(1) != features)
    throw std::invalid_argument("pixel_values must be [patches, " + std::to_string(features) +
                                "], got " + std::to_string(pixel_values.dim()) + " dims with " +
                                std::to_string(pixel_values.size(-1)) + " features");
  // Conv3d with kernel == stride over one patch = a dot product over its (c, t, y, x) features.
  auto x = pixel_values.to(w.device(), w.scalar_type());
  return at::linear(x, w.reshape({hidden_, features}));
}

VisionAttentionImpl::VisionAttentionImpl(const VisionConfig& cfg)
    : heads_(cfg.num_heads), head_dim_(cfg.head_dim()) {
  qkv = register_module("qkv", Linear(cfg.hidden_size, 3 * cfg.hidden_size, true));
  proj = register_module("proj", Linear(cfg.hidden_size, cfg.hidden_size, true));
}

torch::Tensor VisionAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                           const torch::Tensor& sin,
                                           const std::vector<int64_t>& cu_seqlens) {
  const int64_t N = x.size(0);
  auto parts = qkv(x).reshape({N, 3, heads_, head_dim_}).unbind(1);  // each [N, H, D]
  const auto dtype = x.scalar_type();
  // Vision rotary in float32 (q, k up-cast, rotated, cast back).
  auto c = cos.unsqueeze(1), s = sin.unsqueeze(1);
  auto qf = parts[0].to(torch::kFloat32), kf = parts[1].to(torch::kFloat32);
  auto q = (qf * c + rotate_half(qf) * s).to(dtype);
  auto k = (kf * c + rotate_half(kf) * s).to(dtype);
  auto v = parts[2];

  torch::Tensor out;
  if (cu_seqlens.size() == 2 && cu_seqlens[0] == 0 && cu_seqlens[1] == N) {
    auto o = sdpa(q.transpose(0, 1).unsqueeze(0), k.transpose(0, 1).unsqueeze(0),
                  v.transpose(0, 1).unsqueeze(0), {}, false);
    out = o.squeeze(0).transpose(0, 1);
  } else {
    // Segments of equal length are batched into one attention call (exactly per-segment
    // attention: no padding, no mask).
    std::map<int64_t, std::vector<int64_t>> starts_by_len;
    for (size_t i = 1; i < cu_seqlens.size(); ++i)
      if (cu_seqlens[i] > cu_seqlens[i - 1])
        starts_by_len[cu_seqlens[i] - cu_seqlens[i - 1]].push_back(cu_seqlens[i - 1]);
    if (cu_seqlens.empty() || cu_seqlens.front() != 0 || cu_seqlens.back() != N)
      throw std::invalid_argument("vision attention: segments do not cover the sequence");
    out = torch::empty_like(v);
    for (const auto& [len, starts] : starts_by_len) {
      const int64_t G = static_cast<int64_t>(starts.size());
      auto st = torch::tensor(starts, torch::kInt64).to(x.device());
      auto idx = (st.unsqueeze(1) + torch::arange(len, st.options()).unsqueeze(0)).reshape(-1);
      auto gather = [&](const torch::Tensor& t) {
        return t.index_select(0, idx).view({G, len, heads_, head_dim_}).transpose(1, 2);
      };
      auto o = sdpa(gather(q), gather(k), gather(v), {}, false);  // [G, H, len, D]
      out.index_copy_(0, idx, o.transpose(1, 2).reshape({G * len, heads_, head_dim_}));
    }
  }
  return proj(out.reshape({N, heads_ * head_dim_}));
}

VisionBlockImpl::VisionBlockImpl(const VisionConfig& cfg) {
  norm1 = register_module("norm1", RMSNorm(cfg.hidden_size, cfg.rms_norm_eps));
  norm2 = register_module("norm2", RMSNorm(cfg.hidden_size, cfg.rms_norm_eps));
  attn = register_module("attn", VisionAttention(cfg));
  mlp = register_module("mlp", GatedMLP(cfg.hidden_size, cfg.intermediate_size, /*bias=*/true));
}

torch::Tensor VisionBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                       const torch::Tensor& sin,
                                       const std::vector<int64_t>& cu_seqlens) {
  auto h = x + attn(norm1(x), cos, sin, cu_seqlens);
  return h + mlp(norm2(h));
}

PatchMergerImpl::PatchMergerImpl(const VisionConfig& cfg)
    : merged_dim_(cfg.hidden_size * cfg.merge_unit()) {
  ln_q = register_module("ln_q", RMSNorm(cfg.hidden_size, cfg.rms_norm_eps));
  mlp = register_module(
      "mlp", torch::nn::Sequential(Linear(merged_dim_, merged_dim_, true), torch::nn::GELU(),
                                   Linear(merged_dim_, cfg.out_hidden_size, true)));
}

torch::Tensor PatchMergerImpl::forward(const torch::Tensor& x) {
  return mlp->forward(ln_q(x).reshape({-1, merged_dim_}));
}

VisionTowerImpl::VisionTowerImpl(const VisionConfig& cfg) : cfg_(cfg) {
  patch_embed = register_module("patch_embed", VisionPatchEmbed(cfg));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.depth; ++i) blocks->push_back(VisionBlock(cfg));
  merger = register_module("merger", PatchMerger(cfg));
}

torch::Tensor VisionTowerImpl::forward(const torch::Tensor& pixel_values,
                                       const torch::Tensor& grid_thw) {
  const VisionLayout lay = vision_layout(grid_thw, cfg_);
  if (pixel_values.dim() != 2 || pixel_values.size(0) != lay.num_patches)
    throw std::invalid_argument("pixel_values has " + std::to_string(pixel_values.size(0)) +
                                " patch rows but image_grid_thw describes " +
                                std::to_string(lay.num_patches));
  auto x = patch_embed(pixel_values);  // [N, hidden]
  const auto dev = x.device();
  const int64_t N = lay.num_patches, unit = cfg_.merge_unit();
  auto rot = vision_rotary_pos_emb(lay.pos_ids, cfg_.head_dim()).to(dev);  // [N, hd/2] fp32
  auto widx = lay.window_index.to(dev);
  // Window order: whole merge groups (4 consecutive patch rows) are permuted.
  x = x.view({N / unit, unit, -1}).index_select(0, widx).reshape({N, -1});
  rot = rot.view({N / unit, unit, -1}).index_select(0, widx).reshape({N, -1});
  auto emb = torch::cat({rot, rot}, -1);
  auto cos = emb.cos(), sin = emb.sin();

  std::vector<bool> full(static_cast<size_t>(cfg_.depth), false);
  for (int64_t b : cfg_.fullatt_block_indexes) full[static_cast<size_t>(b)] = true;
  for (size_t i = 0; i < blocks->size(); ++i)
    x = blocks[i]->as<VisionBlockImpl>()->forward(x, cos, sin,
                                                  full[i] ? lay.cu_seqlens : lay.cu_window_seqlens);

  auto merged = merger(x);  // [M, out] in window order
  // Inverse permutation: out[window_index[k]] = merged[k].
  auto out = torch::empty_like(merged);
  out.index_copy_(0, widx, merged);
  return out;
}

}  // namespace qwen::models::qwenvl
