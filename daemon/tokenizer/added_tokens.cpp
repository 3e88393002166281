#include "tokenizer/added_tokens.h"

#include "tokenizer/unicode.h"

namespace qwen::tokenizer {

namespace {

// Python str.isspace(): White_Space plus U+001C..U+001F (what str.lstrip()/rstrip() remove).
bool py_isspace(char32_t cp) {
  return (char_class(cp) & kSpace) != 0 || (cp >= 0x1C && cp <= 0x1F);
}

std::string_view lstrip(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    size_t next = pos;
    char32_t cp;
    if (!utf8_next(s, next, cp) || !py_isspace(cp)) break;
    pos = next;
  }
  return s.substr(pos);
}

std::string_view rstrip(std::string_view s) {
  // Walk forward, remembering where the trailing whitespace run starts.
  size_t pos = 0;
  size_t keep = 0;
  while (pos < s.size()) {
    char32_t cp;
    if (!utf8_next(s, pos, cp)) return s;
    if (!py_isspace(cp)) keep = pos;
  }
  return s.substr(0, keep);
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>& tokens) : tokens_(tokens) {
  nodes_.emplace_back();
  for (size_t t = 0; t < tokens.size(); ++t) {
    const std::string& s = tokens[t].content;
    if (s.empty()) throw TokenizerError("an added token has empty content");
    int32_t node = 0;
    for (char c : s) {
      const auto b = static_cast<uint8_t>(c);
      int32_t next = child(node, b);
      if (next < 0) {
        next = static_cast<int32_t>(nodes_.size());
        nodes_[node].children.emplace_back(b, next);
        nodes_.emplace_back();
      }
      node = next;
    }
    nodes_[node].token = static_cast<int32_t>(t);
    first_byte_[static_cast<uint8_t>(s[0])] = true;
  }
}

int32_t AddedTokenMatcher::child(int32_t node, uint8_t byte) const {
  for (const auto& [b, n] : nodes_[node].children) {
    if (b == byte) return n;
  }
  return -1;
}

void AddedTokenMatcher::split(std::string_view text, std::vector<Piece>& out) const {
  const size_t first_out = out.size();
  size_t plain_start = 0;
  size_t i = 0;
  while (i < text.size()) {
    if (!first_byte_[static_cast<uint8_t>(text[i])]) {
      ++i;
      continue;
    }
    int32_t node = 0;
    int32_t best = -1;
    size_t best_len = 0;
    for (size_t j = i; j < text.size(); ++j) {
      node = child(node, static_cast<uint8_t>(text[j]));
      if (node < 0) break;
      if (nodes_[node].token >= 0) {
        best = nodes_[node].token;
        best_len = j + 1 - i;
      }
    }
    if (best < 0) {
      ++i;
      continue;
    }
    if (i > plain_start) out.push_back(Piece{text.substr(plain_start, i - plain_start), -1});
    out.push_back(Piece{text.substr(i, best_len), best});
    i += best_len;
    plain_start = i;
  }
  if (plain_start < text.size()) out.push_back(Piece{text.substr(plain_start), -1});

  // lstrip / rstrip (the slow reference strips the neighbouring plain pieces).
  for (size_t k = first_out; k < out.size(); ++k) {
    if (out[k].token < 0) continue;
    const AddedToken& tok = tokens_[out[k].token];
    if (tok.rstrip && k + 1 < out.size() && out[k + 1].token < 0) {
      out[k + 1].text = lstrip(out[k + 1].text);
    }
    if (tok.lstrip && k > first_out && out[k - 1].token < 0) {
      out[k - 1].text = rstrip(out[k - 1].text);
    }
  }
}

}  // namespace qwen::tokenizer
