#include "server/config.h"

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string_view>

#include "io/quantize_on_load.h"
#include "plan/memory_plan.h"
#include "qwen_image/shm.h"

namespace qwen::server {

namespace {

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r");
  if (a == std::string::npos) return {};
  const size_t b = s.find_last_not_of(" \t\r");
  return s.substr(a, b - a + 1);
}

bool parse_int(const std::string& s, int lo, int hi, int* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (errno || *end != '\0' || v < lo || v > hi) return false;
  *out = int(v);
  return true;
}

bool parse_bool(const std::string& s, bool* out) {
  if (s == "1" || s == "true" || s == "yes" || s == "on") return *out = true, true;
  if (s == "0" || s == "false" || s == "no" || s == "off") return *out = false, true;
  return false;
}

ModelSpec model_spec(const std::string& v) {
  ModelSpec m;
  const size_t eq = v.find('=');
  if (eq != std::string::npos && v.find('/') > eq) {
    m.name = v.substr(0, eq);
    m.dir = v.substr(eq + 1);
  } else {
    m.dir = v;
    std::string d = v;
    while (d.size() > 1 && d.back() == '/') d.pop_back();
    const size_t slash = d.rfind('/');
    m.name = slash == std::string::npos ? d : d.substr(slash + 1);
  }
  return m;
}

// Applies one setting; returns "" or what is wrong with it.
std::string apply(const std::string& key, const std::string& val, DaemonConfig* c) {
  int n = 0;
  if (key == "model") {
    if (val.empty()) return "model needs a folder (or NAME= followed by transformer/text_encoder/vae lines)";
    c->models.push_back(model_spec(val));
  } else if (key == "transformer" || key == "text_encoder" || key == "vae" || key == "model_type") {
    // Per model: applies to the model declared last.
    if (c->models.empty()) return key + " must follow the 'model =' line it belongs to";
    if (val.empty()) return key + " needs a value";
    ModelSpec& m = c->models.back();
    (key == "transformer" ? m.transformer
     : key == "text_encoder" ? m.text_encoder
     : key == "vae" ? m.vae : m.model_type) = val;
  } else if (key == "device") {
    if (val != "cpu" && val != "cuda" && val.rfind("cuda:", 0) != 0)
      return "device must be cpu, cuda or cuda:N";
    c->device = val;
  } else if (key == "dtype") {
    if (val != "float32" && val != "bfloat16" && val != "float16")
      return "dtype must be float32, bfloat16 or float16";
    c->dtype = val;
  } else if (key == "instance") {
    c->instance = val;
  } else if (key == "threads") {
    if (!parse_int(val, 0, 1024, &c->threads)) return "threads must be 0..1024";
  } else if (key == "vision_processor") {
    if (val != "torchvision" && val != "pil")
      return "vision_processor must be torchvision or pil";
    c->vision_processor = val;
  } else if (key == "attention") {
    if (val != "auto" && val != "cudnn" && val != "flash" && val != "efficient" && val != "math")
      return "attention must be auto, cudnn, flash, efficient or math";
    c->attention = val;
  } else if (key == "memory") {
    try {
      plan::check_memory_mode(val);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    c->memory = val;
  } else if (key == "quantize") {
    try {
      io::parse_quantize_mode(val);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    c->quantize = val;
  } else if (key == "lora_dir") {
    if (val.empty()) return "lora_dir needs a folder";
    c->lora_dirs.push_back(std::filesystem::absolute(val).lexically_normal().string());
  } else if (key == "lora_mode") {
    if (val != "side" && val != "merge") return "lora_mode must be side or merge";
    c->lora_mode = val;
  } else if (key == "fp8_matmul") {  // EngineOptions::fp8_matmul (models/fp8_matmul.h)
    if (val != "auto" && val != "on" && val != "off")
      return "fp8_matmul must be auto, on or off, got '" + val + "'";
    c->fp8_matmul = val;
  } else if (key == "lazy") {
    if (!parse_bool(val, &c->lazy)) return "lazy must be true or false";
  } else if (key == "log") {
    c->log_file = val;
  } else if (key == "max_queue") {
    if (!parse_int(val, 1, 10000, &c->max_queue)) return "max_queue must be 1..10000";
  } else if (key == "max_resident_models") {
    if (val == "auto")
      c->max_resident_models = DaemonConfig::kAutoResident;
    else if (!parse_int(val, 0, 64, &c->max_resident_models))
      return "max_resident_models must be auto or 0..64";
  } else if (key == "vram") {
    try {
      c->vram = plan::parse_size(val);
    } catch (const std::invalid_argument& e) {
      return std::string("vram: ") + e.what() + " (e.g. vram = 24G)";
    }
    if (c->vram <= 0) return "vram must be a size above 0 (e.g. vram = 24G)";
  } else if (key == "preview_every") {
    if (!parse_int(val, 0, 1000, &c->preview_every)) return "preview_every must be 0..1000";
  } else if (key == "max_request_mb") {
    if (!parse_int(val, 1, 1 << 20, &n)) return "max_request_mb must be 1..1048576";
    c->limits.max_segment_bytes = uint64_t(n) << 20;
  } else if (key == "max_output_dim") {
    if (!parse_int(val, 16, 65536, &c->limits.max_output_dim)) return "max_output_dim: 16..65536";
  } else if (key == "max_steps") {
    if (!parse_int(val, 1, 100000, &c->limits.max_steps)) return "max_steps must be 1..100000";
  } else if (key == "fake_engine") {
    if (!parse_bool(val, &c->fake_engine)) return "fake_engine must be true or false";
  } else if (key == "fake_step_ms") {
    if (!parse_int(val, 0, 60000, &c->fake_step_ms)) return "fake_step_ms must be 0..60000";
  } else {
    return "unknown setting '" + key + "'";
  }
  return {};
}

}  // namespace

std::string default_config_path() {
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x)
    return std::string(x) + "/qwen-image/daemon.conf";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.config/qwen-image/daemon.conf";
}

std::string load_config_file(const std::string& path, DaemonConfig* cfg) {
  std::ifstream in(path);
  if (!in) return "cannot read config file " + path;
  std::string line;
  int no = 0;
  while (std::getline(in, line)) {
    ++no;
    line = trim(line);
    if (line.empty() || line[0] == '#') continue;
    const size_t eq = line.find('=');
    if (eq == std::string::npos)
      return path + ":" + std::to_string(no) + ": expected 'key = value'";
    std::string e = apply(trim(line.substr(0, eq)), trim(line.substr(eq + 1)), cfg);
    if (!e.empty()) return path + ":" + std::to_string(no) + ": " + e;
  }
  return {};
}

const char* usage_text() {
  return "usage: qwen-imaged [--model [NAME=]DIR [--transformer F] [--text-encoder F] [--vae F]\n"
         "                   [--model-type T] ...] [--device cpu|cuda|cuda:N]\n"
         "                   [--dtype float32|bfloat16] [--instance NAME] [--threads N] [--lazy]\n"
         "                   [--vision-processor torchvision|pil]\n"
         "                   [--attention auto|cudnn|flash|efficient|math]\n"
         "                   [--memory auto|MODE]  (qwen-image plan --list-modes)\n"
         "                   [--quantize none|fp8]\n"
         "                   [--lora-dir DIR ...] [--lora-mode side|merge]\n"
         "                   [--log FILE] [--config FILE | --no-config] [--max-queue N]\n"
         "                   [--preview-every N] [--max-resident-models auto|N] [--vram SIZE]\n"
         "                   [--fp8-matmul auto|on|off]\n"
         "Serves Qwen-Image jobs to the GIMP plug-in and `qwen-image --daemon` over shared "
         "memory.\n"
         "Settings come from ~/.config/qwen-image/daemon.conf (see docs/daemon.md); the command\n"
         "line overrides them (models given on the command line replace the file's).\n";
}

std::string parse_args(int argc, char** argv, DaemonConfig* cfg) {
  // First pass: which config file.
  std::string config = default_config_path();
  bool explicit_config = false, no_config = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--config" && i + 1 < argc) {
      config = argv[++i];
      explicit_config = true;
    } else if (a == "--no-config") {
      no_config = true;
    }
  }
  if (!no_config) {
    std::ifstream probe(config);
    if (probe || explicit_config) {
      std::string e = load_config_file(config, cfg);
      if (!e.empty()) return e;
    }
  }
  bool models_replaced = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](std::string* out) -> std::string {
      if (i + 1 >= argc) return a + " needs a value";
      *out = argv[++i];
      return {};
    };
    std::string v, e;
    if (a == "--help" || a == "-h") return "help";
    if (a == "--version") return "version";
    if (a == "--no-config" || a == "--lazy" || a == "--fake-engine") {
      if (a == "--lazy") cfg->lazy = true;
      if (a == "--fake-engine") cfg->fake_engine = true;
      continue;
    }
    static const std::pair<const char*, const char*> kOpts[] = {
        {"--model", "model"},
        {"--transformer", "transformer"},
        {"--text-encoder", "text_encoder"},
        {"--vae", "vae"},
        {"--model-type", "model_type"},
        {"--device", "device"},
        {"--dtype", "dtype"},
        {"--instance", "instance"},
        {"--threads", "threads"},
        {"--vision-processor", "vision_processor"},
        {"--attention", "attention"},
        {"--memory", "memory"},
        {"--quantize", "quantize"},
        {"--lora-dir", "lora_dir"},
        {"--lora-mode", "lora_mode"},
        {"--fp8-matmul", "fp8_matmul"},
        {"--log", "log"},
        {"--max-queue", "max_queue"},
        {"--max-resident-models", "max_resident_models"},
        {"--vram", "vram"},
        {"--preview-every", "preview_every"},
        {"--fake-step-ms", "fake_step_ms"},
        {"--config", ""}};
    const char* key = nullptr;
    for (const auto& [opt, k] : kOpts)
      if (a == opt) key = k;
    if (!key) return "unknown option '" + a + "' (see --help)";
    if (!(e = value(&v)).empty()) return e;
    if (*key == '\0') continue;  // --config, handled above
    if (std::string_view(key) == "model" && !models_replaced) {
      cfg->models.clear();
      models_replaced = true;
    }
    if (!(e = apply(key, v, cfg)).empty()) return a + ": " + e;
  }
  if (cfg->instance.empty()) {
    const char* env = std::getenv("QWEN_IMAGE_INSTANCE");
    cfg->instance = env && *env ? env : "default";
  }
  if (!ipc::shm::valid_instance_name(cfg->instance))
    return "bad instance name '" + cfg->instance + "': use 1 to 64 letters, digits, '-' or '_'";
  if (cfg->models.empty() && !cfg->fake_engine)
    return "no model to serve: give --model DIR or a 'model = DIR' line in " + config;
  for (const auto& m : cfg->models) {
    const bool all_files = !m.transformer.empty() && !m.text_encoder.empty() && !m.vae.empty();
    if (m.dir.empty() && !all_files)
      return "model '" + m.name +
             "' has no folder: give it one (model = NAME=DIR) or all three of transformer, "
             "text_encoder and vae";
  }
  for (size_t i = 0; i < cfg->models.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (cfg->models[i].name == cfg->models[j].name)
        return "two models are named '" + cfg->models[i].name + "'; name them with NAME=DIR";
  return {};
}

}  // namespace qwen::server
