#include "tokenizer/qwen2_tokenizer.h"

#include <algorithm>
#include <filesystem>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer_files.h"
#include "tokenizer/unicode.h"

namespace qwen::tokenizer {

namespace fs = std::filesystem;

size_t BatchEncoding::max_row_length() const {
  size_t m = 0;
  for (const auto& r : ids) m = std::max(m, r.size());
  return m;
}

Qwen2Tokenizer::Qwen2Tokenizer() = default;
Qwen2Tokenizer::Qwen2Tokenizer(Qwen2Tokenizer&&) noexcept = default;
Qwen2Tokenizer& Qwen2Tokenizer::operator=(Qwen2Tokenizer&&) noexcept = default;
Qwen2Tokenizer::~Qwen2Tokenizer() = default;

Qwen2Tokenizer Qwen2Tokenizer::load(const std::string& folder) {
  return build(read_tokenizer_folder(folder));
}

Qwen2Tokenizer Qwen2Tokenizer::load_tokenizer_json(const std::string& path) {
  return build(read_tokenizer_json(path));
}

std::string Qwen2Tokenizer::resolve_folder(const std::string& dir) {
  std::error_code ec;
  auto has_files = [&](const fs::path& p) {
    return (fs::exists(p / "vocab.json", ec) && fs::exists(p / "merges.txt", ec)) ||
           fs::exists(p / "tokenizer.json", ec);
  };
  const fs::path d(dir);
  if (!fs::is_directory(d, ec)) throw TokenizerError("model folder " + dir + " does not exist");
  for (const fs::path& p : {d / "tokenizer", d, d / "processor"}) {
    if (has_files(p)) return p.string();
  }
  throw TokenizerError("no tokenizer in " + dir +
                       ": expected vocab.json + merges.txt or tokenizer.json in " + dir +
                       "/tokenizer, " + dir + " or " + dir + "/processor");
}

Qwen2Tokenizer Qwen2Tokenizer::build(TokenizerSpec spec) {
  Qwen2Tokenizer t;
  t.bpe_ = std::make_unique<BpeModel>(std::move(spec.vocab), spec.merges, spec.label);
  spec.merges.clear();
  spec.merges.shrink_to_fit();
  t.added_ = std::move(spec.added);
  int32_t max_id = static_cast<int32_t>(t.bpe_->id_limit()) - 1;
  for (const AddedToken& a : t.added_) {
    if (const std::string* v = t.bpe_->id_to_token(a.id); v && *v != a.content) {
      throw TokenizerError(spec.source + ": added token \"" + a.content + "\" has id " +
                           std::to_string(a.id) + ", which the vocabulary gives to \"" + *v + "\"");
    }
    if (auto v = t.bpe_->token_to_id(a.content); v && *v != a.id) {
      throw TokenizerError(spec.source + ": added token \"" + a.content + "\" has id " +
                           std::to_string(a.id) + " but the vocabulary has it as id " +
                           std::to_string(*v));
    }
    max_id = std::max(max_id, a.id);
  }
  t.added_index_.assign(static_cast<size_t>(max_id + 1), -1);
  for (size_t i = 0; i < t.added_.size(); ++i) {
    t.added_index_[t.added_[i].id] = static_cast<int32_t>(i);
  }
  t.matcher_ = std::make_unique<AddedTokenMatcher>(t.added_);
  t.source_ = spec.source;

  auto resolve = [&](const std::string& content, const char* what) -> std::optional<int32_t> {
    if (content.empty()) return std::nullopt;
    if (auto id = t.token_to_id(content)) return id;
    throw TokenizerError(spec.source + ": the " + what + " \"" + content +
                         "\" is neither an added token nor in the vocabulary");
  };
  t.pad_id_ = resolve(spec.pad_token, "pad token");
  if (!t.pad_id_) t.pad_id_ = t.token_to_id("<|endoftext|>");
  t.eos_id_ = resolve(spec.eos_token, "eos token");
  return t;
}

int32_t Qwen2Tokenizer::pad_token_id() const {
  if (!pad_id_) {
    throw TokenizerError(source_ +
                         ": the tokenizer defines no pad token (pad_token in "
                         "tokenizer_config.json), so rows of different lengths "
                         "cannot be padded");
  }
  return *pad_id_;
}

std::optional<int32_t> Qwen2Tokenizer::token_to_id(std::string_view token) const {
  for (const AddedToken& a : added_) {
    if (a.content == token) return a.id;
  }
  return bpe_->token_to_id(token);
}

std::string Qwen2Tokenizer::id_to_token(int32_t id) const {
  if (id >= 0 && static_cast<size_t>(id) < added_index_.size() && added_index_[id] >= 0) {
    return added_[added_index_[id]].content;
  }
  if (const std::string* s = bpe_->id_to_token(id)) return *s;
  throw TokenizerError("token id " + std::to_string(id) + " is not in the vocabulary (" +
                       std::to_string(vocab_size()) + " ids)");
}

size_t Qwen2Tokenizer::vocab_size() const {
  size_t n = bpe_->vocab_size();
  for (const AddedToken& a : added_) {
    if (!bpe_->id_to_token(a.id)) ++n;
  }
  return n;
}

size_t Qwen2Tokenizer::num_merges() const { return bpe_->num_merges(); }

void Qwen2Tokenizer::clear_cache() const { bpe_->clear_cache(); }

void Qwen2Tokenizer::encode_segment(std::string_view text, std::vector<int32_t>& out) const {
  thread_local std::vector<std::string_view> words;
  words.clear();
  pretokenize(text, words);
  for (std::string_view w : words) bpe_->encode_word(w, out);
}

std::vector<int32_t> Qwen2Tokenizer::encode(std::string_view text) const {
  validate_utf8(text);
  // The slow reference normalizes the whole text first, then splits on added tokens.
  const std::string normalized = nfc(text);
  std::vector<AddedTokenMatcher::Piece> pieces;
  matcher_->split(normalized, pieces);
  std::vector<int32_t> ids;
  ids.reserve(normalized.size() / 3 + 4);
  for (const auto& p : pieces) {
    if (p.token >= 0) {
      ids.push_back(added_[p.token].id);
    } else {
      encode_segment(p.text, ids);
    }
  }
  return ids;
}

std::string Qwen2Tokenizer::decode(const std::vector<int32_t>& ids,
                                   bool skip_special_tokens) const {
  std::string out;
  std::string bytes;  // pending bytes of a run of vocabulary tokens
  for (int32_t id : ids) {
    if (id >= 0 && static_cast<size_t>(id) < added_index_.size() && added_index_[id] >= 0) {
      const AddedToken& a = added_[added_index_[id]];
      if (skip_special_tokens && a.special) continue;
      append_utf8_lossy(out, bytes);
      bytes.clear();
      out += a.content;
      continue;
    }
    const std::string* sym = bpe_->id_to_token(id);
    if (!sym) {
      throw TokenizerError("cannot decode token id " + std::to_string(id) +
                           ": not in the vocabulary (" + std::to_string(vocab_size()) + " ids)");
    }
    if (!symbols_to_bytes(*sym, bytes)) {
      throw TokenizerError("cannot decode token id " + std::to_string(id) +
                           ": its vocabulary string is not in the byte-level alphabet");
    }
  }
  append_utf8_lossy(out, bytes);
  return out;
}

BatchEncoding Qwen2Tokenizer::encode_batch(const std::vector<std::string>& texts,
                                           std::optional<size_t> max_length, bool pad) const {
  BatchEncoding b;
  b.ids.reserve(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<int32_t> ids;
    try {
      ids = encode(texts[i]);
    } catch (const TokenizerError& e) {
      throw TokenizerError("text #" + std::to_string(i) + " of the batch: " + e.what());
    }
    if (max_length && ids.size() > *max_length) ids.resize(*max_length);
    b.ids.push_back(std::move(ids));
  }
  const size_t longest = b.max_row_length();
  b.attention_mask.reserve(texts.size());
  for (auto& row : b.ids) {
    std::vector<int32_t> mask(row.size(), 1);
    if (pad && row.size() < longest) {
      const int32_t pad_id = pad_token_id();
      mask.resize(longest, 0);
      row.resize(longest, pad_id);
    }
    b.attention_mask.push_back(std::move(mask));
  }
  return b;
}

}  // namespace qwen::tokenizer
