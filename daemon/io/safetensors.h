// safetensors reader: memory-mapped, validated, torch-free.
// Contract used by the models (through models/weights.h), `qwen-image inspect` and the fuzz target.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace qwen::io {

// Every problem with a checkpoint file. what() names the file and the problem.
struct CheckpointError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class DType { F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, I16, I8, U8, BOOL };
size_t dtype_size(DType);
const char* dtype_name(DType);  // "F32", "BF16", ... as in the file format
// Parses a file-format dtype name ("F32", ...); false when unknown.
bool parse_dtype(const std::string& name, DType* out);
// "[2, 3]"
std::string shape_to_string(const std::vector<int64_t>& shape);

// Limits enforced on every file.
inline constexpr uint64_t kMaxHeaderBytes = 100ull * 1024 * 1024;  // 100 MB of JSON header
inline constexpr size_t kMaxRank = 16;                             // dimensions per tensor

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // offsets relative to the data buffer
  uint64_t end = 0;
  int64_t numel() const;
};

// Parses and validates a header (the JSON after the 8-byte length). `file_size` is the size of the
// whole file; `label` is used in error messages. Throws CheckpointError on: bad JSON, non-object,
// unknown dtype, bad shape, offsets outside the data, overlapping offsets, shape x dtype size
// mismatch. This is the function the libFuzzer target drives.
struct ParsedHeader {
  std::vector<TensorInfo> tensors;  // in data-offset order
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // 8 + header length
};
ParsedHeader parse_header(const char* header, size_t header_len, uint64_t file_size,
                          const std::string& label);

// One memory-mapped .safetensors file.
class SafetensorsFile {
 public:
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const TensorInfo* find(const std::string& name) const;
  // Pointer to the first byte of a tensor's data inside the mapping (valid while this object
  // lives).
  const uint8_t* data(const TensorInfo& t) const;
  uint64_t file_size() const { return size_; }
  // Read-ahead hint: asks the kernel to start reading the pages of `t` now
  // (madvise(MADV_WILLNEED) on its page-aligned range), so that a loader copying tensor i can
  // have tensor i + 1 on its way from disk. Returns false when the kernel refuses (harmless).
  bool will_need(const TensorInfo& t) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  ParsedHeader header_;
  std::map<std::string, size_t> index_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
};

// A set of tensors spread over one or more files: a single file, or a sharded checkpoint described
// by `*.safetensors.index.json`. Names can be rewritten on the way in (single-file checkpoints with
// other prefixes).
struct TensorRef {
  std::shared_ptr<SafetensorsFile> file;
  const TensorInfo* info = nullptr;
};
class TensorStore {
 public:
  // `path`: a .safetensors file, a *.safetensors.index.json, or a folder holding either.
  static TensorStore open(const std::string& path);
  const TensorRef* find(const std::string& name) const;
  std::vector<std::string> names() const;  // sorted
  const std::map<std::string, TensorRef>& all() const { return tensors_; }
  // Rename keys: strip a prefix from every key that has it (keys without it are kept).
  void strip_prefix(const std::string& prefix);
  void rename(const std::string& from, const std::string& to);
  void erase(const std::string& name);
  // Adds a tensor under `name` (throws when the name is taken).
  void add(const std::string& name, const TensorRef& ref);
  size_t size() const { return tensors_.size(); }
  uint64_t total_bytes() const;  // bytes of tensor data
  void set_source(const std::string& s) { source_ = s; }
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::map<std::string, TensorRef> tensors_;
};

}  // namespace qwen::io
