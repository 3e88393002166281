#include "server/lora_list.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

namespace qwen::server {

namespace fs = std::filesystem;

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The "__metadata__" strings of a safetensors header (8-byte little-endian length, then JSON);
// empty when the file is not readable as safetensors (a job naming it then fails with the LoRA
// reader's message).
std::map<std::string, std::string> header_metadata(const std::string& path) {
  std::map<std::string, std::string> out;
  std::ifstream f(path, std::ios::binary);
  unsigned char len_bytes[8];
  if (!f.read(reinterpret_cast<char*>(len_bytes), 8)) return out;
  uint64_t len = 0;
  for (int i = 7; i >= 0; --i) len = (len << 8) | len_bytes[i];
  if (len == 0 || len > (100u << 20)) return out;  // the format's own header limit is 100 MB
  std::string header(size_t(len), '\0');
  if (!f.read(header.data(), std::streamsize(len))) return out;
  try {
    const auto j = nlohmann::json::parse(header);
    if (j.is_object() && j.contains("__metadata__") && j["__metadata__"].is_object())
      for (const auto& [k, v] : j["__metadata__"].items())
        if (v.is_string()) out[k] = v.get<std::string>();
  } catch (const std::exception&) {
  }
  return out;
}

}  // namespace

ipc::LoraInfo describe_lora_file(const std::string& path) {
  ipc::LoraInfo info;
  const fs::path p(path);
  info.name = p.extension() == ".safetensors" ? p.stem().string() : p.filename().string();
  // Mirrors models/lora.cpp lightning_from (torch-side): the base name or a metadata value.
  const std::string name = lower(p.filename().string());
  bool hit = name.find("lightning") != std::string::npos;
  if (!hit)
    for (const auto& [k, v] : header_metadata(path))
      if (lower(v).find("lightning") != std::string::npos) hit = true;
  info.lightning = hit;
  for (int steps : {4, 8}) {
    const std::string s = std::to_string(steps);
    for (const std::string& pat : {s + "step", s + "-step", s + "_step"})
      if (name.find(pat) != std::string::npos) info.lightning_steps = steps;
  }
  if (!info.lightning) info.lightning_steps = 0;
  return info;
}

std::vector<ipc::LoraInfo> LoraCatalog::scan(const std::vector<std::string>& dirs) {
  std::vector<ipc::LoraInfo> out;
  std::set<std::string> names, paths;
  for (const auto& dir : dirs) {
    std::error_code ec;
    fs::directory_iterator it(dir, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
      const fs::path p = it->path();
      if (p.extension() != ".safetensors") continue;
      struct stat st {};
      if (::stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      const std::string key = p.string();
      Seen& seen = cache_[key];
      if (seen.size != int64_t(st.st_size) || seen.mtime != int64_t(st.st_mtime)) {
        seen.size = int64_t(st.st_size);
        seen.mtime = int64_t(st.st_mtime);
        seen.info = describe_lora_file(key);
      }
      paths.insert(key);
      if (names.insert(seen.info.name).second) out.push_back(seen.info);
    }
  }
  for (auto it = cache_.begin(); it != cache_.end();)  // files that went away
    it = paths.count(it->first) ? std::next(it) : cache_.erase(it);
  std::sort(out.begin(), out.end(),
            [](const ipc::LoraInfo& a, const ipc::LoraInfo& b) { return a.name < b.name; });
  return out;
}

}  // namespace qwen::server
