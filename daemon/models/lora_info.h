// The torch-free part of models/lora.h, for the CLI and the daemon: LoRA arguments and Lightning
// recognition from a file's name and safetensors header.
#pragma once

#include <string>
#include <utility>

namespace qwen::models {

// Lightning (ModelTC/Qwen-Image-Lightning, lightx2v): recognised by the file name or a metadata
// value containing "lightning" (any case). steps: 4 or 8 from "4step"/"8step" in the name, else 8.
struct LightningInfo {
  bool lightning = false;
  int steps = 8;
};
// From the file name and header alone (no tensor is read).
LightningInfo lightning_info(const std::string& path);

// "FILE[:STRENGTH]" (CLI and daemon): the strength is the text after the last ':' when it parses
// as a finite number, else the whole text is the file and the strength is 1.
std::pair<std::string, double> parse_lora_argument(const std::string& text);

}  // namespace qwen::models
