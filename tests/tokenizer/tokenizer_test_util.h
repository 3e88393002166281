// Helpers of the tokenizer tests (torch-free): fixture paths, JSON, one shared tokenizer, a minimal
// reader for the I64 tensors of the tokenizer fixtures.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tokenizer/qwen2_tokenizer.h"

namespace qwen::tokenizer::test {

std::string fixture(const std::string& relative);  // QWEN_FIXTURES/relative
std::string tiny_tokenizer_dir();                  // models/qwen-image-tiny/tokenizer
nlohmann::json read_json_file(const std::string& path);
std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& content);
// A fresh empty folder under the build tree (removed first if it exists).
std::string temp_dir(const std::string& name);

// The tokenizer of the tiny model, loaded once.
const Qwen2Tokenizer& tiny_tokenizer();

struct I64Tensor {
  std::vector<int64_t> shape;
  std::vector<int64_t> values;
};
// Reads every I64 tensor of a .safetensors file (other dtypes are an error).
std::map<std::string, I64Tensor> read_i64_safetensors(const std::string& path);

// "[1, 2, 3]" for failure messages.
std::string ids_to_string(const std::vector<int32_t>& ids);

}  // namespace qwen::tokenizer::test
