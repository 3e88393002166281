// Torch-free GGUF byte builder for tests: well-formed files (the layout gguf-py's GGUFWriter
// writes) and, through its knobs, broken ones.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace qwen::test {

inline std::string le32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
inline std::string le64(uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }
inline std::string gguf_str(const std::string& s) { return le64(s.size()) + s; }

// GGUF value type ids (gguf-py GGUFValueType).
enum GgufT : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

struct GgufBuilder {
  struct Kv {
    std::string key;
    uint32_t type;
    std::string value;  // encoded value bytes (after the type)
  };
  struct Tensor {
    std::string name;
    std::vector<uint64_t> ne;  // ggml order (ne[0] innermost)
    uint32_t type;
    std::string data;                // raw bytes
    std::optional<uint64_t> offset;  // override the laid-out offset
  };

  std::string magic = "GGUF";
  uint32_t version = 3;
  uint64_t alignment = 32;  // used for the layout; add general.alignment yourself to change it
  std::optional<uint64_t> n_tensors_override, n_kv_override;
  std::vector<Kv> kvs;
  std::vector<Tensor> tensors;

  GgufBuilder& kv(const std::string& key, uint32_t type, const std::string& value) {
    kvs.push_back({key, type, value});
    return *this;
  }
  GgufBuilder& kv_u32(const std::string& key, uint32_t v) { return kv(key, kU32, le32(v)); }
  GgufBuilder& kv_string(const std::string& key, const std::string& s) {
    return kv(key, kString, gguf_str(s));
  }
  GgufBuilder& kv_i32_array(const std::string& key, const std::vector<int32_t>& v) {
    std::string s = le32(kI32) + le64(v.size());
    for (int32_t x : v) s += le32(static_cast<uint32_t>(x));
    return kv(key, kArray, s);
  }
  GgufBuilder& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type,
                      std::string data) {
    tensors.push_back({name, std::move(ne), type, std::move(data), std::nullopt});
    return *this;
  }

  std::string build() const {
    std::string out = magic + le32(version) + le64(n_tensors_override.value_or(tensors.size())) +
                      le64(n_kv_override.value_or(kvs.size()));
    for (const auto& k : kvs) out += gguf_str(k.key) + le32(k.type) + k.value;
    uint64_t off = 0;
    std::vector<uint64_t> offsets;
    for (const auto& t : tensors) {
      offsets.push_back(t.offset.value_or(off));
      off += (t.data.size() + alignment - 1) / alignment * alignment;
    }
    for (size_t i = 0; i < tensors.size(); ++i) {
      const auto& t = tensors[i];
      out += gguf_str(t.name) + le32(static_cast<uint32_t>(t.ne.size()));
      for (uint64_t n : t.ne) out += le64(n);
      out += le32(t.type) + le64(offsets[i]);
    }
    out.resize((out.size() + alignment - 1) / alignment * alignment, '\0');
    std::string data;
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (offsets[i] > (1u << 24)) continue;  // a hostile offset: no data written there
      if (data.size() < offsets[i]) data.resize(offsets[i], '\0');
      if (data.size() < offsets[i] + tensors[i].data.size())
        data.resize(offsets[i] + tensors[i].data.size(), '\0');
      std::memcpy(data.data() + offsets[i], tensors[i].data.data(), tensors[i].data.size());
    }
    data.resize((data.size() + alignment - 1) / alignment * alignment, '\0');
    return out + data;
  }
};

// `n` deterministic bytes.
inline std::string pattern_bytes(size_t n, uint8_t seed = 1) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 37 + seed) & 0xff);
  return s;
}

}  // namespace qwen::test
