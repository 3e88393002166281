// Qwen2 byte-level BPE tokenizer (the tokenizer of Qwen2.5-VL / Qwen-Image), torch-free.
//
// Reproduces transformers' `Qwen2Tokenizer` (slow, the reference of the golden fixtures):
//   1. NFC normalization of the whole text,
//   2. added/special tokens matched atomically (leftmost, longest wins; lstrip/rstrip honoured),
//   3. the Qwen2 split regex on every remaining segment,
//   4. byte-to-unicode mapping and ranked BPE merges,
//   5. no BOS/EOS or other token is ever added.
// Spec: text-encoder-and-vae.md §1.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace qwen::tokenizer {

// Every problem with tokenizer files or with the input text; what() says what to fix.
struct TokenizerError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;  // special tokens can be dropped by decode(skip_special_tokens=true)
  bool lstrip = false;   // eat whitespace on the left of the token
  bool rstrip = false;   // eat whitespace on the right of the token
};

// Result of encode_batch: one row per text. With padding all rows have the same length.
struct BatchEncoding {
  std::vector<std::vector<int32_t>> ids;
  std::vector<std::vector<int32_t>> attention_mask;  // 1 = real token, 0 = padding
  size_t max_row_length() const;
};

class BpeModel;
class AddedTokenMatcher;
struct TokenizerSpec;

class Qwen2Tokenizer {
 public:
  // `folder` holds either vocab.json + merges.txt (preferred, like the slow reference) or
  // tokenizer.json; added tokens come from tokenizer_config.json (`added_tokens_decoder`),
  // added_tokens.json and tokenizer.json (`added_tokens`); the pad token from tokenizer_config.json
  // or special_tokens_map.json (`pad_token`, default `<|endoftext|>`).
  // Throws TokenizerError naming the file and the problem.
  static Qwen2Tokenizer load(const std::string& folder);

  // The folder holding the tokenizer files of a model folder: `dir/tokenizer` when it has them,
  // else `dir` itself, else `dir/processor`. Throws TokenizerError naming what was looked for.
  static std::string resolve_folder(const std::string& dir);

  // Builds a tokenizer from a HF `tokenizer.json` file (plus nothing else).
  static Qwen2Tokenizer load_tokenizer_json(const std::string& path);

  Qwen2Tokenizer(Qwen2Tokenizer&&) noexcept;
  Qwen2Tokenizer& operator=(Qwen2Tokenizer&&) noexcept;
  ~Qwen2Tokenizer();

  // Token ids of `text` (UTF-8). Throws TokenizerError on invalid UTF-8 (with the byte offset).
  // Thread-safe.
  std::vector<int32_t> encode(std::string_view text) const;

  // Text of `ids`; invalid UTF-8 byte sequences (from partial tokens) become U+FFFD like Python's
  // errors="replace". Throws TokenizerError on ids that are not in the vocabulary.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  // As the pipelines call the tokenizer: `tokenizer(texts, max_length=..., padding=True,
  // truncation=True)`. Each row is truncated on the right to `max_length` ids when given; with
  // `pad` the rows are padded on the right to the longest row with pad_token_id() and mask 0.
  BatchEncoding encode_batch(const std::vector<std::string>& texts,
                             std::optional<size_t> max_length = std::nullopt,
                             bool pad = true) const;

  // The pad token (`pad_token` of the config, else `<|endoftext|>` = 151643 for Qwen); throws
  // TokenizerError when the files define none.
  int32_t pad_token_id() const;
  std::optional<int32_t> eos_token_id() const { return eos_id_; }
  // Id of a vocabulary or added token string (exact, no tokenization).
  std::optional<int32_t> token_to_id(std::string_view token) const;
  // Vocabulary string (byte-level alphabet) or added token content; throws on unknown ids.
  std::string id_to_token(int32_t id) const;
  // Number of ids: base vocabulary + added tokens (151665 for Qwen2.5-VL).
  size_t vocab_size() const;
  size_t num_merges() const;
  const std::vector<AddedToken>& added_tokens() const { return added_; }
  // Human-readable description of the files the tokenizer was loaded from.
  const std::string& source() const { return source_; }

  // Drops the BPE word cache (benchmarks measure cold and warm encoding).
  void clear_cache() const;

 private:
  Qwen2Tokenizer();
  static Qwen2Tokenizer build(TokenizerSpec spec);
  void encode_segment(std::string_view nfc_text, std::vector<int32_t>& out) const;

  std::unique_ptr<BpeModel> bpe_;
  std::unique_ptr<AddedTokenMatcher> matcher_;
  std::vector<AddedToken> added_;
  std::vector<int32_t> added_index_;  // id -> index into added_, -1 when not an added token
  std::optional<int32_t> pad_id_;
  std::optional<int32_t> eos_id_;
  std::string source_;
};

}  // namespace qwen::tokenizer
