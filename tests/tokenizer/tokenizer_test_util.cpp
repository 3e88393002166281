#include "tokenizer_test_util.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace qwen::tokenizer::test {

namespace fs = std::filesystem;

std::string fixture(const std::string& relative) {
  return std::string(QWEN_FIXTURES) + "/" + relative;
}

std::string tiny_tokenizer_dir() { return fixture("models/qwen-image-tiny/tokenizer"); }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error("cannot write " + path);
  out << content;
}

nlohmann::json read_json_file(const std::string& path) {
  return nlohmann::json::parse(read_file(path));
}

std::string temp_dir(const std::string& name) {
  const fs::path p = fs::path(QWEN_BINARY_DIR) / "tokenizer-test-tmp" / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

const Qwen2Tokenizer& tiny_tokenizer() {
  static const Qwen2Tokenizer tok = Qwen2Tokenizer::load(tiny_tokenizer_dir());
  return tok;
}

std::map<std::string, I64Tensor> read_i64_safetensors(const std::string& path) {
  const std::string data = read_file(path);
  if (data.size() < 8) throw std::runtime_error(path + ": too short");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(data[i]);
  if (header_len > data.size() - 8) throw std::runtime_error(path + ": bad header length");
  const auto header = nlohmann::json::parse(data.substr(8, header_len));
  const size_t base = 8 + header_len;
  std::map<std::string, I64Tensor> out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const auto& info = it.value();
    if (info.at("dtype") != "I64") throw std::runtime_error(path + ": " + it.key() + " is not I64");
    I64Tensor t;
    t.shape = info.at("shape").get<std::vector<int64_t>>();
    const auto offsets = info.at("data_offsets").get<std::vector<uint64_t>>();
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    if (offsets.size() != 2 || offsets[1] - offsets[0] != static_cast<uint64_t>(numel) * 8 ||
        base + offsets[1] > data.size()) {
      throw std::runtime_error(path + ": bad offsets for " + it.key());
    }
    t.values.resize(static_cast<size_t>(numel));
    std::memcpy(t.values.data(), data.data() + base + offsets[0], static_cast<size_t>(numel) * 8);
    out[it.key()] = std::move(t);
  }
  return out;
}

std::string ids_to_string(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(ids[i]);
  }
  return s + "]";
}

}  // namespace qwen::tokenizer::test
