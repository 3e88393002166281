#include "tokenizer/pretokenizer.h"

#include <cstdint>

#include "tokenizer/qwen2_tokenizer.h"
#include "tokenizer/unicode.h"

namespace qwen::tokenizer {

namespace {

struct Scratch {
  std::vector<char32_t> cps;
  std::vector<uint8_t> cls;
  std::vector<uint32_t> off;  // byte offset of every code point, plus the end
};

constexpr uint8_t kNotOther = kLetter | kNumber | kSpace;

inline bool is_other(uint8_t c) { return (c & kNotOther) == 0; }

// (?i:'s|'t|'re|'ve|'m|'ll|'d) at i (cps[i] == '\''): length of the match or 0. Case-insensitive
// matching as the Python `regex` module does it: `s` also matches U+017F LATIN SMALL LETTER LONG S.
size_t match_contraction(const Scratch& s, size_t i, size_t n) {
  if (i + 1 >= n) return 0;
  const char32_t a = s.cps[i + 1];
  auto lower = [](char32_t c) -> char32_t { return (c >= 'A' && c <= 'Z') ? c + 32 : c; };
  const char32_t la = lower(a);
  if (la == 's' || a == 0x17F || la == 't' || la == 'm' || la == 'd') return 2;
  if (i + 2 >= n) return 0;
  const char32_t lb = lower(s.cps[i + 2]);
  if ((la == 'r' && lb == 'e') || (la == 'v' && lb == 'e') || (la == 'l' && lb == 'l')) return 3;
  return 0;
}

// Length (in code points) of the match starting at i; always >= 1.
size_t match_at(const Scratch& s, size_t i, size_t n) {
  const uint8_t* cls = s.cls.data();
  const uint8_t c = cls[i];

  // A1: contractions.
  if (s.cps[i] == '\'') {
    if (size_t len = match_contraction(s, i, n)) return len;
  }
  // A2: [^\r\n\p{L}\p{N}]?\p{L}+
  {
    size_t j = 0;
    if (c & kLetter) {
      j = i + 1;
    } else if ((c & (kNewline | kLetter | kNumber)) == 0 && i + 1 < n && (cls[i + 1] & kLetter)) {
      j = i + 2;
    }
    if (j != 0) {
      while (j < n && (cls[j] & kLetter)) ++j;
      return j - i;
    }
  }
  // A3: \p{N}
  if (c & kNumber) return 1;
  // A4: ' '?[^\s\p{L}\p{N}]+[\r\n]*
  {
    size_t k = i;
    if (s.cps[i] == ' ' && i + 1 < n && is_other(cls[i + 1])) k = i + 1;
    if (is_other(cls[k])) {
      size_t j = k + 1;
      while (j < n && is_other(cls[j])) ++j;
      while (j < n && (cls[j] & kNewline)) ++j;
      return j - i;
    }
  }
  // Here cps[i] is whitespace.
  size_t run = i;
  size_t last_newline = n;  // none
  while (run < n && (cls[run] & kSpace)) {
    if (cls[run] & kNewline) last_newline = run;
    ++run;
  }
  // A5: \s*[\r\n]+ ends at the last newline of the whitespace run.
  if (last_newline != n) return last_newline + 1 - i;
  // A6: \s+(?!\S): the whole run at the end of the text, else the run minus its last char.
  if (run == n) return run - i;
  if (run - 1 > i) return run - 1 - i;
  // A7: \s+ (a single whitespace char before a non-whitespace char).
  return run - i;
}

}  // namespace

void pretokenize(std::string_view text, std::vector<std::string_view>& out) {
  if (text.empty()) return;
  thread_local Scratch s;
  s.cps.clear();
  s.cls.clear();
  s.off.clear();
  size_t pos = 0;
  while (pos < text.size()) {
    s.off.push_back(static_cast<uint32_t>(pos));
    char32_t cp;
    if (!utf8_next(text, pos, cp)) {
      throw TokenizerError("pretokenize: invalid UTF-8 at byte offset " + std::to_string(pos));
    }
    s.cps.push_back(cp);
    s.cls.push_back(char_class(cp));
  }
  s.off.push_back(static_cast<uint32_t>(text.size()));
  const size_t n = s.cps.size();
  size_t i = 0;
  while (i < n) {
    const size_t len = match_at(s, i, n);
    out.push_back(text.substr(s.off[i], s.off[i + len] - s.off[i]));
    i += len;
  }
}

}  // namespace qwen::tokenizer
