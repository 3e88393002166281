#include "models/transformer21_layout.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace qwen::models::qwen21 {

namespace {

constexpr int64_t kTokensPerSlot = 4;  // _IMG_TOKENS_PER_SLOT: one slot = 2x2 latent tokens
// QwenImage21Rope's table: rows for positions 0..8191 and -1024..-1.
constexpr int64_t kMaxPosition = 8192, kMinPosition = -1024;

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("Qwen-Image-2.1 token layout: " + what);
}

}  // namespace

TokenLayout make_token_layout(const std::vector<bool>& img_mask,
                              const std::vector<Shape>& img_shapes) {
  if (img_shapes.empty()) fail("no image shapes (the target image's shape is needed)");
  TokenLayout L;
  // repeat_interleave(img_mask, where(img_mask, 4, 1)): the joint sequence's image flags, and the
  // joint index of every text slot.
  std::vector<bool> is_image;
  is_image.reserve(img_mask.size() * 2);
  for (size_t slot = 0; slot < img_mask.size(); ++slot) {
    if (img_mask[slot]) {
      is_image.insert(is_image.end(), kTokensPerSlot, true);
    } else {
      L.text_joint.push_back(static_cast<int64_t>(is_image.size()));
      L.text_slot.push_back(static_cast<int64_t>(slot));
      is_image.push_back(false);
    }
  }
  L.seq_len = static_cast<int64_t>(is_image.size());
  int64_t image_tokens = 0, shape_tokens = 0;
  for (bool b : is_image) image_tokens += b;
  for (const auto& s : img_shapes) {
    if (s[0] != 1 || s[1] <= 0 || s[2] <= 0)
      fail("image shape (" + std::to_string(s[0]) + ", " + std::to_string(s[1]) + ", " +
           std::to_string(s[2]) + ") must be (1, height, width) with positive sizes");
    shape_tokens += s[1] * s[2];
  }
  if (shape_tokens != image_tokens)
    fail("img_shapes account for " + std::to_string(shape_tokens) +
         " image tokens but the image slots of img_mask mark " + std::to_string(image_tokens) +
         " (4 per slot)");

  // build_token_metadata + QwenImage21Rope.forward: blocks in order from the token counts; text
  // advances one position on all three axes; a block takes frame = the current position and
  // centred h/w grids, then the position advances by max(h, w).
  L.image_ids.assign(L.seq_len, -1);
  L.positions.assign(L.seq_len, {0, 0, 0});
  int64_t cursor = 0, position = 0;
  for (size_t b = 0; b < img_shapes.size(); ++b) {
    const int64_t h = img_shapes[b][1], w = img_shapes[b][2];
    int64_t start = cursor;
    while (start < L.seq_len && !is_image[start]) ++start;
    for (int64_t i = cursor; i < start; ++i)
      L.positions[i] = {position, position, position}, ++position;
    if (start + h * w > L.seq_len)
      fail("image block " + std::to_string(b) + " runs past the sequence");
    for (int64_t i = start; i < start + h * w; ++i)
      if (!is_image[i])
        fail("image block " + std::to_string(b) + " (" + std::to_string(h) + "x" +
             std::to_string(w) + " tokens) is interrupted by text at token " + std::to_string(i) +
             ": its slots must be contiguous");
    int64_t i = start;
    for (int64_t r = -(h - h / 2); r < h / 2; ++r)
      for (int64_t c = -(w - w / 2); c < w / 2; ++c, ++i) {
        L.image_ids[i] = static_cast<int64_t>(b);
        L.positions[i] = {position, r, c};
      }
    position += std::max(h, w);
    cursor = start + h * w;
  }
  if (cursor != L.seq_len)
    fail(std::to_string(L.seq_len - cursor) +
         " text token(s) follow the target image; the target's slots must come last");
  L.target_len = img_shapes.back()[1] * img_shapes.back()[2];
  L.prefix_len = L.seq_len - L.target_len;
  for (int64_t i = 0; i < L.prefix_len; ++i)
    if (L.image_ids[i] >= 0) L.condition_joint.push_back(i);
  for (const auto& p : L.positions)
    for (int64_t v : p)
      if (v < kMinPosition || v >= kMaxPosition)
        fail("RoPE position " + std::to_string(v) + " is outside the reference's table [" +
             std::to_string(kMinPosition) + ", " + std::to_string(kMaxPosition) +
             "): the prompt or the images are too large");
  // _qwenimage21_prefix_segments
  int64_t s = 0;
  for (int64_t i = 1; i <= L.prefix_len; ++i)
    if (i == L.prefix_len || L.image_ids[i] != L.image_ids[s]) {
      L.segments.push_back({s, i, L.image_ids[s] < 0});
      s = i;
    }
  return L;
}

bool may_attend(const TokenLayout& layout, int64_t q, int64_t kv) {
  const int64_t a = layout.image_ids.at(q), b = layout.image_ids.at(kv);
  return q >= kv || (a == b && a >= 0);
}

}  // namespace qwen::models::qwen21
