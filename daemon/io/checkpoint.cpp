// Diffusers pipeline folders and single component checkpoints.
#include "io/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <utility>

namespace qwen::io {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw CheckpointError(where + ": " + what);
}

json read_json(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, std::string("cannot read ") + what);
  std::ostringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail(path, std::string(what) + " is not valid JSON");
  if (!j.is_object()) fail(path, std::string(what) + " is not a JSON object");
  return j;
}

bool has_weight_file(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n.size() > 12 && (n.ends_with(".safetensors") || n.ends_with(".safetensors.index.json")))
      return true;
  }
  return false;
}

std::optional<ComponentKind> kind_of_component_name(const std::string& name) {
  if (name == "transformer") return ComponentKind::Transformer;
  if (name == "text_encoder") return ComponentKind::TextEncoder;
  if (name == "vae") return ComponentKind::Vae;
  return std::nullopt;
}

}  // namespace

namespace {

bool is_gguf_path(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec) && is_gguf_file(path);
}

}  // namespace

std::vector<std::string> weight_file_names(const std::string& path) {
  if (!is_gguf_path(path)) return TensorStore::open(path).names();
  std::vector<std::string> out;
  const auto file = GgufFile::open(path);
  for (const auto& t : file->tensors()) out.push_back(gguf_llama_key_to_transformers(t.name));
  return out;
}

ComponentWeights open_component(const std::string& path, std::optional<ComponentKind> kind) {
  ComponentWeights out{kind.value_or(ComponentKind::Transformer),
                       path,
                       "diffusers",
                       TensorStore(),
                       json(),
                       false,
                       FileFormat()};
  TensorStore& store = out.store;
  // GGUF: ggml blocks that a TensorStore cannot hold; names mapped like ComfyUI-GGUF's loader
  // (llama.cpp text-encoder names -> transformers names, then the safetensors rules below).
  std::shared_ptr<GgufFile> gguf;
  std::map<std::string, std::string> gguf_key;  // transformers-style name -> stored name
  std::vector<std::string> names;
  if (is_gguf_path(path)) {
    gguf = GgufFile::open(path);
    store.set_source(path);
    for (const auto& t : gguf->tensors()) {
      const std::string n = gguf_llama_key_to_transformers(t.name);
      gguf_key.emplace(n, t.name);
      names.push_back(n);
    }
  } else {
    store = TensorStore::open(path);
    names = store.names();
  }
  if (names.empty()) fail(path, "checkpoint holds no tensors");
  const auto detected = detect_component_kind(names);
  if (kind && detected && *detected != *kind)
    fail(path, std::string("expected a ") + component_kind_name(*kind) +
                   " checkpoint, but the tensor names are those of a " +
                   component_kind_name(*detected));
  if (!kind) {
    if (!detected)
      fail(path,
           "cannot tell which component this checkpoint is (no transformer, text encoder "
           "or VAE tensor names found)");
    out.kind = *detected;
  }
  if (out.kind == ComponentKind::TextEncoder) out.layout = "transformers";
  bool marker = false;
  std::map<std::string, std::string> canon;
  try {
    canon = canonical_names(out.kind, names, &marker);
  } catch (const CheckpointError& e) {
    fail(path, e.what());
  }
  if (out.kind == ComponentKind::Transformer) out.zero_cond_t = marker;
  bool renamed = canon.size() != names.size();
  for (const auto& [from, to] : canon) renamed = renamed || from != to;
  if (renamed) {
    out.layout = out.kind == ComponentKind::Transformer   ? "comfyui"
                 : out.kind == ComponentKind::TextEncoder ? "transformers-legacy"
                                                          : "wan";
  }
  if (gguf) {
    if (gguf_key.size() != names.size()) fail(path, "two GGUF tensors map to the same name");
    bool llama = false;
    for (const auto& [n, stored] : gguf_key) llama = llama || n != stored;
    if (llama) out.layout = "llama.cpp";
    FileFormat raw = describe_gguf(gguf);
    out.format.source = raw.source;
    out.format.kind = raw.kind;
    for (const auto& [from, to] : canon)
      out.format.tensors.emplace(to, raw.tensors.at(gguf_key.at(from)));
  } else {
    switch (out.kind) {
      case ComponentKind::Transformer:
        normalize_transformer_keys(store);
        break;
      case ComponentKind::TextEncoder:
        normalize_text_encoder_keys(store);
        break;
      case ComponentKind::Vae:
        normalize_vae_keys(store);
        break;
    }
    // Per-tensor formats on the canonical names (tensor_format.h); scale / marker / comfy_quant
    // keys are folded into the formats and leave the store.
    out.format = describe_safetensors(store);
    for (const auto& k : out.format.aux_keys) store.erase(k);
  }
  std::error_code ec;
  const fs::path cfg_path = fs::is_directory(path, ec)
                                ? fs::path(path) / "config.json"
                                : fs::path(path).parent_path() / "config.json";
  // A config.json is only trusted next to weights in a component folder (the folder was given).
  if (fs::is_directory(path, ec) && fs::exists(cfg_path, ec)) {
    out.config = read_json(cfg_path.string(), "config.json");
    if (out.kind == ComponentKind::Transformer) {
      const auto it = out.config.find("zero_cond_t");
      if (it != out.config.end() && it->is_boolean() && it->get<bool>()) out.zero_cond_t = true;
      out.config["zero_cond_t"] = out.zero_cond_t;
    }
  } else {
    switch (out.kind) {
      case ComponentKind::Transformer:
        out.config = transformer_config_from_shapes(out.format, out.zero_cond_t);
        break;
      case ComponentKind::TextEncoder:
        out.config = text_encoder_config_from_shapes(out.format);
        break;
      case ComponentKind::Vae:
        out.config = vae_config_from_shapes(out.format);
        break;
    }
  }
  return out;
}

bool is_model_folder(const std::string& dir) {
  std::error_code ec;
  return fs::is_regular_file(fs::path(dir) / "model_index.json", ec);
}

ModelFolder ModelFolder::open(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) fail(dir, "model folder does not exist");
  if (!fs::is_directory(dir, ec)) fail(dir, "not a folder (expected a diffusers model folder)");
  const fs::path index_path = fs::path(dir) / "model_index.json";
  if (!fs::exists(index_path, ec)) fail(dir, "no model_index.json (not a diffusers model folder)");
  ModelFolder m;
  m.path_ = dir;
  m.index_ = read_json(index_path.string(), "model_index.json");
  auto cls = m.index_.find("_class_name");
  if (cls == m.index_.end() || !cls->is_string())
    fail(index_path.string(), "model_index.json has no \"_class_name\" string");
  m.pipeline_class_ = cls->get<std::string>();
  for (auto it = m.index_.begin(); it != m.index_.end(); ++it) {
    if (it.key().starts_with("_")) continue;
    const json& v = it.value();
    if (!v.is_array()) continue;  // plain pipeline options (e.g. "requires_safety_checker")
    if (v.size() == 2 && v[0].is_null() && v[1].is_null()) continue;  // component left out
    // A pipeline option that is a list of numbers (QwenImage21Pipeline's Turbo `sample_sigmas`).
    if (!v.empty() && std::all_of(v.begin(), v.end(), [](const json& e) { return e.is_number(); }))
      continue;
    if (v.size() != 2 || !v[0].is_string() || !v[1].is_string())
      fail(index_path.string(),
           "entry \"" + it.key() + "\" must be [library, class name], found " + v.dump());
    Component c;
    c.name = it.key();
    c.library = v[0].get<std::string>();
    c.class_name = v[1].get<std::string>();
    c.path = (fs::path(dir) / c.name).string();
    if (!fs::is_directory(c.path, ec))
      fail(c.path, "component folder '" + c.name + "' (listed in model_index.json as " +
                       c.class_name + ") is missing");
    const auto kind = kind_of_component_name(c.name);
    c.has_weights = kind.has_value();
    const char* cfg_name = c.name == "scheduler"   ? "scheduler_config.json"
                           : c.name == "processor" ? "preprocessor_config.json"
                           : c.name == "tokenizer" ? nullptr
                                                   : "config.json";
    if (cfg_name) {
      const fs::path cp = fs::path(c.path) / cfg_name;
      if (fs::exists(cp, ec))
        c.config = read_json(cp.string(), cfg_name);
      else if (c.has_weights || c.name == "scheduler")
        fail(c.path, std::string("component '") + c.name + "' has no " + cfg_name);
    }
    if (c.name == "tokenizer" || c.name == "processor") {
      const bool bpe = fs::exists(fs::path(c.path) / "vocab.json", ec) &&
                       fs::exists(fs::path(c.path) / "merges.txt", ec);
      const bool fast = fs::exists(fs::path(c.path) / "tokenizer.json", ec);
      if (!bpe && !fast)
        fail(c.path,
             "component '" + c.name + "' has neither vocab.json + merges.txt nor tokenizer.json");
    }
    if (c.has_weights && !has_weight_file(c.path))
      fail(c.path, "component '" + c.name + "' has no .safetensors weights");
    m.components_.push_back(std::move(c));
  }
  if (m.components_.empty()) fail(index_path.string(), "model_index.json lists no components");
  return m;
}

const Component* ModelFolder::find(const std::string& name) const {
  for (const auto& c : components_)
    if (c.name == name) return &c;
  return nullptr;
}

const Component& ModelFolder::component(const std::string& name) const {
  if (const Component* c = find(name)) return *c;
  fail(path_, "model has no '" + name + "' component (model_index.json)");
}

std::string ModelFolder::file_of(const std::string& name) const {
  for (const auto& [n, f] : files_)
    if (n == name) return f;
  return {};
}

ComponentWeights ModelFolder::weights(const std::string& name) const {
  const Component& c = component(name);
  const auto kind = kind_of_component_name(name);
  if (!kind) fail(c.path, "component '" + name + "' has no weights");
  const std::string file = file_of(name);
  if (file.empty()) return open_component(c.path, kind);
  ComponentWeights w = open_component(file, kind);
  if (!c.config.is_object() || c.config.empty()) return w;
  // The folder's config.json knows what shapes cannot tell (head counts, rope axes of models whose
  // heads are not 128 wide); take it when every value the shapes do tell agrees with it.
  static const char* kShapeKeys[] = {
      "in_channels",   "out_channels",        "num_layers",          "attention_head_dim",
      "num_attention_heads", "joint_attention_dim", "hidden_size", "intermediate_size",
      "num_hidden_layers", "num_key_value_heads", "vocab_size", "z_dim", "base_dim"};
  for (const char* k : kShapeKeys) {
    const auto a = std::as_const(w.config).find(k);
    const auto b = c.config.find(k);
    if (a == w.config.end() || b == c.config.end() || *a == *b) continue;
    if (*kind == ComponentKind::TextEncoder &&
        (std::string(k) == "num_attention_heads" || std::string(k) == "num_key_value_heads"))
      continue;  // guessed from shapes (head size 128 assumed); the folder's value decides
    fail(file, std::string("does not match the ") + name + " of " + path_ + " (" + k + " " +
                   a->dump() + " in the file, " + b->dump() + " in " + c.path +
                   "/config.json): give a " + name + " file of the same model, or leave out --model");
  }
  const bool zero_cond_t = w.zero_cond_t;
  w.config = c.config;
  if (*kind == ComponentKind::Transformer) {
    const auto it = c.config.find("zero_cond_t");
    w.zero_cond_t = zero_cond_t || (it != c.config.end() && it->is_boolean() && it->get<bool>());
    w.config["zero_cond_t"] = w.zero_cond_t;
  }
  return w;
}

}  // namespace qwen::io
