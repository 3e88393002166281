// Byte-level BPE model: vocabulary, ranked merges and the merge loop (spec §1.2 steps 4-6).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace qwen::tokenizer {

struct Merge {
  std::string left;
  std::string right;
};

class BpeModel {
 public:
  // `vocab`: token (byte-level alphabet) -> id; `merges` in rank order (index = rank). `label`
  // names the source files in error messages. Throws TokenizerError when a byte symbol or a merge
  // part/result is missing from the vocabulary.
  BpeModel(std::unordered_map<std::string, int32_t> vocab, const std::vector<Merge>& merges,
           const std::string& label);
  ~BpeModel();

  // Appends the ids of one pre-token given as raw UTF-8 bytes. Thread-safe (shared word cache).
  void encode_word(std::string_view bytes, std::vector<int32_t>& out) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // nullptr when the id is not in the vocabulary.
  const std::string* id_to_token(int32_t id) const;
  size_t id_limit() const { return id_to_token_.size(); }  // max id + 1
  size_t vocab_size() const { return vocab_.size(); }
  size_t num_merges() const { return num_merges_; }
  void clear_cache() const;

 private:
  // Rank of the merge (left, right), or -1.
  int32_t find_rank(int32_t left, int32_t right) const;
  void insert_merge(int32_t left, int32_t right, int32_t rank);
  void bpe(std::string_view bytes, std::vector<int32_t>& out) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<uint8_t> has_id_;
  int32_t byte_id_[256];
  // Open addressing, power-of-two size, one packed word per merge: left id (21 bits), right id
  // (21 bits), rank (22 bits); 8 bytes an entry keeps the table small enough for the caches.
  std::vector<uint64_t> table_;
  uint64_t mask_ = 0;
  std::vector<int32_t> merged_by_rank_;  // id of the token a merge produces
  size_t num_merges_ = 0;
  struct Cache;
  std::unique_ptr<Cache> cache_;
};

}  // namespace qwen::tokenizer
