// The LoRAs a daemon can apply by name (issue #14: "the model list reports the available LoRAs"):
// the *.safetensors files of its lora_dir folders, for the status block. Torch-free.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "qwen_image/client.h"

namespace qwen::server {

// A LoRA file's entry: its name and whether it is a Lightning LoRA (io/lightning.h, the rule the
// engine and the CLI apply; the steps only when the name says 4 or 8). Reads only the header.
ipc::LoraInfo describe_lora_file(const std::string& path);

// Lists the LoRAs of `dirs`: every regular *.safetensors file, named without the extension (what
// a job sends; the first folder wins for a name, as resolve_job_lora looks them up), sorted by
// name. Headers are read once per file (size and modification time) and kept in the catalog.
class LoraCatalog {
 public:
  std::vector<ipc::LoraInfo> scan(const std::vector<std::string>& dirs);

 private:
  struct Seen {
    int64_t size = -1;
    int64_t mtime = 0;
    ipc::LoraInfo info;
  };
  std::map<std::string, Seen> cache_;
};

}  // namespace qwen::server
