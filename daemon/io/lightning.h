// Lightning LoRA recognition (ModelTC/Qwen-Image-Lightning, lightx2v) from a file's name and its
// safetensors metadata: the one rule the engine, the CLI and the daemon's LoRA list apply
// (issue #14). Torch-free, so the daemon's server lists its lora_dir without the engine.
#pragma once

#include <map>
#include <string>

namespace qwen::io {

// `lightning`: the file name or a metadata value contains "lightning" (any case). `named_steps`:
// 4 or 8 when the name says "4step" / "4-step" / "4_step" (or 8), else 0; `steps` is that, or 8.
struct LightningInfo {
  bool lightning = false;
  int steps = 8;
  int named_steps = 0;
};
LightningInfo lightning_from(const std::string& path,
                             const std::map<std::string, std::string>& metadata);
// From the file name and its safetensors header alone (no tensor is read); an unreadable file
// counts as having no metadata (reading it as a LoRA then fails with the LoRA reader's message).
LightningInfo lightning_info(const std::string& path);

}  // namespace qwen::io
