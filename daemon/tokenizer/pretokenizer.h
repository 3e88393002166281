// The Qwen2 split regex as a hand-written scanner (exact, including the backtracking of
// `\s+(?!\S)`):
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|
//   \s*[\r\n]+|\s+(?!\S)|\s+
// Spec: text-encoder-and-vae.md §1.2 step 3.
#pragma once

#include <string_view>
#include <vector>

namespace qwen::tokenizer {

// Splits valid UTF-8 `text` into consecutive pre-tokens (views into `text`) appended to `out`.
// Every byte of `text` belongs to exactly one pre-token.
void pretokenize(std::string_view text, std::vector<std::string_view>& out);

}  // namespace qwen::tokenizer
