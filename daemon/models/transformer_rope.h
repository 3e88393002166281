// Multi-axis RoPE of QwenImageTransformer2DModel (`QwenEmbedRope`, spec §2.5): 64 interleaved
// complex pairs per 128-wide head split over (frame, height, width); centred image grids (extra
// row/column on the negative side), frame index = image index, text on the diagonal after the
// largest image half-size. Nothing here is in the checkpoint.
// Layered models (`use_layer3d_rope`, `QwenEmbedLayer3DRope`): segment j gets frame index j except
// the last (the condition image), which gets frame -1, and the text starts after
// max(largest half-size, number of segments - 1).
#pragma once

#include <torch/torch.h>

#include <array>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace qwen::models {

// One image segment of the packed sequence: (frames, rows, columns) in packed-token units
// (pixels / 16).
using ImageShape = std::array<int64_t, 3>;

namespace dit {

class MultiAxisRope {
 public:
  MultiAxisRope(std::array<int64_t, 3> axes_dim, double theta = 10000.0, bool layer3d = false);

  // Complex64 tables on `device`: image [S_img, Dh/2] (segments in order) and text [S_txt, Dh/2].
  // Built in float32 on the CPU (as the reference does), then moved; cached per shape.
  std::pair<torch::Tensor, torch::Tensor> tables(const std::vector<ImageShape>& img_shapes,
                                                 int64_t txt_len, const torch::Device& device);

  // Integer positions (frame, height, width) of every image token and the text start offset M.
  // `layer3d`: the Layered positions (see above).
  static torch::Tensor image_positions(const std::vector<ImageShape>& img_shapes,
                                       bool layer3d = false);
  static int64_t text_offset(const std::vector<ImageShape>& img_shapes, bool layer3d = false);
  bool layer3d() const { return layer3d_; }

 private:
  torch::Tensor angles(const torch::Tensor& positions) const;  // [S,3] int64 -> [S, Dh/2] f32
  std::array<int64_t, 3> axes_dim_;
  bool layer3d_ = false;
  std::array<torch::Tensor, 3> inv_freq_;  // float32 per axis
  std::map<std::string, std::pair<torch::Tensor, torch::Tensor>> cache_;
};

// Rotates q or k [B, S, H, Dh] by a complex table [S, Dh/2]: float32 complex multiply of the
// interleaved pairs (2i, 2i+1), result cast back to x's dtype.
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& freqs);

}  // namespace dit
}  // namespace qwen::models
