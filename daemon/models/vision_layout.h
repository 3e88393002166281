// Index bookkeeping of the Qwen2.5-VL vision tower: 2-D rotary positions of the patches, window
// order (window_index), window / full-attention segment boundaries. Pure integer work on CPU.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "models/text_encoder_config.h"

namespace qwen::models::qwenvl {

struct VisionLayout {
  // Per patch (rows of pixel_values, merge-block order): patch-grid row and column. int64 [N, 2].
  torch::Tensor pos_ids;
  // Merged-token order of the windows: row k of the window-ordered sequence is merged token
  // window_index[k] (offset per image). int64 [M].
  torch::Tensor window_index;
  // Boundaries (in patches) of the attention windows, consecutive duplicates removed.
  std::vector<int64_t> cu_window_seqlens;
  // Boundaries (in patches) of the frames (= images) for the full-attention blocks.
  std::vector<int64_t> cu_seqlens;
  int64_t num_patches = 0;  // N
};

// `grid_thw` [n_images, 3] (t, h, w in patches). Throws std::invalid_argument on grids the tower
// cannot take (non-positive sizes, h or w not a multiple of spatial_merge_size).
VisionLayout vision_layout(const torch::Tensor& grid_thw, const VisionConfig& cfg);

// rot_pos_emb: float32 [N, head_dim/2] = concat(row * inv_freq, col * inv_freq), inv_freq over
// head_dim/2 with theta 10000 (always float32, whatever the model dtype).
torch::Tensor vision_rotary_pos_emb(const torch::Tensor& pos_ids, int64_t head_dim);

}  // namespace qwen::models::qwenvl
