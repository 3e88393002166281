// Helpers for the torch-free image tests.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "image/image.h"
#include "io/safetensors.h"

namespace qwen::test {

inline std::string data_path(const std::string& rel) {
  return std::string(QWEN_IMAGE_TEST_DATA) + "/" + rel;
}
inline std::string fixture(const std::string& rel) {
  return std::string(QWEN_FIXTURES) + "/" + rel;
}

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(bool(f)) << path;
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)),
                              std::istreambuf_iterator<char>());
}

// Number of differing bytes (images of different geometry count as all different).
inline size_t count_diff(const ImageU8& a, const ImageU8& b) {
  if (a.width != b.width || a.height != b.height || a.channels != b.channels) return size_t(-1);
  size_t n = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) n += a.pixels[i] != b.pixels[i];
  return n;
}

// A float32 / int64 tensor of a fixture file as a flat vector.
template <typename T>
std::vector<T> tensor_values(const io::SafetensorsFile& f, const std::string& name,
                             std::vector<int64_t>* shape = nullptr) {
  const io::TensorInfo* t = f.find(name);
  EXPECT_NE(t, nullptr) << name;
  if (!t) return {};
  const bool ok = (sizeof(T) == 4 && t->dtype == io::DType::F32) ||
                  (sizeof(T) == 8 && t->dtype == io::DType::I64);
  EXPECT_TRUE(ok) << name << " has dtype " << io::dtype_name(t->dtype);
  if (!ok) return {};
  std::vector<T> v(size_t(t->numel()));
  std::memcpy(v.data(), f.data(*t), v.size() * sizeof(T));
  if (shape) *shape = t->shape;
  return v;
}

}  // namespace qwen::test
