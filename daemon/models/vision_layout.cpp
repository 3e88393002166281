#include "models/vision_layout.h"

#include <stdexcept>
#include <string>

#include "models/mrope.h"

namespace qwen::models::qwenvl {

VisionLayout vision_layout(const torch::Tensor& grid_thw, const VisionConfig& cfg) {
  if (!grid_thw.defined() || grid_thw.dim() != 2 || grid_thw.size(1) != 3 || grid_thw.size(0) < 1)
    throw std::invalid_argument("image_grid_thw must be [n_images >= 1, 3]");
  auto g = grid_thw.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t n_img = g.size(0);
  const int64_t* gp = g.data_ptr<int64_t>();
  const int64_t sms = cfg.spatial_merge_size, unit = cfg.merge_unit(), ws = cfg.merger_window();

  int64_t N = 0;
  for (int64_t i = 0; i < n_img; ++i) {
    const int64_t t = gp[3 * i], h = gp[3 * i + 1], w = gp[3 * i + 2];
    if (t <= 0 || h <= 0 || w <= 0 || h % sms != 0 || w % sms != 0)
      throw std::invalid_argument("image " + std::to_string(i) + ": grid (" + std::to_string(t) +
                                  ", " + std::to_string(h) + ", " + std::to_string(w) +
                                  ") is invalid: sizes must be positive and h, w multiples of " +
                                  std::to_string(sms));
    N += t * h * w;
  }

  VisionLayout out;
  out.num_patches = N;
  out.pos_ids = torch::empty({N, 2}, torch::kInt64);
  auto P = out.pos_ids.accessor<int64_t, 2>();
  std::vector<int64_t> windex;
  windex.reserve(N / unit);
  out.cu_window_seqlens = {0};
  out.cu_seqlens = {0};
  int64_t row = 0, token_offset = 0;
  for (int64_t i = 0; i < n_img; ++i) {
    const int64_t t = gp[3 * i], h = gp[3 * i + 1], w = gp[3 * i + 2];
    // Patch positions in merge-block order, repeated for every frame.
    for (int64_t tt = 0; tt < t; ++tt) {
      for (int64_t bi = 0; bi < h / sms; ++bi)
        for (int64_t bj = 0; bj < w / sms; ++bj)
          for (int64_t mi = 0; mi < sms; ++mi)
            for (int64_t mj = 0; mj < sms; ++mj) {
              P[row][0] = bi * sms + mi;
              P[row][1] = bj * sms + mj;
              ++row;
            }
      out.cu_seqlens.push_back(out.cu_seqlens.back() + h * w);
    }
    // Windows of ws x ws merged tokens over the padded merged grid (a full extra window row /
    // column of padding when already divisible, as the reference), row-major.
    const int64_t H = h / sms, W = w / sms;
    const int64_t nwh = (H + ws - (H % ws)) / ws, nww = (W + ws - (W % ws)) / ws;
    for (int64_t tt = 0; tt < t; ++tt)
      for (int64_t wi = 0; wi < nwh; ++wi)
        for (int64_t wj = 0; wj < nww; ++wj) {
          int64_t count = 0;
          for (int64_t a = 0; a < ws; ++a)
            for (int64_t b = 0; b < ws; ++b) {
              const int64_t y = wi * ws + a, x = wj * ws + b;
              if (y >= H || x >= W) continue;
              windex.push_back(token_offset + tt * H * W + y * W + x);
              ++count;
            }
          const int64_t next = out.cu_window_seqlens.back() + count * unit;
          if (next != out.cu_window_seqlens.back()) out.cu_window_seqlens.push_back(next);
        }
    token_offset += t * H * W;
  }
  out.window_index = torch::tensor(windex, torch::kInt64);
  return out;
}

torch::Tensor vision_rotary_pos_emb(const torch::Tensor& pos_ids, int64_t head_dim) {
  auto inv = rope_inv_freq(head_dim / 2, 10000.0).to(pos_ids.device());
  auto p = pos_ids.to(torch::kFloat32);
  auto rh = p.select(1, 0).unsqueeze(1) * inv;
  auto rw = p.select(1, 1).unsqueeze(1) * inv;
  return torch::cat({rh, rw}, 1);
}

}  // namespace qwen::models::qwenvl
