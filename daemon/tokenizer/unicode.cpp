#include "tokenizer/unicode.h"

#include <utf8proc.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "tokenizer/qwen2_tokenizer.h"

namespace qwen::tokenizer {

namespace {

// Length and the allowed range of the first continuation byte of a sequence starting with `b0`
// (Unicode Table 3-7, well-formed UTF-8). need == 0: not a valid lead byte.
struct Lead {
  int need;
  uint8_t lo;
  uint8_t hi;
};

Lead lead_of(uint8_t b0) {
  if (b0 >= 0xC2 && b0 <= 0xDF) return {1, 0x80, 0xBF};
  if (b0 == 0xE0) return {2, 0xA0, 0xBF};
  if (b0 == 0xED) return {2, 0x80, 0x9F};
  if (b0 >= 0xE1 && b0 <= 0xEF) return {2, 0x80, 0xBF};
  if (b0 == 0xF0) return {3, 0x90, 0xBF};
  if (b0 >= 0xF1 && b0 <= 0xF3) return {3, 0x80, 0xBF};
  if (b0 == 0xF4) return {3, 0x80, 0x8F};
  return {0, 0, 0};
}

// Decodes at pos; on failure returns the length of the maximal invalid subpart (>= 1) in *bad.
bool decode_at(std::string_view s, size_t pos, char32_t& cp, size_t& len) {
  const auto b0 = static_cast<uint8_t>(s[pos]);
  if (b0 < 0x80) {
    cp = b0;
    len = 1;
    return true;
  }
  const Lead l = lead_of(b0);
  if (l.need == 0) {
    len = 1;
    return false;
  }
  char32_t v = b0 & (l.need == 1 ? 0x1F : l.need == 2 ? 0x0F : 0x07);
  for (int k = 1; k <= l.need; ++k) {
    if (pos + k >= s.size()) {
      len = k;
      return false;
    }
    const auto b = static_cast<uint8_t>(s[pos + k]);
    const uint8_t lo = k == 1 ? l.lo : 0x80;
    const uint8_t hi = k == 1 ? l.hi : 0xBF;
    if (b < lo || b > hi) {
      len = k;
      return false;
    }
    v = (v << 6) | (b & 0x3F);
  }
  cp = v;
  len = static_cast<size_t>(l.need) + 1;
  return true;
}

constexpr std::array<uint8_t, 128> make_ascii_classes() {
  std::array<uint8_t, 128> t{};
  for (int c = 0; c < 128; ++c) {
    uint8_t v = kOther;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) v = kLetter;
    if (c >= '0' && c <= '9') v = kNumber;
    if ((c >= 9 && c <= 13) || c == 32) v = kSpace;
    if (c == '\r' || c == '\n') v = kSpace | kNewline;
    t[c] = v;
  }
  return t;
}
constexpr std::array<uint8_t, 128> kAsciiClasses = make_ascii_classes();

bool is_white_space(char32_t cp) {
  // Unicode White_Space above ASCII (the Python `regex` module's \s).
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

}  // namespace

bool utf8_next(std::string_view s, size_t& pos, char32_t& cp) {
  size_t len = 0;
  if (!decode_at(s, pos, cp, len)) return false;
  pos += len;
  return true;
}

void validate_utf8(std::string_view s) {
  size_t pos = 0;
  // ASCII fast path, 8 bytes at a time.
  while (pos < s.size()) {
    while (pos + 8 <= s.size()) {
      uint64_t w;
      __builtin_memcpy(&w, s.data() + pos, 8);
      if (w & 0x8080808080808080ull) break;
      pos += 8;
    }
    if (pos >= s.size()) break;
    char32_t cp;
    size_t len = 0;
    if (!decode_at(s, pos, cp, len)) {
      char buf[160];
      std::snprintf(buf, sizeof buf,
                    "invalid UTF-8 in the text at byte offset %zu (byte 0x%02X); the tokenizer "
                    "needs valid UTF-8 text",
                    pos, static_cast<unsigned>(static_cast<uint8_t>(s[pos])));
      throw TokenizerError(buf);
    }
    pos += len;
  }
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {

// Code points that NFC leaves alone whatever surrounds them: no canonical decomposition, combining
// class 0,
// no role in any canonical composition, and no Hangul jamo (composed algorithmically). A text
// made only of these is already NFC (ASCII, CJK ideographs and punctuation, kana, Hangul
// syllables, most emoji).
class NfcInert {
 public:
  NfcInert() : bits_((0x110000 + 63) / 64, 0) {
    for (char32_t c = 0; c < 0x110000; ++c) {
      if (c >= 0xD800 && c <= 0xDFFF) continue;
      const utf8proc_property_t* p = utf8proc_get_property(static_cast<utf8proc_int32_t>(c));
      const bool jamo = (c >= 0x1100 && c <= 0x11FF) || (c >= 0xA960 && c <= 0xA97F) ||
                        (c >= 0xD7B0 && c <= 0xD7FF);
      // Compatibility decompositions (decomp_type != 0) do not matter to NFC.
      const bool canonical_decomposition = p->decomp_seqindex != UINT16_MAX && p->decomp_type == 0;
      if (p->combining_class == 0 && !canonical_decomposition && p->comb_index == UINT16_MAX &&
          !jamo) {
        bits_[c >> 6] |= 1ull << (c & 63);
      }
    }
  }
  bool test(char32_t c) const { return (bits_[c >> 6] >> (c & 63)) & 1; }

 private:
  std::vector<uint64_t> bits_;
};

bool already_nfc(std::string_view s) {
  static const NfcInert inert;
  size_t pos = 0;
  while (pos < s.size()) {
    const auto b = static_cast<uint8_t>(s[pos]);
    if (b < 0x80) {
      ++pos;
      continue;
    }
    char32_t cp;
    if (!utf8_next(s, pos, cp) || !inert.test(cp)) return false;
  }
  return true;
}

}  // namespace

std::string nfc(std::string_view s) {
  if (already_nfc(s)) return std::string(s);
  utf8proc_uint8_t* dst = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(
      reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
      &dst, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) {
    throw TokenizerError(std::string("NFC normalization failed: ") + utf8proc_errmsg(n));
  }
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> guard(dst, &std::free);
  return std::string(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
}

void append_utf8_lossy(std::string& out, std::string_view bytes) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    char32_t cp;
    size_t len = 0;
    if (decode_at(bytes, pos, cp, len)) {
      out.append(bytes.data() + pos, len);
    } else {
      out.append("\xEF\xBF\xBD");  // U+FFFD
    }
    pos += len;
  }
}

uint8_t char_class(char32_t cp) {
  if (cp < 0x80) return kAsciiClasses[cp];
  if (is_white_space(cp)) return kSpace;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
      return kLetter;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return kNumber;
    default:
      return kOther;
  }
}

}  // namespace qwen::tokenizer
