// libFuzzer target for qwen::io::parse_gguf (the GGUF header / metadata / tensor-info validator).
// The input is a whole GGUF file. Every input must either parse into tensors that lie, aligned and
// disjoint, inside the data section with the size their shape and type give, or throw
// CheckpointError naming the file; anything else (crash, sanitizer report, other exception, huge
// allocation) is a bug. Accepted metadata is read back through every accessor.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "io/gguf.h"

namespace {

void touch(const qwen::io::GgufValue& v, const std::string& key, int depth) {
  const std::string label = "fuzz";
  (void)v.to_string(4);
  try {
    switch (v.type) {
      case qwen::io::GgufType::STRING:
        (void)v.as_string(label, key);
        break;
      case qwen::io::GgufType::BOOL:
        (void)v.as_bool(label, key);
        break;
      case qwen::io::GgufType::ARRAY:
        if (v.elem_type == qwen::io::GgufType::STRING) (void)v.as_string_array(label, key);
        if (v.elem_type == qwen::io::GgufType::ARRAY && depth < 3)
          for (const auto& e : v.elements(label, key)) touch(e, key, depth + 1);
        if (v.elem_type != qwen::io::GgufType::STRING && v.elem_type != qwen::io::GgufType::ARRAY &&
            v.elem_type != qwen::io::GgufType::BOOL)
          (void)v.as_float_array(label, key);
        break;
      default:
        (void)v.as_float(label, key);
        if (v.is_integer()) (void)v.as_int(label, key);
    }
  } catch (const qwen::io::CheckpointError&) {
    // Values out of range of the accessor (e.g. a u64 above INT64_MAX): fine.
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto h = qwen::io::parse_gguf(data, size, "fuzz.gguf");
    if (h.alignment == 0 || (h.alignment & (h.alignment - 1)) != 0) std::abort();
    if (h.data_offset % h.alignment != 0) std::abort();
    const uint64_t data_size = size > h.data_offset ? size - h.data_offset : 0;
    std::vector<const qwen::io::GgufTensorInfo*> order;
    for (const auto& t : h.tensors) {
      const auto* tr = qwen::io::ggml_type_traits(static_cast<uint32_t>(t.type));
      if (!tr) std::abort();
      uint64_t numel = 1;
      for (int64_t d : t.ne) numel *= static_cast<uint64_t>(d);
      uint64_t shape_numel = 1;
      for (int64_t d : t.shape) shape_numel *= static_cast<uint64_t>(d);
      if (shape_numel != numel) std::abort();
      if (numel % tr->block_size != 0) std::abort();
      if (t.nbytes != numel / tr->block_size * tr->type_size) std::abort();
      if (t.offset % h.alignment != 0) std::abort();
      if (t.nbytes > data_size || t.offset > data_size - t.nbytes) std::abort();
      if (h.tensor(t.name) != &t) std::abort();
      if (t.nbytes) order.push_back(&t);
    }
    std::sort(order.begin(), order.end(),
              [](const auto* a, const auto* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < order.size(); ++i)
      if (order[i]->offset < order[i - 1]->offset + order[i - 1]->nbytes) std::abort();
    for (const auto& [key, v] : h.metadata) {
      if (h.find(key) != &v) std::abort();
      touch(v, key, 0);
    }
  } catch (const qwen::io::CheckpointError& e) {
    if (std::string(e.what()).rfind("fuzz.gguf: ", 0) != 0) std::abort();  // names the file
  }
  return 0;
}
