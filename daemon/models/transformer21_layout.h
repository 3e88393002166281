// The joint token sequence of QwenImage21Transformer2DModel (diffusers 0.42.1
// transformer_qwenimage21.py): where text, condition images and the target image sit, their RoPE
// positions and the block-causal attention structure. Torch-free (plain vectors), so the rules are
// unit-tested on their own; models/transformer21.cpp turns them into tensors.
//
// The vision-language sequence (`img_mask`, one flag per slot, the target's slots appended at the
// end as the pipeline does) expands every image slot to 4 latent tokens (2x2); text slots stay one
// token. Image tokens are labelled block by block from the token counts of `img_shapes` (condition
// images first, the target last), not from runs of slots.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace qwen::models::qwen21 {

// (frames, height, width) in latent tokens; the same type as models::ImageShape.
using Shape = std::array<int64_t, 3>;

// A run of equal block ids in the prefix: [start, end), text or one condition image.
struct Segment {
  int64_t start = 0, end = 0;
  bool text = false;
  bool operator==(const Segment&) const = default;
};

struct TokenLayout {
  int64_t seq_len = 0;             // joint sequence length
  int64_t prefix_len = 0;          // text + condition tokens, all before the target
  int64_t target_len = 0;          // the target image's tokens, the last ones
  std::vector<int64_t> image_ids;  // per joint token: -1 text, else the image block's index
  // Per joint token: the RoPE position (frame, height, width) (QwenImage21Rope.forward).
  std::vector<std::array<int64_t, 3>> positions;
  // Joint index of every text token, and its slot in the vision-language sequence (in order).
  std::vector<int64_t> text_joint, text_slot;
  // Joint index of every condition-image token, in order (the rows of hidden_states before the
  // target's).
  std::vector<int64_t> condition_joint;
  std::vector<Segment> segments;  // the prefix as runs (_qwenimage21_prefix_segments)
};

// Builds the layout. Throws std::invalid_argument, saying what does not fit, when the image tokens
// (4 per slot) do not add up to the shapes' tokens (the reference's ValueError), when a shape has
// frames != 1 or a non-positive size, when a block's tokens are not contiguous, when text follows
// the target image (the pipeline always appends the target last), or when a RoPE position falls
// outside the reference's table [-1024, 8192).
TokenLayout make_token_layout(const std::vector<bool>& img_mask,
                              const std::vector<Shape>& img_shapes);

// The reference's mask rule (build_qwenimage21_block_causal_mask without key padding): query q may
// attend to key kv when q >= kv or both are in the same image block. Text is causal, every image
// block bidirectional inside, the target sees everything and the prefix never sees the target.
bool may_attend(const TokenLayout& layout, int64_t q, int64_t kv);

}  // namespace qwen::models::qwen21
