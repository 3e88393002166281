// The torch-free part of models/lora.h, for the CLI and the daemon: LoRA arguments and Lightning
// recognition from a file's name and safetensors header.
#pragma once

#include <string>
#include <utility>

#include "io/lightning.h"

namespace qwen::models {

// Lightning recognition from the file name and header alone: io/lightning.h, the one rule.
using io::lightning_info;
using io::LightningInfo;

// "FILE[:STRENGTH]" (CLI and daemon): the strength is the text after the last ':' when it parses
// as a finite number, else the whole text is the file and the strength is 1.
std::pair<std::string, double> parse_lora_argument(const std::string& text);

}  // namespace qwen::models
