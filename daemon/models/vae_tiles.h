// The blending and stitching of diffusers' tiled VAE paths (AutoencoderKLWan.tiled_encode /
// tiled_decode and their copies: AutoencoderKLQwenImage, AutoencoderKLQwenImage21), on 4-D
// [B, C, H, W] tiles.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace qwen::models::vae {

// blend_v / blend_h: the first `extent` rows (columns) of b become a linear blend from a's last
// `extent` rows (columns), row by row with Python-float weights, in place on b.
void blend_v(const torch::Tensor& a, torch::Tensor& b, int64_t extent);
void blend_h(const torch::Tensor& a, torch::Tensor& b, int64_t extent);

// Blends a grid of tiles (raster order, in place: each tile with the one above, then the one to
// its left), keeps the first `keep` rows and columns of each and crops the result to out_h x out_w.
torch::Tensor stitch(std::vector<std::vector<torch::Tensor>>& rows, int64_t blend, int64_t keep,
                     int64_t out_h, int64_t out_w);

}  // namespace qwen::models::vae
