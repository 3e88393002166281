// GGUF reader: memory-mapped, validated, torch-free (the GGUF counterpart of io/safetensors.h).
//
// Container (GGUF v2/v3, little endian), as written by gguf-py's GGUFWriter and read by llama.cpp's
// gguf.cpp (gguf_init_from_file_impl):
//   "GGUF", version u32, tensor count u64, KV count u64,
//   KV pairs   (key: u64 length + bytes, value type u32, value),
//   tensor infos (name, n_dims u32, ne[n_dims] u64, ggml type u32, offset u64),
//   padding to `general.alignment` (default 32), then the tensor data; every tensor offset is
//   relative to the start of the data and a multiple of the alignment.
// Shapes: ne[0] is the innermost (fastest) dimension; the torch shape is reversed(ne), unless the
// ComfyUI-GGUF key `comfy.gguf.orig_shape.<name>` (ARRAY of INT32) gives it (ComfyUI-GGUF
// loader.py get_orig_shape / gguf_sd_loader).
//
// Nothing is copied: metadata values and tensors are offsets into the caller's buffer (parse_gguf)
// or into the mapping (GgufFile), valid while that lives. Every problem is a CheckpointError whose
// message starts with the file's name (`label`).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/safetensors.h"  // CheckpointError, kMaxRank

namespace qwen::io {

// ggml tensor types (ggml.h enum ggml_type; gguf-py constants.py GGMLQuantizationType).
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  NVFP4 = 40,
  Q1_0 = 41,
};

// Values per block and bytes per block (gguf-py constants.py GGML_QUANT_SIZES).
struct GgmlTypeTraits {
  GgmlType type;
  const char* name;  // "Q4_K"
  uint32_t block_size;
  uint32_t type_size;
};
// nullptr when `id` is no ggml type this reader knows.
const GgmlTypeTraits* ggml_type_traits(uint32_t id);
const GgmlTypeTraits& ggml_traits(GgmlType);
const char* ggml_type_name(GgmlType);
// The types qwen-image dequantises (models/dequant.h): F32, F16, BF16, Q8_0, Q5_0, Q5_1, Q4_0,
// Q4_1, Q2_K..Q6_K, IQ4_NL, IQ4_XS.
bool ggml_type_supported(GgmlType);
std::string ggml_supported_types();  // "F32, F16, ..." for messages

// GGUF metadata value types (gguf-py constants.py GGUFValueType).
enum class GgufType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};
const char* gguf_type_name(GgufType);  // "UINT32", ...

// Limits enforced on every file (beyond "fits in the file").
inline constexpr uint64_t kGgufMaxNameBytes = 65536;  // a key or a tensor name
inline constexpr int kGgufMaxArrayDepth = 8;          // arrays of arrays of ...

// One metadata value, pointing into the parsed buffer.
struct GgufValue {
  GgufType type = GgufType::U8;
  GgufType elem_type = GgufType::U8;  // ARRAY: type of the elements
  uint64_t count = 0;                 // ARRAY: element count; STRING: byte length
  const uint8_t* data = nullptr;      // scalar bytes; STRING: the characters; ARRAY: 1st element
  uint64_t nbytes = 0;                // bytes at `data`

  bool is_integer() const;  // U8..I64 (not BOOL)
  bool is_float() const;    // F32 / F64
  // Typed reads; each throws CheckpointError("<label>: metadata '<key>' is <type>, expected ...")
  // on a type mismatch (or an integer that does not fit).
  int64_t as_int(const std::string& label, const std::string& key) const;
  uint64_t as_uint(const std::string& label, const std::string& key) const;
  double as_float(const std::string& label, const std::string& key) const;  // ints too
  bool as_bool(const std::string& label, const std::string& key) const;
  std::string as_string(const std::string& label, const std::string& key) const;
  // Arrays of scalars / strings (one level). `elem` restricts the element type when given.
  std::vector<int64_t> as_int_array(const std::string& label, const std::string& key,
                                    std::optional<GgufType> elem = std::nullopt) const;
  std::vector<double> as_float_array(const std::string& label, const std::string& key) const;
  std::vector<std::string> as_string_array(const std::string& label, const std::string& key) const;
  // Arrays of arrays: the elements as values (one level down).
  std::vector<GgufValue> elements(const std::string& label, const std::string& key) const;
  // Short human form: 42, "text", [INT32 x 3: 1, 2, 3], ...
  std::string to_string(size_t max_items = 8) const;
};

struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<int64_t> ne;     // as stored: ne[0] innermost
  std::vector<int64_t> shape;  // torch order: reversed(ne), or comfy.gguf.orig_shape.<name>
  bool orig_shape = false;     // shape came from comfy.gguf.orig_shape
  uint64_t offset = 0;         // relative to the data section
  uint64_t nbytes = 0;         // numel / block_size * type_size
  int64_t numel() const;
};

struct GgufHeader {
  uint32_t version = 0;
  uint64_t alignment = 32;
  uint64_t data_offset = 0;  // absolute offset of the data section in the file
  std::vector<std::pair<std::string, GgufValue>> metadata;  // in file order
  std::vector<GgufTensorInfo> tensors;                      // in file order
  const GgufValue* find(const std::string& key) const;
  const GgufTensorInfo* tensor(const std::string& name) const;

 private:
  friend GgufHeader parse_gguf(const uint8_t*, uint64_t, const std::string&);
  std::map<std::string, size_t> kv_index_, tensor_index_;
};

// Parses and validates a whole GGUF file held in `data` (`size` bytes). Throws CheckpointError
// naming `label` on: bad magic, unsupported version / byte order, truncation anywhere, counts or
// lengths that cannot fit in the file, unknown value or tensor types, duplicate keys or tensor
// names, a bad `general.alignment`, bad dimensions (negative, overflow, rows that are not whole
// blocks), a bad `comfy.gguf.orig_shape`, misaligned / out-of-range / overlapping tensor data.
// This is the function the libFuzzer target (fuzz/fuzz_gguf.cpp) drives.
GgufHeader parse_gguf(const uint8_t* data, uint64_t size, const std::string& label);

// True when the file at `path` starts with the GGUF magic (no other validation).
bool is_gguf_file(const std::string& path);

// One memory-mapped .gguf file.
class GgufFile {
 public:
  static std::shared_ptr<GgufFile> open(const std::string& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  const GgufHeader& header() const { return header_; }
  const std::vector<GgufTensorInfo>& tensors() const { return header_.tensors; }
  const GgufTensorInfo* find(const std::string& name) const { return header_.tensor(name); }
  const GgufValue* metadata(const std::string& key) const { return header_.find(key); }
  // `general.architecture`, or "" when absent.
  std::string architecture() const;
  // First byte of a tensor's blocks inside the mapping (valid while this object lives).
  const uint8_t* data(const GgufTensorInfo& t) const;
  uint64_t file_size() const { return size_; }

 private:
  GgufFile() = default;
  std::string path_;
  GgufHeader header_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace qwen::io
