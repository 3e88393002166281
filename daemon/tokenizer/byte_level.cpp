#include "tokenizer/byte_level.h"

#include "tokenizer/unicode.h"

namespace qwen::tokenizer {

namespace {

struct Tables {
  std::array<char32_t, 256> to_cp{};
  std::array<int16_t, 324> to_byte{};  // code points 0..323 cover the whole alphabet
  Tables() {
    to_byte.fill(-1);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool same = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      to_cp[b] = same ? static_cast<char32_t>(b) : next++;
      to_byte[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

const std::array<char32_t, 256>& bytes_to_unicode() { return tables().to_cp; }

int unicode_to_byte(char32_t cp) {
  const auto& t = tables().to_byte;
  return cp < t.size() ? t[cp] : -1;
}

std::string bytes_to_symbols(std::string_view bytes) {
  const auto& t = tables().to_cp;
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) append_utf8(out, t[static_cast<uint8_t>(c)]);
  return out;
}

bool symbols_to_bytes(std::string_view symbols, std::string& out) {
  size_t pos = 0;
  while (pos < symbols.size()) {
    char32_t cp;
    if (!utf8_next(symbols, pos, cp)) return false;
    const int b = unicode_to_byte(cp);
    if (b < 0) return false;
    out.push_back(static_cast<char>(b));
  }
  return true;
}

}  // namespace qwen::tokenizer
