// Torch-free helpers for tests that need safetensors files of their own (well-formed or broken).
#pragma once

#include <ftw.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace qwen::test {

struct StTensor {
  std::string name;
  std::string dtype;  // "F32", "BF16", ...
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // raw little-endian data
};

// Bytes of a float32 vector.
inline std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// Tensor of `dtype` filled with `numel` deterministic bytes per element.
inline StTensor st_tensor(const std::string& name, const std::string& dtype,
                          std::vector<int64_t> shape, size_t elem_size = 0) {
  static const std::map<std::string, size_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
      {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},   {"U8", 1},      {"BOOL", 1}};
  if (!elem_size) elem_size = sizes.at(dtype);
  int64_t n = 1;
  for (auto d : shape) n *= d;
  StTensor t{name, dtype, std::move(shape), std::vector<uint8_t>(n * elem_size)};
  for (size_t i = 0; i < t.bytes.size(); ++i) t.bytes[i] = static_cast<uint8_t>(i * 7 + 3);
  if (dtype == "BOOL")
    for (auto& b : t.bytes) b &= 1;
  return t;
}

// 8-byte little-endian length + header + data, exactly as given (for broken files).
inline std::string st_raw(const std::string& header, const std::string& data,
                          uint64_t declared_len = UINT64_MAX) {
  const uint64_t n = declared_len == UINT64_MAX ? header.size() : declared_len;
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

// Serialises tensors (in the given order) to a safetensors byte string. The header is padded
// with spaces to a multiple of 8 like the reference writer.
inline std::string st_serialize(const std::vector<StTensor>& tensors,
                                const std::map<std::string, std::string>& metadata = {
                                    {"format", "pt"}}) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t off = 0;
  std::string data;
  for (const auto& t : tensors) {
    h[t.name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, off + t.bytes.size()}}};
    off += t.bytes.size();
    data.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
  }
  std::string header = h.dump();
  while (header.size() % 8) header.push_back(' ');
  return st_raw(header, data);
}

inline void write_file(const std::filesystem::path& p, const std::string& bytes) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write " + p.string());
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A fresh temporary folder, removed when the object goes away.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("qwen-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  // Not std::filesystem::remove_all: the PyPI torch wheel's libtorch.so exports its own copy of
  // that symbol, which crashes when it interposes in a binary linked with libtorch.
  ~TempDir() {
    ::nftw(
        path_.c_str(),
        [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
        FTW_DEPTH | FTW_PHYS);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string str(const std::string& rel = "") const { return (path_ / rel).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace qwen::test
