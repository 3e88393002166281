#include "server/lora_resolve.h"

#include <sys/stat.h>

#include <filesystem>

namespace qwen::server {

namespace fs = std::filesystem;

std::string resolve_job_lora(const std::string& name, const std::vector<std::string>& dirs,
                             int64_t client_pid, std::string* path) {
  const std::string what = "LoRA '" + name + "'";
  if (name.empty()) return "a LoRA name is empty";
  if (name.front() == '/') {
    struct stat client {
    }, file{};
    if (client_pid <= 0 || ::stat(("/proc/" + std::to_string(client_pid)).c_str(), &client) != 0)
      return what +
             ": cannot tell which user sent the job, so an absolute path is refused; put "
             "the file in the daemon's lora_dir and send its name";
    if (::stat(name.c_str(), &file) != 0) return what + ": no such file";
    if (!S_ISREG(file.st_mode)) return what + ": not a regular file";
    if (file.st_uid != client.st_uid)
      return what +
             ": the file is not owned by the user who sent the job; copy it to a file you "
             "own or into the daemon's lora_dir";
    *path = name;
    return {};
  }
  if (name.find('/') != std::string::npos || name == "." || name == ".." ||
      name.find('\0') != std::string::npos)
    return what + ": a LoRA is a bare file name from the daemon's lora_dir or an absolute path";
  if (dirs.empty())
    return what +
           ": the daemon has no lora_dir; set `lora_dir = DIR` in daemon.conf (or "
           "--lora-dir DIR) or send an absolute path";
  for (const auto& dir : dirs)
    for (const std::string& f : {name, name + ".safetensors"}) {
      std::error_code ec;
      const fs::path p = fs::path(dir) / f;
      if (fs::is_regular_file(p, ec)) {
        *path = p.string();
        return {};
      }
    }
  std::string list;
  for (const auto& d : dirs) list += (list.empty() ? "" : ", ") + d;
  return what + ": not found as " + name + " or " + name + ".safetensors in the lora_dir (" + list +
         ")";
}

}  // namespace qwen::server
