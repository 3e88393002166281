// Reading the tokenizer files of a folder (vocab.json, merges.txt, tokenizer_config.json,
// added_tokens.json, special_tokens_map.json) or a HF tokenizer.json into one description.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/qwen2_tokenizer.h"

namespace qwen::tokenizer {

struct TokenizerSpec {
  std::unordered_map<std::string, int32_t> vocab;
  std::vector<Merge> merges;
  std::vector<AddedToken> added;  // sorted by id
  std::string pad_token;          // content; empty when none is configured
  std::string eos_token;
  std::string source;  // e.g. "/m/tokenizer (vocab.json + merges.txt)"
  std::string label;   // file names for BPE error messages
};

// Reads `folder`: vocab.json + merges.txt when present, else tokenizer.json.
TokenizerSpec read_tokenizer_folder(const std::string& folder);
// Reads one HF tokenizer.json (a byte-level BPE with the Qwen2 pre-tokenizer).
TokenizerSpec read_tokenizer_json(const std::string& path);

}  // namespace qwen::tokenizer
