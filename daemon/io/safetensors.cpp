// safetensors reader: header validation, memory mapping, single/sharded tensor stores.
#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "io/file_map.h"

namespace qwen::io {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

[[noreturn]] void fail(const std::string& label, const std::string& what) {
  throw CheckpointError(label + ": " + what);
}

struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::F64, "F64", 8},   {DType::F32, "F32", 4},         {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
    {DType::I64, "I64", 8},   {DType::I32, "I32", 4},         {DType::I16, "I16", 2},
    {DType::I8, "I8", 1},     {DType::U8, "U8", 1},           {DType::BOOL, "BOOL", 1},
};

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string truncated(const std::string& s, size_t n = 80) {
  return s.size() <= n ? s : s.substr(0, n) + "...";
}

}  // namespace

size_t dtype_size(DType d) {
  for (const auto& e : kDTypes)
    if (e.dtype == d) return e.size;
  return 0;
}

const char* dtype_name(DType d) {
  for (const auto& e : kDTypes)
    if (e.dtype == d) return e.name;
  return "?";
}

bool parse_dtype(const std::string& name, DType* out) {
  for (const auto& e : kDTypes) {
    if (name == e.name) {
      *out = e.dtype;
      return true;
    }
  }
  return false;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_to_string(const std::vector<int64_t>& shape) { return shape_str(shape); }

ParsedHeader parse_header(const char* header, size_t header_len, uint64_t file_size,
                          const std::string& label) {
  if (header_len > kMaxHeaderBytes)
    fail(label, "header of " + std::to_string(header_len) + " bytes exceeds the " +
                    std::to_string(kMaxHeaderBytes) + "-byte limit (not a safetensors file?)");
  if (file_size < 8 || header_len > file_size - 8)
    fail(label, "header of " + std::to_string(header_len) + " bytes runs past the end of the " +
                    std::to_string(file_size) + "-byte file (truncated file?)");
  ParsedHeader out;
  out.data_offset = 8 + static_cast<uint64_t>(header_len);
  const uint64_t data_size = file_size - out.data_offset;

  // Detect duplicate top-level keys (nlohmann would silently keep the last one).
  std::set<std::string> seen;
  std::string duplicate;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      const auto& k = parsed.get_ref<const std::string&>();
      if (!seen.insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  json j = json::parse(header, header + header_len, cb, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail(label, "header is not valid JSON");
  if (!j.is_object()) fail(label, "header is not a JSON object");
  if (!duplicate.empty()) fail(label, "header names tensor '" + truncated(duplicate) + "' twice");

  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail(label, "__metadata__ is not a JSON object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          fail(label, "__metadata__ entry '" + truncated(m.key()) + "' is not a string");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string tl = "tensor '" + truncated(name) + "'";
    if (!v.is_object()) fail(label, tl + ": entry is not a JSON object");
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string()) fail(label, tl + ": missing or non-string 'dtype'");
    if (sh == v.end() || !sh->is_array()) fail(label, tl + ": missing or non-array 'shape'");
    if (off == v.end() || !off->is_array() || off->size() != 2)
      fail(label, tl + ": 'data_offsets' must be an array of two integers");
    TensorInfo t;
    t.name = name;
    if (!parse_dtype(dt->get<std::string>(), &t.dtype))
      fail(label, tl + ": unknown dtype '" + truncated(dt->get<std::string>()) + "'");
    if (sh->size() > kMaxRank)
      fail(label, tl + ": shape has " + std::to_string(sh->size()) + " dimensions (at most " +
                      std::to_string(kMaxRank) + " supported)");
    // Element count with overflow checks; each dim must be a non-negative integer.
    uint64_t numel = 1;
    bool overflow = false;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned())
        fail(label, tl + ": shape " + truncated(sh->dump()) + " must hold non-negative integers");
      const uint64_t dim = d.get<uint64_t>();
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail(label, tl + ": shape dimension " + std::to_string(dim) + " is too large");
      t.shape.push_back(static_cast<int64_t>(dim));
      if (__builtin_mul_overflow(numel, dim, &numel)) overflow = true;
    }
    for (const auto& o : *off)
      if (!o.is_number_unsigned())
        fail(label,
             tl + ": data_offsets " + truncated(off->dump()) + " must be non-negative integers");
    t.begin = (*off)[0].get<uint64_t>();
    t.end = (*off)[1].get<uint64_t>();
    if (t.begin > t.end)
      fail(label, tl + ": data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                      "] begin after end");
    if (t.end > data_size)
      fail(label, tl + ": data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                      "] lie outside the " + std::to_string(data_size) +
                      "-byte data section (truncated file?)");
    uint64_t bytes = 0;
    if (overflow || numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
        __builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(t.dtype)), &bytes))
      fail(label, tl + ": shape " + shape_str(t.shape) + " is absurdly large");
    if (bytes != t.end - t.begin)
      fail(label, tl + ": shape " + shape_str(t.shape) + " x " + dtype_name(t.dtype) + " needs " +
                      std::to_string(bytes) + " bytes but data_offsets span " +
                      std::to_string(t.end - t.begin));
    out.tensors.push_back(std::move(t));
  }
  std::sort(out.tensors.begin(), out.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t max_end = 0;
  const TensorInfo* last = nullptr;
  for (const auto& t : out.tensors) {
    if (t.begin == t.end) continue;  // empty tensors occupy no bytes
    if (last && t.begin < max_end)
      fail(label, "tensors '" + truncated(last->name) + "' and '" + truncated(t.name) +
                      "' overlap in the data section");
    max_end = t.end;
    last = &t;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// SafetensorsFile

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  const auto m =
      detail::map_file(path, 8, "safetensors", [&](const std::string& what) { fail(path, what); });
  const uint64_t size = m.size;
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->size_ = size;
  file->base_ = m.base;
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | file->base_[i];
  if (header_len > kMaxHeaderBytes)
    fail(path, "header length " + std::to_string(header_len) + " exceeds the " +
                   std::to_string(kMaxHeaderBytes) + "-byte limit (not a safetensors file?)");
  if (header_len > size - 8)
    fail(path, "header length " + std::to_string(header_len) + " runs past the end of the " +
                   std::to_string(size) + "-byte file (truncated file?)");
  file->header_ = parse_header(reinterpret_cast<const char*>(file->base_ + 8),
                               static_cast<size_t>(header_len), size, path);
  for (size_t i = 0; i < file->header_.tensors.size(); ++i)
    file->index_[file->header_.tensors[i].name] = i;
  return file;
}

bool SafetensorsFile::will_need(const TensorInfo& t) const {
  if (t.end <= t.begin) return true;
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const auto first = reinterpret_cast<uintptr_t>(data(t));
  const uintptr_t start = first & ~static_cast<uintptr_t>(page - 1);
  const uintptr_t stop = first + (t.end - t.begin);
  return ::madvise(reinterpret_cast<void*>(start), stop - start, MADV_WILLNEED) == 0;
}

SafetensorsFile::~SafetensorsFile() {
  if (base_) ::munmap(const_cast<uint8_t*>(base_), size_);
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

const uint8_t* SafetensorsFile::data(const TensorInfo& t) const {
  return base_ + header_.data_offset + t.begin;
}

// ---------------------------------------------------------------------------------------------
// TensorStore

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string read_file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Picks the weight file(s) of a component folder.
std::string pick_in_folder(const std::string& dir) {
  std::vector<std::string> indexes, files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!e.is_regular_file()) continue;
    const std::string n = e.path().filename().string();
    if (ends_with(n, ".safetensors.index.json"))
      indexes.push_back(n);
    else if (ends_with(n, ".safetensors"))
      files.push_back(n);
  }
  if (ec) fail(dir, "cannot list folder: " + ec.message());
  std::sort(indexes.begin(), indexes.end());
  std::sort(files.begin(), files.end());
  auto pick = [&](const std::vector<std::string>& v,
                  std::initializer_list<const char*> preferred) -> std::string {
    if (v.size() == 1) return v[0];
    for (const char* p : preferred)
      if (std::find(v.begin(), v.end(), p) != v.end()) return p;
    return {};
  };
  const auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  };
  if (!indexes.empty()) {
    std::string n = pick(indexes, {"diffusion_pytorch_model.safetensors.index.json",
                                   "model.safetensors.index.json"});
    if (n.empty()) fail(dir, "several shard indexes and none is the default: " + join(indexes));
    return (fs::path(dir) / n).string();
  }
  if (files.empty()) fail(dir, "folder holds no .safetensors file");
  std::string n = pick(files, {"diffusion_pytorch_model.safetensors", "model.safetensors"});
  if (n.empty())
    fail(dir,
         "several .safetensors files and no *.safetensors.index.json to say which belong "
         "together: " +
             join(files));
  return (fs::path(dir) / n).string();
}

}  // namespace

TensorStore TensorStore::open(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(path, "does not exist");
  if (fs::is_directory(path, ec)) return open(pick_in_folder(path));
  TensorStore store;
  store.source_ = path;
  if (!ends_with(path, ".json")) {
    auto file = SafetensorsFile::open(path);
    for (const auto& t : file->tensors()) store.tensors_[t.name] = TensorRef{file, &t};
    return store;
  }
  // Sharded checkpoint: {"metadata": {...}, "weight_map": {"tensor": "shard file", ...}}.
  const std::string text = read_file_text(path);
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail(path, "shard index is not valid JSON");
  if (!j.is_object()) fail(path, "shard index is not a JSON object");
  auto wm = j.find("weight_map");
  if (wm == j.end() || !wm->is_object()) fail(path, "shard index has no 'weight_map' object");
  const fs::path dir = fs::path(path).parent_path();
  std::map<std::string, std::shared_ptr<SafetensorsFile>> shards;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string())
      fail(path, "weight_map entry '" + truncated(it.key()) + "' is not a file name");
    const std::string shard = it.value().get<std::string>();
    const fs::path rel(shard);
    if (shard.empty() || rel.is_absolute() || rel.has_parent_path() || shard == "." ||
        shard == "..")
      fail(path, "weight_map names shard '" + truncated(shard) +
                     "', which is not a plain file name next to the index");
    auto sit = shards.find(shard);
    if (sit == shards.end()) {
      const std::string sp = (dir / rel).string();
      if (!fs::exists(sp, ec))
        fail(path,
             "shard '" + shard + "' (for tensor '" + truncated(it.key()) + "') is missing: " + sp);
      sit = shards.emplace(shard, SafetensorsFile::open(sp)).first;
    }
    const TensorInfo* info = sit->second->find(it.key());
    if (!info)
      fail(path, "weight_map puts tensor '" + truncated(it.key()) + "' in shard '" + shard +
                     "', but that shard does not hold it");
    store.tensors_[it.key()] = TensorRef{sit->second, info};
  }
  // Every tensor of every shard must be listed, and listed for that shard (no duplicates).
  for (const auto& [shard, file] : shards) {
    for (const auto& t : file->tensors()) {
      auto it = store.tensors_.find(t.name);
      if (it == store.tensors_.end())
        fail(path, "shard '" + shard + "' holds tensor '" + truncated(t.name) +
                       "', which the weight_map does not list");
      if (it->second.file != file)
        fail(path, "tensor '" + truncated(t.name) + "' is present in shard '" + shard +
                       "' and in '" + fs::path(it->second.file->path()).filename().string() + "'");
    }
  }
  return store;
}

const TensorRef* TensorStore::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [k, v] : tensors_) out.push_back(k);
  return out;
}

void TensorStore::strip_prefix(const std::string& prefix) {
  if (prefix.empty()) return;
  std::map<std::string, TensorRef> out;
  for (auto& [k, v] : tensors_) {
    std::string nk = k.rfind(prefix, 0) == 0 ? k.substr(prefix.size()) : k;
    if (out.count(nk))
      fail(source_, "stripping prefix '" + prefix + "' makes two tensors named '" + nk + "'");
    out[nk] = v;
  }
  tensors_ = std::move(out);
}

void TensorStore::rename(const std::string& from, const std::string& to) {
  if (from == to) return;
  auto it = tensors_.find(from);
  if (it == tensors_.end()) fail(source_, "cannot rename '" + from + "': no such tensor");
  if (tensors_.count(to))
    fail(source_, "cannot rename '" + from + "' to '" + to + "': that name is taken");
  TensorRef ref = it->second;
  tensors_.erase(it);
  tensors_[to] = ref;
}

void TensorStore::erase(const std::string& name) { tensors_.erase(name); }

void TensorStore::add(const std::string& name, const TensorRef& ref) {
  if (!ref.file || !ref.info) fail(source_, "cannot add tensor '" + name + "': empty reference");
  if (!tensors_.emplace(name, ref).second)
    fail(source_, "cannot add tensor '" + name + "': that name is taken");
}

uint64_t TensorStore::total_bytes() const {
  uint64_t n = 0;
  for (const auto& [k, v] : tensors_) n += v.info->end - v.info->begin;
  return n;
}

}  // namespace qwen::io
