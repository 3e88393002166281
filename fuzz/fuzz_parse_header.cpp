// libFuzzer target for qwen::io::parse_header (the safetensors header validator).
// Input layout: 8 bytes (little-endian) choosing the size of the data section, then the JSON
// header. Every input must either parse into tensors that lie inside the data section or throw
// CheckpointError; anything else (crash, sanitizer report, other exception) is a bug.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  uint64_t data_size = 0;
  for (int i = 7; i >= 0; --i) data_size = (data_size << 8) | data[i];
  data_size %= (1ull << 40);
  const char* header = reinterpret_cast<const char*>(data + 8);
  const size_t header_len = size - 8;
  const uint64_t file_size = 8 + header_len + data_size;
  try {
    const auto parsed = qwen::io::parse_header(header, header_len, file_size, "fuzz");
    // Invariants of an accepted header.
    uint64_t prev_end = 0;
    for (const auto& t : parsed.tensors) {
      if (t.begin > t.end || t.end > data_size) std::abort();
      if (t.begin != t.end && t.begin < prev_end) std::abort();  // overlap slipped through
      if (t.begin != t.end) prev_end = t.end;
      if (static_cast<uint64_t>(t.numel()) * qwen::io::dtype_size(t.dtype) != t.end - t.begin)
        std::abort();
    }
    if (parsed.data_offset != 8 + header_len) std::abort();
  } catch (const qwen::io::CheckpointError&) {
    // Rejected with a message: fine.
  }
  return 0;
}
