// Matching of added/special tokens on the text (spec §1.2 step 1): leftmost match first, the
// longest token wins at a position; the matched substrings become their ids directly.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/qwen2_tokenizer.h"

namespace qwen::tokenizer {

class AddedTokenMatcher {
 public:
  explicit AddedTokenMatcher(const std::vector<AddedToken>& tokens);

  struct Piece {
    std::string_view text;  // plain text (token < 0) or the matched token's content
    int32_t token = -1;     // index into the token list given to the constructor
  };
  // Splits `text` into plain pieces and token pieces, in order; empty plain pieces are omitted.
  // lstrip/rstrip tokens remove the whitespace next to them from the neighbouring plain pieces.
  void split(std::string_view text, std::vector<Piece>& out) const;

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;
    int32_t token = -1;
  };
  int32_t child(int32_t node, uint8_t byte) const;
  std::vector<Node> nodes_;
  std::vector<AddedToken> tokens_;
  bool first_byte_[256] = {};
};

}  // namespace qwen::tokenizer
