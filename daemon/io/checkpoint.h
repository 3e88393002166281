// Model checkpoints: diffusers pipeline folders and single-file (ComfyUI / Wan / transformers)
// component files, with tensor names normalised to the canonical names the modules register.
// Torch-free.
//
// Canonical names: transformer = diffusers keys (`img_in.weight`, `transformer_blocks.N....`);
// VAE = diffusers keys (`encoder.conv_in.weight`, `decoder.up_blocks.N....`); text encoder =
// transformers >= 4.52 layout (`model.language_model.*`, `model.visual.*`, `lm_head.weight`).
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "io/tensor_format.h"

namespace qwen::io {

enum class ComponentKind { Transformer, TextEncoder, Vae };
const char* component_kind_name(ComponentKind);  // "transformer", "text_encoder", "vae"

// ---- key normalisation (idempotent: canonical names are left as they are) --------------------

// Strips `model.diffusion_model.` (and `diffusion_model.`); drops the `__index_timestep_zero__`
// marker. Returns true when the marker was present (=> zero_cond_t = true).
bool normalize_transformer_keys(TensorStore& store);
// Legacy transformers / ComfyUI layout: `model.X` -> `model.language_model.X`, `visual.X` ->
// `model.visual.X`; strips ComfyUI wrapper prefixes.
void normalize_text_encoder_keys(TensorStore& store);
// Original Wan / ComfyUI names -> diffusers names (spec text-encoder-and-vae.md §4.8); strips
// `vae.` / `first_stage_model.` wrapper prefixes.
void normalize_vae_keys(TensorStore& store);
// One Wan VAE key -> diffusers key (exposed for tests); returns the key unchanged when it is
// already a diffusers key or unknown.
std::string wan_vae_key_to_diffusers(const std::string& key);

// The canonical name of every stored name of a `kind` component, by the rules above (stored ->
// canonical; names left out are dropped: the `__index_timestep_zero__` marker). `*zero_cond_t`
// (transformer) says whether the marker was present. Two names mapping to one is an error.
std::map<std::string, std::string> canonical_names(ComponentKind kind,
                                                   const std::vector<std::string>& stored,
                                                   bool* zero_cond_t = nullptr);

// Guesses the kind of a single component file from its tensor names; nullopt when unrecognised.
std::optional<ComponentKind> detect_component_kind(const TensorStore& store);
std::optional<ComponentKind> detect_component_kind(const std::vector<std::string>& names);

// ---- configuration derived from tensor shapes (single-file checkpoints) -----------------------
// The returned json has the same fields as the component's config.json in a diffusers folder.
// Values that shapes cannot tell (e.g. rope axes, head counts) are those of the released
// Qwen-Image models. Shapes are the logical ones (TensorFormat::shape; canonical keys), so fp8 and
// GGUF files give the configuration of their dequantised weights. Throws CheckpointError naming
// the missing tensor when the file is incomplete.
nlohmann::json transformer_config_from_shapes(const FileFormat& format, bool zero_cond_t);
nlohmann::json text_encoder_config_from_shapes(const FileFormat& format);
nlohmann::json vae_config_from_shapes(const FileFormat& format);

// A component from one file (or a folder/index): canonical keys + its configuration.
struct ComponentWeights {
  ComponentKind kind;
  std::string source;        // the path given
  std::string layout;        // "diffusers", "comfyui", "wan", "transformers-legacy", ...
  TensorStore store;         // safetensors tensors under canonical keys, aux keys (scales,
                             // markers, comfy_quant) dropped; empty for a GGUF file
  nlohmann::json config;     // config.json equivalent
  bool zero_cond_t = false;  // transformer: `__index_timestep_zero__` marker or config flag
  // How every tensor is stored, under canonical keys (the one per-tensor description, for
  // safetensors and GGUF alike): what models::load_module reads. `format.kind` /
  // `format.summary()` name the file's format; TensorFormat::shape is the logical shape.
  FileFormat format;
};
// `path`: a .safetensors file, a shard index, a folder holding either, or a .gguf file. `kind`:
// expected kind; when nullopt it is detected. A config.json next to the weights (folder) is used
// when present, otherwise the configuration is derived from the (logical) shapes. Every format of
// io/tensor_format.h is accepted (plain, fp8, legacy scaled fp8, comfy_quant, GGUF); any other
// throws the format layer's CheckpointError naming the file. GGUF tensor names: the transformer's
// are diffusers keys (`model.diffusion_model.` stripped); a text encoder's llama.cpp names are
// mapped by gguf_llama_key_to_transformers, then normalised like a safetensors file.
ComponentWeights open_component(const std::string& path,
                                std::optional<ComponentKind> kind = std::nullopt);
// The tensor names of a weight file as stored (safetensors file / index / folder, or GGUF; GGUF
// llama.cpp text-encoder names mapped to transformers names): for model-type detection.
std::vector<std::string> weight_file_names(const std::string& path);

// ---- where a model comes from -------------------------------------------------------------
// The one description of a model's files that the engine, `inspect`, the CLI and daemon.conf share:
// a diffusers folder, single component files that supply or replace its weight components, or
// (no folder) the three component files alone, with the tokenizer / processor / scheduler
// configuration of the model type taken from the project's assets (daemon/assets, installed
// under share/qwen-image/assets).
struct ModelSources {
  std::string folder;        // diffusers pipeline folder; empty = the files alone
  std::string transformer;   // a .safetensors file / shard index / folder, replacing folder's
  std::string text_encoder;  //   ... (ComfyUI "qwen_2.5_vl_7b*.safetensors" etc.)
  std::string vae;
  std::string model_type;  // "" = from model_index.json or detected; else a known_model_types() name
  bool has_files() const { return !transformer.empty() || !text_encoder.empty() || !vae.empty(); }
  // For messages: the folder, else the first file.
  std::string label() const;
};

// The model types whose non-weight configuration ships with the project. `name` is what
// --model-type / `model_type =` take.
struct ModelType {
  const char* name;            // "qwen-image", "qwen-image-edit", "qwen-image-edit-2509", ...
  const char* pipeline_class;  // model_index.json _class_name
  bool edit;                   // has a processor (vision tower used)
  bool zero_cond_t;            // transformer config flag of the released model
  const char* description;
};
const std::vector<ModelType>& known_model_types();
const ModelType* find_model_type(const std::string& name);
// "qwen-image, qwen-image-2512, ..." for messages.
std::string model_type_names();

// The folder holding the shipped configuration (tokenizer/, processor/, scheduler/): the
// QWEN_IMAGE_ASSETS environment variable, else <exe>/../share/qwen-image/assets (installed), else
// the source tree's daemon/assets. Throws CheckpointError when none exists.
std::string assets_dir();

// ---- diffusers pipeline folder -------------------------------------------------------------

struct Component {
  std::string name;        // "transformer", "tokenizer", ...
  std::string library;     // "diffusers" / "transformers"
  std::string class_name;  // "QwenImageTransformer2DModel"
  std::string path;        // the component's folder
  nlohmann::json config;  // config.json / scheduler_config.json / preprocessor_config.json, or null
  bool has_weights = false;  // transformer, text_encoder, vae
};

class ModelFolder {
 public:
  // Reads model_index.json and every component's folder and config. Throws CheckpointError on a
  // missing/invalid model_index.json, a missing component folder, missing/invalid config.json,
  // or a weight component without weights. Weight files are opened lazily by weights().
  static ModelFolder open(const std::string& dir);
  // The general form: a folder and/or component files (ModelSources). Component files replace the
  // folder's weight components; without a folder the three files are required and the model type
  // comes from `model_type`, from the weights (the Edit-2511 marker; a text encoder without a
  // vision tower = text to image) or is asked for with an error naming --model-type. Components the
  // model type needs but the folder lacks (processor, tokenizer, scheduler) come from assets_dir().
  // Reads configuration only; component files are opened by weights().
  static ModelFolder open(const ModelSources& sources);

  const std::string& path() const { return path_; }
  const std::string& pipeline_class() const { return pipeline_class_; }
  const nlohmann::json& model_index() const { return index_; }
  const std::vector<Component>& components() const { return components_; }
  const Component* find(const std::string& name) const;
  const Component& component(const std::string& name) const;  // throws when absent
  bool has(const std::string& name) const { return find(name) != nullptr; }

  // The weights of `name` ("transformer", "text_encoder", "vae"), keys normalised. A component
  // given as a file (ModelSources) is read from that file; its configuration is the folder's
  // config.json for that component when the folder has one that agrees with the file's shapes
  // (values shapes cannot tell, like head counts of small models), else derived from the shapes.
  ComponentWeights weights(const std::string& name) const;
  // The file that supplies `name`'s weights ("" = the component folder).
  std::string file_of(const std::string& name) const;
  // The model type (known_model_types()) when known: given, detected, or matched by pipeline class.
  const std::string& model_type() const { return model_type_; }

 private:
  std::string path_, pipeline_class_, model_type_;
  nlohmann::json index_;
  std::vector<Component> components_;
  std::vector<std::pair<std::string, std::string>> files_;  // component name -> file
};

// True when `dir` looks like a diffusers pipeline folder (has model_index.json).
bool is_model_folder(const std::string& dir);

}  // namespace qwen::io
