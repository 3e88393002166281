#include "server/lora_list.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>

#include "io/lightning.h"

namespace qwen::server {

namespace fs = std::filesystem;

ipc::LoraInfo describe_lora_file(const std::string& path) {
  ipc::LoraInfo info;
  const fs::path p(path);
  info.name = p.extension() == ".safetensors" ? p.stem().string() : p.filename().string();
  const io::LightningInfo li = io::lightning_info(path);
  info.lightning = li.lightning;
  info.lightning_steps = li.lightning ? li.named_steps : 0;
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
