// Daemon configuration: command line and ~/.config/qwen-image/daemon.conf (see docs/daemon.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qwen_image/protocol.h"

namespace qwen::server {

struct ModelSpec {
  std::string name;  // what requests name; default: the folder's base name
  std::string dir;   // diffusers folder; empty (`model = NAME=`) when the files below make it up
  // Component files (`transformer = FILE` ... lines after the `model =` line they belong to; the
  // same as the CLI's --transformer/--text-encoder/--vae/--model-type; io::ModelSources).
  std::string transformer, text_encoder, vae, model_type;
};

struct DaemonConfig {
  std::vector<ModelSpec> models;  // the first one is the default
  std::string device;             // "" = engine default
  std::string dtype;
  std::string instance;  // "" = $QWEN_IMAGE_INSTANCE or "default"
  int threads = 0;
  // Edit models' Qwen2-VL image processor: "" / "torchvision" (default) or "pil"
  // (EngineOptions::vision_processor).
  std::string vision_processor;
  // CUDA attention kernel: "" / "auto" (start-up self-check), "cudnn", "flash", "efficient" or
  // "math" (EngineOptions::sdpa_backend; $QWEN_SDPA_BACKEND when unset).
  std::string attention;
  // Memory mode (issue #13): "" / "auto" or a `qwen-image plan --list-modes` name
  // (EngineOptions::memory).
  std::string memory;
  // Quantise-on-load: "" / "none" or "fp8" (EngineOptions::quantize, io/quantize_on_load.h).
  std::string quantize;
  // LoRA folders (issue #14): a job's bare LoRA name is looked up as NAME or NAME.safetensors in
  // them, in order (`lora_dir = DIR`, repeatable; --lora-dir DIR).
  std::vector<std::string> lora_dirs;
  std::string lora_mode;  // "" / "side" or "merge" (EngineOptions::lora_mode)
  // fp8 tensor-core matmuls for fp8 weights: "" / "auto", "on" or "off"
  // (EngineOptions::fp8_matmul).
  std::string fp8_matmul;
  bool lazy = false;      // load models on first use instead of at start
  std::string log_file;
  int max_queue = 32;
  // 0 = no limit; N: least recently used models are unloaded beyond N; kAutoResident ("auto",
  // the default, issue #13): a model stays loaded next to the others while the planner's
  // predicted peaks of all of them fit the device memory together, else the least recently used
  // is unloaded (job.h Models::get; no limit where the device memory is unknown, e.g. the CPU).
  static constexpr int kAutoResident = -1;
  int max_resident_models = kAutoResident;
  // Device memory the daemon plans with, in bytes (`vram = 24G` / --vram; 0 = ask the device).
  int64_t vram = 0;
  int preview_every = 5;        // steps between previews (0 = none)
  ipc::proto::Limits limits;
  // Test aid (hidden): run a deterministic fake engine instead of loading models.
  bool fake_engine = false;
  int fake_step_ms = 20;
};

// Default config path: $XDG_CONFIG_HOME/qwen-image/daemon.conf or ~/.config/qwen-image/daemon.conf.
std::string default_config_path();
// Reads `key = value` lines into cfg. Returns "" or an error naming the file and line.
std::string load_config_file(const std::string& path, DaemonConfig* cfg);
// Parses the command line (after loading the config file it names, if any). Returns "" on success,
// "help"/"version" when those were asked for, or an error message.
std::string parse_args(int argc, char** argv, DaemonConfig* cfg);
const char* usage_text();

}  // namespace qwen::server
