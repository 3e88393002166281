#include "models/vae_tiles.h"

#include <algorithm>

namespace qwen::models::vae {

void blend_v(const torch::Tensor& a, torch::Tensor& b, int64_t extent) {
  extent = std::min({a.size(2), b.size(2), extent});
  for (int64_t y = 0; y < extent; ++y) {
    const double t = double(y) / double(extent);
    b.select(2, y).copy_(a.select(2, a.size(2) - extent + y) * (1.0 - t) + b.select(2, y) * t);
  }
}

void blend_h(const torch::Tensor& a, torch::Tensor& b, int64_t extent) {
  extent = std::min({a.size(3), b.size(3), extent});
  for (int64_t x = 0; x < extent; ++x) {
    const double t = double(x) / double(extent);
    b.select(3, x).copy_(a.select(3, a.size(3) - extent + x) * (1.0 - t) + b.select(3, x) * t);
  }
}

torch::Tensor stitch(std::vector<std::vector<torch::Tensor>>& rows, int64_t blend, int64_t keep,
                     int64_t out_h, int64_t out_w) {
  std::vector<torch::Tensor> result_rows;
  for (size_t i = 0; i < rows.size(); ++i) {
    std::vector<torch::Tensor> result_row;
    for (size_t j = 0; j < rows[i].size(); ++j) {
      torch::Tensor& tile = rows[i][j];
      if (i > 0) blend_v(rows[i - 1][j], tile, blend);
      if (j > 0) blend_h(rows[i][j - 1], tile, blend);
      result_row.push_back(tile.narrow(2, 0, std::min(keep, tile.size(2)))
                               .narrow(3, 0, std::min(keep, tile.size(3))));
    }
    result_rows.push_back(torch::cat(result_row, 3));
  }
  torch::Tensor out = torch::cat(result_rows, 2);
  return out.narrow(2, 0, std::min(out_h, out.size(2))).narrow(3, 0, std::min(out_w, out.size(3)));
}

}  // namespace qwen::models::vae
