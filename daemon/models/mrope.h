// Multimodal rotary position embedding (M-RoPE) of Qwen2.5-VL: 3-component position ids
// (get_rope_index) and the per-dimension cos/sin tables of the language model.
#pragma once

#include <torch/torch.h>

#include <array>
#include <utility>

namespace qwen::models::qwenvl {

struct RopeTokenIds {
  int64_t image_token_id = 151655;
  int64_t video_token_id = 151656;
  int64_t vision_start_token_id = 151652;
};

struct RopeIndex {
  torch::Tensor position_ids;  // int64 [3, B, L] (t, h, w); padded slots hold 1
  torch::Tensor rope_deltas;   // int64 [B, 1] = max position + 1 - L
};

// Text-only positions: cumsum(mask) - 1 on every axis, padded slots 1. `attention_mask` [B, L]
// (any integer/bool dtype); an undefined mask means "all valid" and needs `batch`/`length`.
RopeIndex text_rope_index(const torch::Tensor& attention_mask, int64_t batch = 0,
                          int64_t length = 0);

// transformers' Qwen2_5_VLModel.get_rope_index for images (no videos). Images are the
// `<|vision_start|><|image_pad|>` occurrences, consumed from `image_grid_thw` ([n, 3] = t, h, w in
// patches) in batch/sequence order. Image tokens get (base, base + row, base + col) over the merged
// grid; text after an image continues from max + 1. With an undefined `image_grid_thw` this is
// text_rope_index. Throws std::invalid_argument when tokens and grids do not agree.
RopeIndex get_rope_index(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                         const torch::Tensor& image_grid_thw, const RopeTokenIds& ids,
                         int64_t spatial_merge_size);

// inv_freq[j] = 1 / theta^(2j / dim), j < dim/2, computed in float32 as torch does.
torch::Tensor rope_inv_freq(int64_t dim, double theta);

// cos/sin tables [B, L, head_dim] for `position_ids` [3, B, L]: computed in float32, cast to
// `dtype`, then dimension d takes axis t/h/w by `mrope_section` (doubled over the two halves).
std::pair<torch::Tensor, torch::Tensor> mrope_cos_sin(const torch::Tensor& position_ids,
                                                      int64_t head_dim, double theta,
                                                      const std::array<int64_t, 3>& mrope_section,
                                                      torch::Dtype dtype);

// x * cos + rotate_half(x) * sin, in x's dtype. x [B, H, L, D], cos/sin [B, L, D].
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos,
                         const torch::Tensor& sin);

}  // namespace qwen::models::qwenvl
