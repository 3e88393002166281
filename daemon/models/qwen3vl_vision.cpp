#include "models/qwen3vl_vision.h"

#include <stdexcept>
#include <string>

#include "models/mrope.h"

namespace qwen::models::qwen3vl {
namespace {

torch::nn::LayerNorm layer_norm(int64_t dim) {
  // nn.LayerNorm(dim, eps=1e-6) in every Qwen3-VL vision norm.
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-6));
}

}  // namespace

VisionMLPImpl::VisionMLPImpl(int64_t dim, int64_t hidden, bool gelu_tanh) : tanh_(gelu_tanh) {
  linear_fc1 = register_module("linear_fc1", Linear(dim, hidden, true));
  linear_fc2 = register_module("linear_fc2", Linear(hidden, dim, true));
}

torch::Tensor VisionMLPImpl::forward(const torch::Tensor& x) {
  return linear_fc2(torch::gelu(linear_fc1(x), tanh_ ? "tanh" : "none"));
}

VisionBlockImpl::VisionBlockImpl(const VisionConfig& cfg) {
  norm1 = register_module("norm1", layer_norm(cfg.hidden_size));
  norm2 = register_module("norm2", layer_norm(cfg.hidden_size));
  qwenvl::VisionConfig ac;  // what the shared attention reads: width and heads
  ac.hidden_size = cfg.hidden_size;
  ac.num_heads = cfg.num_heads;
  attn = register_module("attn", qwenvl::VisionAttention(ac));
  mlp = register_module("mlp", VisionMLP(cfg.hidden_size, cfg.intermediate_size, cfg.gelu_tanh));
}

torch::Tensor VisionBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                       const torch::Tensor& sin,
                                       const std::vector<int64_t>& cu_seqlens) {
  auto h = x + attn(norm1(x), cos, sin, cu_seqlens);
  return h + mlp(norm2(h));
}

PatchMergerImpl::PatchMergerImpl(const VisionConfig& cfg, bool postshuffle)
    : merged_dim_(cfg.hidden_size * cfg.merge_unit()), postshuffle_(postshuffle) {
  norm = register_module("norm", layer_norm(postshuffle ? merged_dim_ : cfg.hidden_size));
  linear_fc1 = register_module("linear_fc1", Linear(merged_dim_, merged_dim_, true));
  linear_fc2 = register_module("linear_fc2", Linear(merged_dim_, cfg.out_hidden_size, true));
}

torch::Tensor PatchMergerImpl::forward(const torch::Tensor& x) {
  auto y = postshuffle_ ? norm(x.reshape({-1, merged_dim_})) : norm(x).reshape({-1, merged_dim_});
  return linear_fc2(torch::gelu(linear_fc1(y)));
}

VisionGrid vision_grid(const torch::Tensor& grid_thw, int64_t m) {
  if (!grid_thw.defined() || grid_thw.dim() != 2 || grid_thw.size(1) != 3)
    throw std::invalid_argument("image_grid_thw must be [n_images, 3]");
  auto g = grid_thw.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t n = g.size(0);
  const int64_t* p = g.data_ptr<int64_t>();
  VisionGrid out;
  out.cu_seqlens.push_back(0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = p[3 * i], h = p[3 * i + 1], w = p[3 * i + 2];
    if (t <= 0 || h <= 0 || w <= 0 || h % m || w % m)
      throw std::invalid_argument("image " + std::to_string(i) + ": grid " + std::to_string(t) +
                                  "x" + std::to_string(h) + "x" + std::to_string(w) +
                                  " is not positive with h and w multiples of " +
                                  std::to_string(m));
    for (int64_t f = 0; f < t; ++f) out.cu_seqlens.push_back(out.cu_seqlens.back() + h * w);
    out.num_patches += t * h * w;
  }
  auto pos = torch::empty({out.num_patches, 2}, torch::kInt64);
  auto rows = torch::empty({out.num_patches}, torch::kInt64);
  auto cols = torch::empty({out.num_patches}, torch::kInt64);
  auto P = pos.accessor<int64_t, 2>();
  auto R = rows.accessor<int64_t, 1>();
  auto C = cols.accessor<int64_t, 1>();
  int64_t k = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = p[3 * i], h = p[3 * i + 1], w = p[3 * i + 2];
    // get_vision_position_ids: merge-block order (block row, block col, in-row, in-col), repeated
    // per frame.
    for (int64_t f = 0; f < t; ++f)
      for (int64_t br = 0; br < h / m; ++br)
        for (int64_t bc = 0; bc < w / m; ++bc)
          for (int64_t ir = 0; ir < m; ++ir)
            for (int64_t ic = 0; ic < m; ++ic, ++k) {
              P[k][0] = br * m + ir;
              P[k][1] = bc * m + ic;
              R[k] = h;
              C[k] = w;
            }
  }
  out.pos = pos;
  out.rows = rows;
  out.cols = cols;
  return out;
}

VisionTowerImpl::VisionTowerImpl(const VisionConfig& cfg) : cfg_(cfg) {
  patch_embed = register_module("patch_embed", std::make_shared<torch::nn::Module>());
  patch_proj = patch_embed->register_module("proj", std::make_shared<torch::nn::Module>());
  patch_weight = patch_proj->register_parameter(
      "weight",
      torch::empty({cfg.hidden_size, cfg.in_channels, cfg.temporal_patch_size, cfg.patch_size,
                    cfg.patch_size}),
      false);
  patch_bias = patch_proj->register_parameter("bias", torch::empty({cfg.hidden_size}), false);
  pos_embed = register_module("pos_embed", std::make_shared<torch::nn::Module>());
  pos_weight = pos_embed->register_parameter(
      "weight", torch::empty({cfg.num_position_embeddings, cfg.hidden_size}), false);
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.depth; ++i) blocks->push_back(VisionBlock(cfg));
  merger = register_module("merger", PatchMerger(cfg, false));
  deepstack_merger_list = register_module("deepstack_merger_list", torch::nn::ModuleList());
  for (size_t i = 0; i < cfg.deepstack_visual_indexes.size(); ++i)
    deepstack_merger_list->push_back(PatchMerger(cfg, true));
}

torch::Tensor VisionTowerImpl::position_embeddings(const VisionGrid& grid) {
  // _interpolation_axis_taps_weights (bilinear, align_corners=True, border padding), in float32 as
  // the reference: src = index * (side - 1) / max(size - 1, 1); taps floor, floor + 1 (clamped);
  // weights 1 - |src - tap| (>= 0).
  const int64_t side = cfg_.grid_side();
  auto axis = [&](const torch::Tensor& index, const torch::Tensor& size) {
    auto src = index.to(torch::kFloat32) * static_cast<double>(side - 1) /
               torch::clamp_min(size - 1, 1).to(torch::kFloat32);
    auto fl = torch::floor(src);
    auto off = torch::arange(2, torch::kInt64);
    auto taps = (fl.to(torch::kInt64).unsqueeze(1) + off).clamp(0, side - 1);
    auto dist = (src.unsqueeze(1) - fl.unsqueeze(1) - off.to(torch::kFloat32)).abs();
    return std::make_pair(taps, (1 - dist).clamp_min(0));
  };
  auto [ht, hw] = axis(grid.pos.select(1, 0), grid.rows);
  auto [wt, ww] = axis(grid.pos.select(1, 1), grid.cols);
  auto idx = (ht.unsqueeze(2) * side + wt.unsqueeze(1)).reshape({-1, 4}).to(pos_weight.device());
  auto wts = (hw.unsqueeze(2) * ww.unsqueeze(1)).reshape({-1, 4}).to(pos_weight.device());
  // (pos_embed(indices) * weights[:, :, None]).sum(1): the product promotes to float32.
  return (torch::embedding(pos_weight, idx) * wts.unsqueeze(-1)).sum(1);
}

VisionFeatures VisionTowerImpl::forward(const torch::Tensor& pixel_values,
                                        const torch::Tensor& grid_thw) {
  const VisionGrid grid = vision_grid(grid_thw, cfg_.spatial_merge_size);
  const int64_t features = cfg_.patch_features();
  if (pixel_values.dim() != 2 || pixel_values.size(1) != features)
    throw std::invalid_argument("pixel_values must be [patches, " + std::to_string(features) +
                                "] (patch size " + std::to_string(cfg_.patch_size) + "), got " +
                                std::to_string(pixel_values.dim()) + " dims with " +
                                std::to_string(pixel_values.size(-1)) + " features");
  if (pixel_values.size(0) != grid.num_patches)
    throw std::invalid_argument("pixel_values has " + std::to_string(pixel_values.size(0)) +
                                " patch rows but image_grid_thw describes " +
                                std::to_string(grid.num_patches));
  // Conv3d with kernel == stride over one patch = a dot product over its (c, t, y, x) features.
  const auto dev = patch_weight.device();
  const auto dtype = patch_weight.scalar_type();
  auto x = at::linear(pixel_values.to(dev, dtype),
                      patch_weight.reshape({cfg_.hidden_size, features}), patch_bias);
  x = x + position_embeddings(grid).to(dtype);
  // Axial rotary (Qwen3VLVisionRotaryEmbedding): inv_freq over head_dim / 2, angles of the row
  // then of the column, doubled; float32.
  auto inv = qwenvl::rope_inv_freq(cfg_.head_dim() / 2, cfg_.rope_theta);
  auto f = grid.pos.to(torch::kFloat32).unsqueeze(-1) * inv;  // [N, 2, hd/4]
  auto hw = torch::cat(std::vector<torch::Tensor>{f.select(1, 0), f.select(1, 1)}, -1);
  auto emb = torch::cat(std::vector<torch::Tensor>{hw, hw}, -1).to(dev);
  auto cos = emb.cos(), sin = emb.sin();

  VisionFeatures out;
  const auto& ds = cfg_.deepstack_visual_indexes;
  for (size_t i = 0; i < blocks->size(); ++i) {
    x = blocks[i]->as<VisionBlockImpl>()->forward(x, cos, sin, grid.cu_seqlens);
    for (size_t j = 0; j < ds.size(); ++j)
      if (ds[j] == static_cast<int64_t>(i))
        // In block order, each through the merger of its position in the list (as the reference).
        out.deepstack.push_back(deepstack_merger_list[j]->as<PatchMergerImpl>()->forward(x));
  }
  out.embeds = merger(x);
  return out;
}

}  // namespace qwen::models::qwen3vl
