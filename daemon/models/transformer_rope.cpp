#include "models/transformer_rope.h"

#include <algorithm>
#include <stdexcept>

namespace qwen::models::dit {

MultiAxisRope::MultiAxisRope(std::array<int64_t, 3> axes_dim, double theta, bool layer3d)
    : axes_dim_(axes_dim), layer3d_(layer3d) {
  for (int a = 0; a < 3; ++a) {
    if (axes_dim[a] <= 0 || axes_dim[a] % 2 != 0)
      throw std::invalid_argument("axes_dims_rope entries must be positive and even");
    // 1 / theta^(arange(0, d, 2) / d), all float32 (diffusers `rope_params`).
    auto exps = torch::arange(0, axes_dim[a], 2, torch::kInt64)
                    .to(torch::kFloat32)
                    .div(static_cast<double>(axes_dim[a]));
    inv_freq_[a] = 1.0 / torch::pow(theta, exps);
  }
}

torch::Tensor MultiAxisRope::image_positions(const std::vector<ImageShape>& img_shapes,
                                             bool layer3d) {
  int64_t total = 0;
  for (const auto& s : img_shapes) total += s[0] * s[1] * s[2];
  auto pos = torch::empty({total, 3}, torch::kInt64);
  auto p = pos.accessor<int64_t, 2>();
  int64_t n = 0;
  for (size_t j = 0; j < img_shapes.size(); ++j) {
    const auto [f, h, w] = img_shapes[j];
    // QwenEmbedLayer3DRope._compute_condition_freqs: the last segment (the condition image) takes
    // the frame table's entry -1 (its frame count must be 1 there: view(frame, ...) of one row).
    const bool condition = layer3d && j + 1 == img_shapes.size();
    if (condition && f != 1)
      throw std::invalid_argument("RoPE: the Layered condition segment must have one frame");
    for (int64_t fi = 0; fi < f; ++fi)
      for (int64_t r = 0; r < h; ++r)
        for (int64_t c = 0; c < w; ++c, ++n) {
          p[n][0] = condition ? -1 : static_cast<int64_t>(j) + fi;
          p[n][1] = r - (h - h / 2);
          p[n][2] = c - (w - w / 2);
        }
  }
  return pos;
}

int64_t MultiAxisRope::text_offset(const std::vector<ImageShape>& img_shapes, bool layer3d) {
  int64_t m = 0;
  for (const auto& s : img_shapes) m = std::max({m, s[1] / 2, s[2] / 2});
  // QwenEmbedLayer3DRope.forward: max_vid_index = max(max_vid_index, layer_num).
  if (layer3d) m = std::max(m, static_cast<int64_t>(img_shapes.size()) - 1);
  return m;
}

torch::Tensor MultiAxisRope::angles(const torch::Tensor& positions) const {
  std::vector<torch::Tensor> parts;
  for (int a = 0; a < 3; ++a) {
    // outer(int positions, float32 inv) -> float32 product of float32(p) and inv.
    parts.push_back(positions.select(1, a).to(torch::kFloat32).unsqueeze(1) *
                    inv_freq_[a].unsqueeze(0));
  }
  return torch::cat(parts, 1);
}

std::pair<torch::Tensor, torch::Tensor> MultiAxisRope::tables(
    const std::vector<ImageShape>& img_shapes, int64_t txt_len, const torch::Device& device) {
  if (img_shapes.empty()) throw std::invalid_argument("RoPE: no image shapes given");
  for (const auto& s : img_shapes)
    if (s[0] <= 0 || s[1] <= 0 || s[2] <= 0)
      throw std::invalid_argument("RoPE: image shapes must be positive");
  std::string key = device.str() + "|" + std::to_string(txt_len);
  for (const auto& s : img_shapes) {  // appended piecewise: GCC 12 -O3 false -Wstringop-overflow
    key += '|';
    key += std::to_string(s[0]);
    key += ',';
    key += std::to_string(s[1]);
    key += ',';
    key += std::to_string(s[2]);
  }
  if (auto it = cache_.find(key); it != cache_.end()) return it->second;

  auto img_ang = angles(image_positions(img_shapes, layer3d_));
  const int64_t m = text_offset(img_shapes, layer3d_);
  auto tpos = torch::arange(m, m + txt_len, torch::kInt64).unsqueeze(1).expand({txt_len, 3});
  auto txt_ang = angles(tpos.contiguous());
  auto img = torch::polar(torch::ones_like(img_ang), img_ang).to(device);
  auto txt = torch::polar(torch::ones_like(txt_ang), txt_ang).to(device);
  if (cache_.size() > 32) cache_.clear();
  cache_[key] = {img, txt};
  return {img, txt};
}

torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& freqs) {
  auto sizes = x.sizes().vec();  // [B, S, H, Dh]
  auto xc = torch::view_as_complex(
      x.to(torch::kFloat32).reshape({sizes[0], sizes[1], sizes[2], sizes[3] / 2, 2}));
  auto out = torch::view_as_real(xc * freqs.unsqueeze(1)).flatten(3);
  return out.to(x.scalar_type());
}

}  // namespace qwen::models::dit
