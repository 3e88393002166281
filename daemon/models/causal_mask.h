// The decoder mask of the Qwen VL text encoders (Qwen2.5-VL and Qwen3-VL): causal attention that
// never attends padded keys, as transformers' create_causal_mask with a padding mask.
#pragma once

#include <torch/torch.h>

namespace qwen::models {

// attention_mask [B, L] (1 = valid, any integer/bool dtype) or undefined. Returns undefined (plain
// causal attention) when every token is valid, else bool [B, 1, L, L] (true = attend): key k is
// visible to query q iff k <= q and k is valid. A padded query with no visible key (left padding)
// attends itself instead of producing NaN; its output is discarded, and NaN would leak into valid
// rows through 0 * NaN in the next layer. Throws std::invalid_argument on a mask that is not
// [batch, length].
torch::Tensor causal_padding_mask(const torch::Tensor& attention_mask, int64_t batch,
                                  int64_t length, torch::Device device);

}  // namespace qwen::models
