// GGUF reader: header / metadata / tensor-info validation and memory mapping.
// Mirrors llama.cpp gguf.cpp (gguf_init_from_file_impl) and gguf-py's GGUFReader; deliberate
// differences: nested arrays are accepted (gguf-py writes them; gguf.cpp refuses them) up to
// kGgufMaxArrayDepth, tensors need not be stored in info order (gguf.cpp requires each tensor to
// follow the previous one; here they only have to be aligned, inside the data and disjoint), and
// shapes of up to kMaxRank dimensions are read (ggml stops at 4).
#include "io/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>

#include "io/file_map.h"

namespace qwen::io {

static_assert(std::endian::native == std::endian::little,
              "the GGUF reader assumes a little-endian host");

namespace {

[[noreturn]] void fail(const std::string& label, const std::string& what) {
  throw CheckpointError(label + ": " + what);
}

std::string clip(const std::string& s, size_t n = 80) {
  return s.size() <= n ? s : s.substr(0, n) + "...";
}

std::string shape_str(const std::vector<int64_t>& v) { return shape_to_string(v); }

constexpr GgmlTypeTraits kGgmlTypes[] = {
    {GgmlType::F32, "F32", 1, 4},
    {GgmlType::F16, "F16", 1, 2},
    {GgmlType::Q4_0, "Q4_0", 32, 18},
    {GgmlType::Q4_1, "Q4_1", 32, 20},
    {GgmlType::Q5_0, "Q5_0", 32, 22},
    {GgmlType::Q5_1, "Q5_1", 32, 24},
    {GgmlType::Q8_0, "Q8_0", 32, 34},
    {GgmlType::Q8_1, "Q8_1", 32, 40},
    {GgmlType::Q2_K, "Q2_K", 256, 84},
    {GgmlType::Q3_K, "Q3_K", 256, 110},
    {GgmlType::Q4_K, "Q4_K", 256, 144},
    {GgmlType::Q5_K, "Q5_K", 256, 176},
    {GgmlType::Q6_K, "Q6_K", 256, 210},
    {GgmlType::Q8_K, "Q8_K", 256, 292},
    {GgmlType::IQ2_XXS, "IQ2_XXS", 256, 66},
    {GgmlType::IQ2_XS, "IQ2_XS", 256, 74},
    {GgmlType::IQ3_XXS, "IQ3_XXS", 256, 98},
    {GgmlType::IQ1_S, "IQ1_S", 256, 50},
    {GgmlType::IQ4_NL, "IQ4_NL", 32, 18},
    {GgmlType::IQ3_S, "IQ3_S", 256, 110},
    {GgmlType::IQ2_S, "IQ2_S", 256, 82},
    {GgmlType::IQ4_XS, "IQ4_XS", 256, 136},
    {GgmlType::I8, "I8", 1, 1},
    {GgmlType::I16, "I16", 1, 2},
    {GgmlType::I32, "I32", 1, 4},
    {GgmlType::I64, "I64", 1, 8},
    {GgmlType::F64, "F64", 1, 8},
    {GgmlType::IQ1_M, "IQ1_M", 256, 56},
    {GgmlType::BF16, "BF16", 1, 2},
    {GgmlType::TQ1_0, "TQ1_0", 256, 54},
    {GgmlType::TQ2_0, "TQ2_0", 256, 66},
    {GgmlType::MXFP4, "MXFP4", 32, 17},
    {GgmlType::NVFP4, "NVFP4", 64, 36},
    {GgmlType::Q1_0, "Q1_0", 128, 18},
};

constexpr GgmlType kSupported[] = {
    GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q8_0,   GgmlType::Q5_0,
    GgmlType::Q5_1, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q2_K,   GgmlType::Q3_K,
    GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_NL, GgmlType::IQ4_XS,
};

// Encoded size of a scalar value type; 0 for STRING / ARRAY / unknown.
uint64_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::BOOL:
      return 1;
    case GgufType::U16:
    case GgufType::I16:
      return 2;
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::F32:
      return 4;
    case GgufType::U64:
    case GgufType::I64:
    case GgufType::F64:
      return 8;
    case GgufType::STRING:
    case GgufType::ARRAY:
      return 0;
  }
  return 0;
}

bool known_value_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::F64); }

template <class T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Bounds-checked cursor over the file. Errors name the file and what was being read.
struct Cursor {
  const uint8_t* base;
  uint64_t size;
  uint64_t pos;
  const std::string& label;

  uint64_t left() const { return size - pos; }
  void need(uint64_t n, const std::string& what) const {
    if (n > left())
      fail(label, what + " needs " + std::to_string(n) + " bytes at offset " + std::to_string(pos) +
                      " but the " + std::to_string(size) +
                      "-byte file ends first (truncated file?)");
  }
  template <class T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v = load<T>(base + pos);
    pos += sizeof(T);
    return v;
  }
  // u64 length + bytes.
  std::string read_string(const std::string& what, uint64_t max_len) {
    const uint64_t n = read<uint64_t>(what + " length");
    if (n > max_len)
      fail(label, what + " of " + std::to_string(n) + " bytes is absurdly long (limit " +
                      std::to_string(max_len) + "; corrupt file?)");
    need(n, what);
    std::string s(reinterpret_cast<const char*>(base + pos), static_cast<size_t>(n));
    pos += n;
    return s;
  }
};

// Reads one value of type `t` at the cursor into `out` (pointing into the buffer). `what` names
// the value for messages.
void read_value(Cursor& c, GgufType t, int depth, const std::string& what, GgufValue* out) {
  out->type = t;
  if (const uint64_t n = scalar_size(t)) {
    c.need(n, what);
    out->data = c.base + c.pos;
    out->nbytes = n;
    c.pos += n;
    return;
  }
  if (t == GgufType::STRING) {
    const uint64_t n = c.read<uint64_t>(what + " length");
    c.need(n, what + " (a string of " + std::to_string(n) + " bytes)");
    out->count = n;
    out->data = c.base + c.pos;
    out->nbytes = n;
    c.pos += n;
    return;
  }
  // ARRAY
  if (depth >= kGgufMaxArrayDepth)
    fail(c.label, what + ": arrays nested more than " + std::to_string(kGgufMaxArrayDepth) +
                      " deep (corrupt file?)");
  const uint32_t et = c.read<uint32_t>(what + " element type");
  if (!known_value_type(et))
    fail(c.label, what + ": array of unknown value type " + std::to_string(et));
  const uint64_t count = c.read<uint64_t>(what + " element count");
  out->elem_type = static_cast<GgufType>(et);
  out->count = count;
  out->data = c.base + c.pos;
  const uint64_t start = c.pos;
  if (const uint64_t es = scalar_size(out->elem_type)) {
    if (count > c.left() / es)
      fail(c.label, what + ": array of " + std::to_string(count) + " " +
                        gguf_type_name(out->elem_type) + " values does not fit in the " +
                        std::to_string(c.left()) +
                        " bytes left in the file (truncated or corrupt)");
    c.pos += count * es;
  } else {
    // Strings take at least 8 bytes, arrays at least 12: reject impossible counts before walking.
    const uint64_t min = out->elem_type == GgufType::STRING ? 8 : 12;
    if (count > c.left() / min)
      fail(c.label, what + ": array of " + std::to_string(count) + " " +
                        gguf_type_name(out->elem_type) + " values does not fit in the " +
                        std::to_string(c.left()) +
                        " bytes left in the file (truncated or corrupt)");
    GgufValue elem;
    for (uint64_t i = 0; i < count; ++i)
      read_value(c, out->elem_type, depth + 1, what + "[" + std::to_string(i) + "]", &elem);
  }
  out->nbytes = c.pos - start;
}

std::string type_mismatch(const std::string& label, const std::string& key, const GgufValue& v,
                          const char* expected) {
  std::string t = gguf_type_name(v.type);
  if (v.type == GgufType::ARRAY) t += std::string(" of ") + gguf_type_name(v.elem_type);
  return label + ": metadata '" + clip(key) + "' is " + t + ", expected " + expected;
}

// Integer value of a scalar integer element at `p`.
bool int_at(GgufType t, const uint8_t* p, int64_t* i, uint64_t* u, bool* is_unsigned) {
  *is_unsigned = false;
  switch (t) {
    case GgufType::U8:
      *u = load<uint8_t>(p);
      *is_unsigned = true;
      return true;
    case GgufType::U16:
      *u = load<uint16_t>(p);
      *is_unsigned = true;
      return true;
    case GgufType::U32:
      *u = load<uint32_t>(p);
      *is_unsigned = true;
      return true;
    case GgufType::U64:
      *u = load<uint64_t>(p);
      *is_unsigned = true;
      return true;
    case GgufType::I8:
      *i = load<int8_t>(p);
      return true;
    case GgufType::I16:
      *i = load<int16_t>(p);
      return true;
    case GgufType::I32:
      *i = load<int32_t>(p);
      return true;
    case GgufType::I64:
      *i = load<int64_t>(p);
      return true;
    default:
      return false;
  }
}

std::string quoted(const uint8_t* p, uint64_t n, size_t max = 60) {
  std::string s(reinterpret_cast<const char*>(p), static_cast<size_t>(std::min<uint64_t>(n, max)));
  return "\"" + s + (n > max ? "...\"" : "\"");
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Types

const GgmlTypeTraits* ggml_type_traits(uint32_t id) {
  for (const auto& t : kGgmlTypes)
    if (static_cast<uint32_t>(t.type) == id) return &t;
  return nullptr;
}

const GgmlTypeTraits& ggml_traits(GgmlType t) {
  const GgmlTypeTraits* tr = ggml_type_traits(static_cast<uint32_t>(t));
  if (!tr) throw CheckpointError("unknown ggml type " + std::to_string(static_cast<uint32_t>(t)));
  return *tr;
}

const char* ggml_type_name(GgmlType t) {
  const GgmlTypeTraits* tr = ggml_type_traits(static_cast<uint32_t>(t));
  return tr ? tr->name : "?";
}

bool ggml_type_supported(GgmlType t) {
  return std::find(std::begin(kSupported), std::end(kSupported), t) != std::end(kSupported);
}

std::string ggml_supported_types() {
  std::string s;
  for (GgmlType t : kSupported) s += (s.empty() ? "" : ", ") + std::string(ggml_type_name(t));
  return s;
}

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::U8:
      return "UINT8";
    case GgufType::I8:
      return "INT8";
    case GgufType::U16:
      return "UINT16";
    case GgufType::I16:
      return "INT16";
    case GgufType::U32:
      return "UINT32";
    case GgufType::I32:
      return "INT32";
    case GgufType::F32:
      return "FLOAT32";
    case GgufType::BOOL:
      return "BOOL";
    case GgufType::STRING:
      return "STRING";
    case GgufType::ARRAY:
      return "ARRAY";
    case GgufType::U64:
      return "UINT64";
    case GgufType::I64:
      return "INT64";
    case GgufType::F64:
      return "FLOAT64";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// Values

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::U16:
    case GgufType::I16:
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::U64:
    case GgufType::I64:
      return true;
    default:
      return false;
  }
}

bool GgufValue::is_float() const { return type == GgufType::F32 || type == GgufType::F64; }

int64_t GgufValue::as_int(const std::string& label, const std::string& key) const {
  int64_t i = 0;
  uint64_t u = 0;
  bool un = false;
  if (type == GgufType::BOOL || !int_at(type, data, &i, &u, &un))
    throw CheckpointError(type_mismatch(label, key, *this, "an integer"));
  if (un) {
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      throw CheckpointError(label + ": metadata '" + clip(key) + "' = " + std::to_string(u) +
                            " is too large");
    return static_cast<int64_t>(u);
  }
  return i;
}

uint64_t GgufValue::as_uint(const std::string& label, const std::string& key) const {
  int64_t i = 0;
  uint64_t u = 0;
  bool un = false;
  if (type == GgufType::BOOL || !int_at(type, data, &i, &u, &un))
    throw CheckpointError(type_mismatch(label, key, *this, "an unsigned integer"));
  if (un) return u;
  if (i < 0)
    throw CheckpointError(label + ": metadata '" + clip(key) + "' = " + std::to_string(i) +
                          " is negative, expected an unsigned integer");
  return static_cast<uint64_t>(i);
}

double GgufValue::as_float(const std::string& label, const std::string& key) const {
  if (type == GgufType::F32) return load<float>(data);
  if (type == GgufType::F64) return load<double>(data);
  int64_t i = 0;
  uint64_t u = 0;
  bool un = false;
  if (type != GgufType::BOOL && int_at(type, data, &i, &u, &un))
    return un ? static_cast<double>(u) : static_cast<double>(i);
  throw CheckpointError(type_mismatch(label, key, *this, "a number"));
}

bool GgufValue::as_bool(const std::string& label, const std::string& key) const {
  if (type != GgufType::BOOL) throw CheckpointError(type_mismatch(label, key, *this, "BOOL"));
  return load<uint8_t>(data) != 0;
}

std::string GgufValue::as_string(const std::string& label, const std::string& key) const {
  if (type != GgufType::STRING) throw CheckpointError(type_mismatch(label, key, *this, "STRING"));
  return std::string(reinterpret_cast<const char*>(data), static_cast<size_t>(nbytes));
}

std::vector<int64_t> GgufValue::as_int_array(const std::string& label, const std::string& key,
                                             std::optional<GgufType> elem) const {
  const uint64_t es = scalar_size(elem_type);
  if (type != GgufType::ARRAY || elem_type == GgufType::BOOL || es == 0 ||
      elem_type == GgufType::F32 || elem_type == GgufType::F64 || (elem && *elem != elem_type))
    throw CheckpointError(
        type_mismatch(label, key, *this,
                      elem ? (std::string("ARRAY of ") + gguf_type_name(*elem)).c_str()
                           : "an ARRAY of integers"));
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(count));
  for (uint64_t k = 0; k < count; ++k) {
    int64_t i = 0;
    uint64_t u = 0;
    bool un = false;
    int_at(elem_type, data + k * es, &i, &u, &un);
    if (un && u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      throw CheckpointError(label + ": metadata '" + clip(key) + "'[" + std::to_string(k) +
                            "] = " + std::to_string(u) + " is too large");
    out.push_back(un ? static_cast<int64_t>(u) : i);
  }
  return out;
}

std::vector<double> GgufValue::as_float_array(const std::string& label,
                                              const std::string& key) const {
  const uint64_t es = scalar_size(elem_type);
  if (type != GgufType::ARRAY || es == 0 || elem_type == GgufType::BOOL)
    throw CheckpointError(type_mismatch(label, key, *this, "an ARRAY of numbers"));
  std::vector<double> out;
  out.reserve(static_cast<size_t>(count));
  for (uint64_t k = 0; k < count; ++k) {
    GgufValue e;
    e.type = elem_type;
    e.data = data + k * es;
    e.nbytes = es;
    out.push_back(e.as_float(label, key));
  }
  return out;
}

std::vector<GgufValue> GgufValue::elements(const std::string& label, const std::string& key) const {
  if (type != GgufType::ARRAY) throw CheckpointError(type_mismatch(label, key, *this, "an ARRAY"));
  // The elements were validated when the file was parsed; walk them again.
  Cursor c{data, nbytes, 0, label};
  std::vector<GgufValue> out;
  out.reserve(static_cast<size_t>(count));
  for (uint64_t k = 0; k < count; ++k) {
    GgufValue e;
    read_value(c, elem_type, 1, "metadata '" + clip(key) + "'[" + std::to_string(k) + "]", &e);
    out.push_back(e);
  }
  return out;
}

std::vector<std::string> GgufValue::as_string_array(const std::string& label,
                                                    const std::string& key) const {
  if (type != GgufType::ARRAY || elem_type != GgufType::STRING)
    throw CheckpointError(type_mismatch(label, key, *this, "an ARRAY of STRING"));
  std::vector<std::string> out;
  for (const auto& e : elements(label, key)) out.push_back(e.as_string(label, key));
  return out;
}

std::string GgufValue::to_string(size_t max_items) const {
  switch (type) {
    case GgufType::STRING:
      return quoted(data, nbytes);
    case GgufType::BOOL:
      return load<uint8_t>(data) ? "true" : "false";
    case GgufType::F32:
      return std::to_string(load<float>(data));
    case GgufType::F64:
      return std::to_string(load<double>(data));
    case GgufType::ARRAY: {
      std::string s = std::string("[") + gguf_type_name(elem_type) + " x " + std::to_string(count);
      if (count == 0) return s + "]";
      s += ":";
      const std::string none;
      Cursor c{data, nbytes, 0, none};
      for (uint64_t k = 0; k < count && k < max_items; ++k) {
        GgufValue e;
        read_value(c, elem_type, 1, "element", &e);
        s += (k ? ", " : " ") + e.to_string(max_items);
      }
      return s + (count > max_items ? ", ...]" : "]");
    }
    default: {
      int64_t i = 0;
      uint64_t u = 0;
      bool un = false;
      int_at(type, data, &i, &u, &un);
      return un ? std::to_string(u) : std::to_string(i);
    }
  }
}

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const GgufValue* GgufHeader::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &metadata[it->second].second;
}

const GgufTensorInfo* GgufHeader::tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors[it->second];
}

// ---------------------------------------------------------------------------------------------
// Parser

GgufHeader parse_gguf(const uint8_t* data, uint64_t size, const std::string& label) {
  GgufHeader h;
  Cursor c{data, size, 0, label};
  if (size < 4 || std::memcmp(data, "GGUF", 4) != 0)
    fail(label, "not a GGUF file (it does not start with the \"GGUF\" magic)");
  c.pos = 4;
  h.version = c.read<uint32_t>("GGUF version");
  if (h.version != 0 && (h.version & 0xFFFF) == 0)
    fail(label, "big-endian GGUF file (version field " + std::to_string(h.version) +
                    "); only little-endian GGUF files are supported");
  if (h.version == 1)
    fail(label, "GGUF version 1 is not supported (re-convert the file with a current gguf tool)");
  if (h.version != 2 && h.version != 3)
    fail(label, "unsupported GGUF version " + std::to_string(h.version) + " (2 and 3 are read)");
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // A KV pair takes at least 13 bytes (key length, value type, a 1-byte value), a tensor info at
  // least 24 (name length, n_dims, type, offset): counts that cannot fit are rejected before
  // anything is allocated for them.
  if (n_kv > c.left() / 13)
    fail(label, "header declares " + std::to_string(n_kv) +
                    " metadata entries, more than the file has room for (corrupt or truncated)");
  h.metadata.reserve(static_cast<size_t>(n_kv));
  for (uint64_t k = 0; k < n_kv; ++k) {
    const std::string what = "metadata entry " + std::to_string(k);
    std::string key = c.read_string(what + " key", kGgufMaxNameBytes);
    const uint32_t t = c.read<uint32_t>("type of metadata '" + clip(key) + "'");
    if (!known_value_type(t))
      fail(label, "metadata '" + clip(key) + "' has unknown value type " + std::to_string(t));
    GgufValue v;
    read_value(c, static_cast<GgufType>(t), 0, "metadata '" + clip(key) + "'", &v);
    if (!h.kv_index_.emplace(key, h.metadata.size()).second)
      fail(label, "metadata key '" + clip(key) + "' appears twice");
    h.metadata.emplace_back(std::move(key), v);
  }
  if (const GgufValue* a = h.find("general.alignment")) {
    const uint64_t al = a->as_uint(label, "general.alignment");
    if (al == 0 || (al & (al - 1)) != 0)
      fail(label, "general.alignment = " + std::to_string(al) + " is not a power of two");
    if (al > (1ull << 30))
      fail(label, "general.alignment = " + std::to_string(al) + " is absurdly large");
    h.alignment = al;
  }
  if (n_tensors > c.left() / 24)
    fail(label, "header declares " + std::to_string(n_tensors) +
                    " tensors, more than the file has room for (corrupt or truncated)");
  h.tensors.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo t;
    t.name = c.read_string("name of tensor " + std::to_string(k), kGgufMaxNameBytes);
    const std::string tl = "tensor '" + clip(t.name) + "'";
    const uint32_t n_dims = c.read<uint32_t>(tl + " dimension count");
    if (n_dims > kMaxRank)
      fail(label, tl + " has " + std::to_string(n_dims) + " dimensions (at most " +
                      std::to_string(kMaxRank) + " supported)");
    uint64_t numel = 1;
    bool overflow = false;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.read<uint64_t>(tl + " dimensions");
      if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail(label, tl + " dimension " + std::to_string(d) + " = " + std::to_string(ne) +
                        " is negative or too large");
      t.ne.push_back(static_cast<int64_t>(ne));
      if (__builtin_mul_overflow(numel, ne, &numel)) overflow = true;
    }
    if (overflow || numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(label, tl + " dimensions " + shape_str(t.ne) + " are absurdly large");
    const uint32_t type_id = c.read<uint32_t>(tl + " type");
    const GgmlTypeTraits* tr = ggml_type_traits(type_id);
    if (!tr)
      fail(label, tl + " has unknown ggml tensor type " + std::to_string(type_id) +
                      " (corrupt file, or a type newer than this reader)");
    t.type = tr->type;
    const uint64_t row = t.ne.empty() ? 1 : static_cast<uint64_t>(t.ne[0]);
    if (row % tr->block_size != 0)
      fail(label, tl + " (" + tr->name + ", ggml dimensions " + shape_str(t.ne) + "): rows of " +
                      std::to_string(row) + " values are not a whole number of " + tr->name +
                      " blocks of " + std::to_string(tr->block_size));
    if (__builtin_mul_overflow(numel / tr->block_size, static_cast<uint64_t>(tr->type_size),
                               &t.nbytes))
      fail(label, tl + " dimensions " + shape_str(t.ne) + " are absurdly large");
    t.offset = c.read<uint64_t>(tl + " data offset");
    t.shape.assign(t.ne.rbegin(), t.ne.rend());
    if (!h.tensor_index_.emplace(t.name, h.tensors.size()).second)
      fail(label, "tensor '" + clip(t.name) + "' appears twice");
    h.tensors.push_back(std::move(t));
  }
  // Data section: after the tensor infos, padded to the alignment.
  const uint64_t al = h.alignment;
  if (c.pos > std::numeric_limits<uint64_t>::max() - al) fail(label, "header is absurdly large");
  h.data_offset = (c.pos + al - 1) / al * al;
  const uint64_t data_size = size > h.data_offset ? size - h.data_offset : 0;

  for (auto& t : h.tensors) {
    const std::string tl = "tensor '" + clip(t.name) + "'";
    // ComfyUI-GGUF's original shape (loader.py get_orig_shape): ARRAY of INT32 or an error.
    if (const GgufValue* os = h.find("comfy.gguf.orig_shape." + t.name)) {
      const std::string key = "comfy.gguf.orig_shape." + t.name;
      const auto dims = os->as_int_array(label, key, GgufType::I32);
      if (dims.size() > kMaxRank)
        fail(label, "metadata '" + clip(key) + "' has " + std::to_string(dims.size()) +
                        " dimensions (at most " + std::to_string(kMaxRank) + ")");
      int64_t n = 1;
      for (int64_t d : dims) {
        if (d < 0) fail(label, "metadata '" + clip(key) + "' has a negative dimension");
        if (__builtin_mul_overflow(n, d, &n))
          fail(label, "metadata '" + clip(key) + "' is absurdly large");
      }
      int64_t have = 1;
      for (int64_t d : t.ne) have *= d;
      if (n != have)
        fail(label, "metadata '" + clip(key) + "' gives shape " + shape_str(dims) + " (" +
                        std::to_string(n) + " values) for " + tl + ", which holds " +
                        std::to_string(have) + " values (ggml dimensions " + shape_str(t.ne) + ")");
      t.shape = dims;
      t.orig_shape = true;
    }
    if (t.offset % al != 0)
      fail(label, tl + " data offset " + std::to_string(t.offset) +
                      " is not a multiple of the alignment " + std::to_string(al));
    if (t.nbytes > data_size || t.offset > data_size - t.nbytes)
      fail(label, tl + " (" + ggml_type_name(t.type) + ", shape " + shape_str(t.shape) + ": " +
                      std::to_string(t.nbytes) + " bytes at data offset " +
                      std::to_string(t.offset) + ") runs past the end of the " +
                      std::to_string(data_size) +
                      "-byte data section (truncated file, or a shape inconsistent with its data)");
  }
  std::vector<const GgufTensorInfo*> order;
  order.reserve(h.tensors.size());
  for (const auto& t : h.tensors)
    if (t.nbytes) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  for (size_t k = 1; k < order.size(); ++k) {
    const GgufTensorInfo& a = *order[k - 1];
    const GgufTensorInfo& b = *order[k];
    if (b.offset < a.offset + a.nbytes)
      fail(label, "tensor '" + clip(a.name) + "' (" + ggml_type_name(a.type) + ", shape " +
                      shape_str(a.shape) + ": " + std::to_string(a.nbytes) +
                      " bytes at data offset " + std::to_string(a.offset) + ") overlaps tensor '" +
                      clip(b.name) + "' at data offset " + std::to_string(b.offset) +
                      " (a shape inconsistent with its data, or a corrupt file)");
  }
  return h;
}

// ---------------------------------------------------------------------------------------------
// File

bool is_gguf_file(const std::string& path) {
  detail::Fd f(path);
  if (f.fd < 0) return false;
  char magic[4];
  return ::read(f.fd, magic, 4) == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

std::shared_ptr<GgufFile> GgufFile::open(const std::string& path) {
  const auto m =
      detail::map_file(path, 24, "GGUF", [&](const std::string& what) { fail(path, what); });
  std::shared_ptr<GgufFile> file(new GgufFile());
  file->path_ = path;
  file->size_ = m.size;
  file->base_ = m.base;
  file->header_ = parse_gguf(file->base_, m.size, path);
  return file;
}

GgufFile::~GgufFile() {
  if (base_) ::munmap(const_cast<uint8_t*>(base_), size_);
}

std::string GgufFile::architecture() const {
  const GgufValue* v = metadata("general.architecture");
  return v ? v->as_string(path_, "general.architecture") : std::string();
}

const uint8_t* GgufFile::data(const GgufTensorInfo& t) const {
  return base_ + header_.data_offset + t.offset;
}

}  // namespace qwen::io
