// UTF-8 and Unicode helpers of the tokenizer: strict UTF-8 decoding, NFC, character classes of
// the Qwen2 split regex (Python `regex` module semantics: \p{L}, \p{N}, \s = White_Space).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace qwen::tokenizer {

// Decodes the code point starting at s[pos]; advances pos. Returns false (pos unchanged) on an
// invalid sequence: bad lead byte, truncated, overlong, surrogate or above U+10FFFF.
bool utf8_next(std::string_view s, size_t& pos, char32_t& cp);

// Throws TokenizerError naming the byte offset of the first invalid sequence.
void validate_utf8(std::string_view s);

void append_utf8(std::string& out, char32_t cp);

// NFC of valid UTF-8 text (ASCII is returned unchanged without a round trip).
std::string nfc(std::string_view s);

// Appends `bytes` decoded as UTF-8 with invalid sequences replaced by U+FFFD, one replacement per
// maximal invalid subpart (Python's bytes.decode("utf-8", errors="replace")).
void append_utf8_lossy(std::string& out, std::string_view bytes);

enum CharClass : uint8_t {
  kOther = 0,
  kLetter = 1,   // \p{L}: Lu Ll Lt Lm Lo
  kNumber = 2,   // \p{N}: Nd Nl No
  kSpace = 4,    // \s: White_Space
  kNewline = 8,  // \r or \n (also kSpace)
};

uint8_t char_class(char32_t cp);

}  // namespace qwen::tokenizer
