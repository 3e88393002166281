#include "models/mrope.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "models/text_encoder_blocks.h"

namespace qwen::models::qwenvl {

RopeIndex text_rope_index(const torch::Tensor& attention_mask, int64_t batch, int64_t length) {
  RopeIndex r;
  if (!attention_mask.defined()) {
    if (batch <= 0 || length <= 0)
      throw std::invalid_argument("text_rope_index: no attention mask and no batch/length given");
    auto p = torch::arange(length, torch::kInt64).view({1, 1, length}).expand({3, batch, length});
    r.position_ids = p.contiguous();
    r.rope_deltas = torch::zeros({batch, 1}, torch::kInt64);
    return r;
  }
  if (attention_mask.dim() != 2)
    throw std::invalid_argument("attention_mask must be [batch, length], got " +
                                std::to_string(attention_mask.dim()) + " dims");
  auto m = attention_mask.to(torch::kInt64);
  auto p = m.cumsum(-1) - 1;
  p.masked_fill_(m == 0, 1);
  r.position_ids = p.unsqueeze(0).expand({3, -1, -1}).contiguous();
  auto maxp = std::get<0>(p.max(-1, /*keepdim=*/true));
  r.rope_deltas = maxp + 1 - m.size(-1);
  return r;
}

RopeIndex get_rope_index(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                         const torch::Tensor& image_grid_thw, const RopeTokenIds& ids,
                         int64_t spatial_merge_size) {
  if (!input_ids.defined() || input_ids.dim() != 2)
    throw std::invalid_argument("input_ids must be [batch, length]");
  const int64_t B = input_ids.size(0), L = input_ids.size(1);
  if (attention_mask.defined() &&
      (attention_mask.dim() != 2 || attention_mask.size(0) != B || attention_mask.size(1) != L))
    throw std::invalid_argument("attention_mask must have the shape of input_ids");
  if (!image_grid_thw.defined()) return text_rope_index(attention_mask, B, L);
  if (image_grid_thw.dim() != 2 || image_grid_thw.size(1) != 3)
    throw std::invalid_argument("image_grid_thw must be [n_images, 3]");

  auto ids_cpu = input_ids.to(torch::kCPU, torch::kInt64).contiguous();
  auto mask_cpu = attention_mask.defined()
                      ? attention_mask.to(torch::kCPU, torch::kInt64).contiguous()
                      : torch::ones({B, L}, torch::kInt64);
  auto grid = image_grid_thw.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t n_grids = grid.size(0);
  const int64_t* g = grid.data_ptr<int64_t>();

  auto pos = torch::ones({3, B, L}, torch::kInt64);
  auto deltas = torch::zeros({B, 1}, torch::kInt64);
  auto P = pos.accessor<int64_t, 3>();
  int64_t image_index = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t* row = ids_cpu.data_ptr<int64_t>() + b * L;
    const int64_t* mrow = mask_cpu.data_ptr<int64_t>() + b * L;
    std::vector<int64_t> slot;  // sequence index of each valid token
    std::vector<int64_t> tok;
    for (int64_t l = 0; l < L; ++l)
      if (mrow[l] == 1) {
        slot.push_back(l);
        tok.push_back(row[l]);
      }
    const int64_t n = static_cast<int64_t>(tok.size());
    int64_t image_nums = 0;
    for (int64_t i = 0; i + 1 < n; ++i) {
      if (tok[i] != ids.vision_start_token_id) continue;
      if (tok[i + 1] == ids.image_token_id) ++image_nums;
      if (tok[i + 1] == ids.video_token_id)
        throw std::invalid_argument("video inputs (<|video_pad|>) are not supported");
    }
    std::vector<std::array<int64_t, 3>> out;
    out.reserve(n);
    int64_t st = 0;
    int64_t cur = 0;  // next free position value
    for (int64_t k = 0; k < image_nums; ++k) {
      auto it = std::find(tok.begin() + st, tok.end(), ids.image_token_id);
      if (it == tok.end())
        throw std::invalid_argument("image " + std::to_string(image_index) +
                                    ": no <|image_pad|> token left in sequence " +
                                    std::to_string(b));
      if (image_index >= n_grids)
        throw std::invalid_argument("the prompts hold more images than image_grid_thw (" +
                                    std::to_string(n_grids) + " grids)");
      const int64_t ed = it - tok.begin();
      const int64_t t = g[image_index * 3], h = g[image_index * 3 + 1] / spatial_merge_size,
                    w = g[image_index * 3 + 2] / spatial_merge_size;
      ++image_index;
      for (int64_t r = 0; r < ed - st; ++r) out.push_back({cur + r, cur + r, cur + r});
      const int64_t base = cur + (ed - st);
      int64_t mx = base;
      for (int64_t tt = 0; tt < t; ++tt)
        for (int64_t i = 0; i < h; ++i)
          for (int64_t j = 0; j < w; ++j) {
            // Images: the temporal component is 0 for every frame (second_per_grid_t = 0).
            out.push_back({base, base + i, base + j});
            mx = std::max({mx, base + i, base + j});
          }
      cur = mx + 1;
      st = ed + t * h * w;
      if (st > n)
        throw std::invalid_argument("image " + std::to_string(image_index - 1) + " needs " +
                                    std::to_string(t * h * w) +
                                    " <|image_pad|> tokens but the sequence ends before that");
    }
    for (int64_t r = 0; r < n - st; ++r) out.push_back({cur + r, cur + r, cur + r});
    int64_t maxp = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int c = 0; c < 3; ++c) {
        P[c][b][slot[i]] = out[i][c];
        maxp = std::max(maxp, out[i][c]);
      }
    deltas[b][0] = maxp + 1 - L;
  }
  RopeIndex r;
  r.position_ids = pos.to(input_ids.device());
  r.rope_deltas = deltas.to(input_ids.device());
  return r;
}

torch::Tensor rope_inv_freq(int64_t dim, double theta) {
  auto e = torch::arange(0, dim, 2, torch::kInt64).to(torch::kFloat32) / static_cast<double>(dim);
  return torch::reciprocal(torch::pow(theta, e));
}

std::pair<torch::Tensor, torch::Tensor> mrope_cos_sin(const torch::Tensor& position_ids,
                                                      int64_t head_dim, double theta,
                                                      const std::array<int64_t, 3>& mrope_section,
                                                      torch::Dtype dtype) {
  if (position_ids.dim() != 3 || position_ids.size(0) != 3)
    throw std::invalid_argument("position_ids must be [3, batch, length]");
  auto inv = rope_inv_freq(head_dim, theta).to(position_ids.device());
  auto freqs = position_ids.to(torch::kFloat32).unsqueeze(-1) * inv;  // [3, B, L, D/2]
  auto emb = torch::cat({freqs, freqs}, -1);
  auto cos = emb.cos().to(dtype);
  auto sin = emb.sin().to(dtype);
  std::vector<torch::Tensor> cs, ss;
  int64_t off = 0;
  for (int i = 0; i < 6; ++i) {
    const int64_t len = mrope_section[i % 3];
    cs.push_back(cos[i % 3].narrow(-1, off, len));
    ss.push_back(sin[i % 3].narrow(-1, off, len));
    off += len;
  }
  return {torch::cat(cs, -1), torch::cat(ss, -1)};
}

torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos,
                         const torch::Tensor& sin) {
  auto c = cos.unsqueeze(1);
  auto s = sin.unsqueeze(1);
  return x * c + rotate_half(x) * s;
}

}  // namespace qwen::models::qwenvl
