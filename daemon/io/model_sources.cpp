// ModelFolder::open(ModelSources): a diffusers folder and/or single component files, the one
// loading path of the engine, `inspect`, the CLI and the daemon (issue #12).
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/checkpoint.h"

#ifndef QWEN_SOURCE_ASSETS_DIR
#define QWEN_SOURCE_ASSETS_DIR ""
#endif

namespace qwen::io {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw CheckpointError(where + ": " + what);
}

bool has_assets(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p / "scheduler" / "scheduler_config.json", ec) &&
         fs::is_regular_file(p / "tokenizer" / "vocab.json", ec);
}

std::string exe_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.parent_path().string();
}

// The component entries of a model_index.json for `type` (what diffusers writes for it).
json model_index_for(const ModelType& t) {
  json j{{"_class_name", t.pipeline_class},
         {"scheduler", {"diffusers", "FlowMatchEulerDiscreteScheduler"}},
         {"text_encoder", {"transformers", "Qwen2_5_VLForConditionalGeneration"}},
         {"tokenizer", {"transformers", "Qwen2Tokenizer"}},
         {"transformer", {"diffusers", "QwenImageTransformer2DModel"}},
         {"vae", {"diffusers", "AutoencoderKLQwenImage"}}};
  if (t.edit) j["processor"] = {"transformers", "Qwen2VLProcessor"};
  return j;
}

std::string class_of(const std::string& name) {
  if (name == "transformer") return "QwenImageTransformer2DModel";
  if (name == "vae") return "AutoencoderKLQwenImage";
  if (name == "text_encoder") return "Qwen2_5_VLForConditionalGeneration";
  if (name == "tokenizer") return "Qwen2Tokenizer";
  if (name == "processor") return "Qwen2VLProcessor";
  return "FlowMatchEulerDiscreteScheduler";
}

// True when the text encoder file has vision tower weights.
bool has_vision_tower(const std::vector<std::string>& te) {
  for (const auto& n : te)
    if (n.starts_with("visual.") || n.find(".visual.") != std::string::npos) return true;
  return false;
}

}  // namespace

std::string ModelSources::label() const {
  if (!folder.empty()) return folder;
  if (!transformer.empty()) return transformer;
  if (!text_encoder.empty()) return text_encoder;
  return vae;
}

const std::vector<ModelType>& known_model_types() {
  // One row per released model whose non-weight files ship in daemon/assets. 2512 has the
  // architecture and configuration of Qwen-Image; Edit-2511 that of Edit-2509 plus zero_cond_t.
  static const std::vector<ModelType> types = {
      {"qwen-image", "QwenImagePipeline", false, false, "Qwen-Image / Qwen-Image-2512 (text to image)"},
      {"qwen-image-edit", "QwenImageEditPipeline", true, false, "Qwen-Image-Edit (one image)"},
      {"qwen-image-edit-2509", "QwenImageEditPlusPipeline", true, false,
       "Qwen-Image-Edit-2509 (1-3 images)"},
      {"qwen-image-edit-2511", "QwenImageEditPlusPipeline", true, true,
       "Qwen-Image-Edit-2511 (1-3 images, zero_cond_t)"},
  };
  return types;
}

const ModelType* find_model_type(const std::string& name) {
  for (const auto& t : known_model_types())
    if (name == t.name) return &t;
  if (name == "qwen-image-2512") return &known_model_types()[0];
  return nullptr;
}

std::string model_type_names() {
  std::string s;
  for (const auto& t : known_model_types()) s += (s.empty() ? "" : ", ") + std::string(t.name);
  return s + ", qwen-image-2512";
}

std::string assets_dir() {
  std::vector<fs::path> tried;
  if (const char* e = std::getenv("QWEN_IMAGE_ASSETS"); e && *e) {
    if (!has_assets(e))
      fail(e, "QWEN_IMAGE_ASSETS does not hold the tokenizer/ and scheduler/ assets");
    return e;
  }
  if (const std::string d = exe_dir(); !d.empty())
    tried.push_back(fs::path(d) / ".." / "share" / "qwen-image" / "assets");
  if (*QWEN_SOURCE_ASSETS_DIR) tried.push_back(QWEN_SOURCE_ASSETS_DIR);
  std::string list;
  for (const auto& p : tried) {
    if (has_assets(p)) return fs::weakly_canonical(p).string();
    list += (list.empty() ? "" : ", ") + p.string();
  }
  fail("qwen-image assets",
       "not found (looked in " + list +
           "): reinstall with installers/install.sh, or set QWEN_IMAGE_ASSETS to the folder");
}

ModelFolder ModelFolder::open(const ModelSources& src) {
  std::error_code ec;
  const ModelType* type = nullptr;
  if (!src.model_type.empty()) {
    type = find_model_type(src.model_type);
    if (!type)
      fail("--model-type " + src.model_type, "unknown model type; known: " + model_type_names());
  }
  struct Given {
    const char* name;
    const std::string& path;
  };
  const Given given[] = {{"transformer", src.transformer},
                         {"text_encoder", src.text_encoder},
                         {"vae", src.vae}};
  for (const auto& g : given) {
    if (g.path.empty()) continue;
    if (!fs::exists(g.path, ec))
      fail(g.path, std::string("the ") + g.name + " file does not exist");
  }

  ModelFolder m;
  if (!src.folder.empty()) {
    m = open(src.folder);
  } else {
    std::string missing;
    for (const auto& g : given)
      if (g.path.empty()) missing += (missing.empty() ? "--" : ", --") + std::string(g.name);
    if (!missing.empty()) {
      for (auto& c : missing)
        if (c == '_') c = '-';
      fail(src.label().empty() ? std::string("model") : src.label(),
           "without a model folder (--model DIR) the transformer, text encoder and VAE files "
           "are all needed; missing: " +
               missing);
    }
    // The model type: given, or told by the weights where they can tell it.
    if (!type) {
      bool marker = false;
      for (const auto& n : weight_file_names(src.transformer))
        if (n.ends_with("__index_timestep_zero__")) marker = true;
      if (marker) {
        type = find_model_type("qwen-image-edit-2511");
      } else {
        if (!has_vision_tower(weight_file_names(src.text_encoder))) {
          type = find_model_type("qwen-image");
        } else {
          fail(src.transformer,
               "cannot tell from the weights which Qwen-Image model this is (Qwen-Image and "
               "the Edit models have the same tensor shapes): say it with --model-type NAME "
               "(daemon.conf: model_type = NAME), NAME one of " +
                   model_type_names());
        }
      }
    }
    const std::string assets = assets_dir();
    m.path_ = src.label();
    m.index_ = model_index_for(*type);
    m.pipeline_class_ = type->pipeline_class;
    for (const char* name : {"transformer", "text_encoder", "vae"}) {
      Component c;
      c.name = name;
      c.library = std::string(name) == "text_encoder" ? "transformers" : "diffusers";
      c.class_name = class_of(name);
      c.has_weights = true;
      for (const auto& g : given)
        if (std::string(g.name) == name) c.path = g.path;
      m.components_.push_back(std::move(c));
    }
  }
  if (type && !src.folder.empty() && m.pipeline_class_ != type->pipeline_class) {
    // --model-type with a folder: the folder's weights and configs, the type's pipeline.
    m.pipeline_class_ = type->pipeline_class;
    m.index_["_class_name"] = type->pipeline_class;
  }
  if (!type) {
    for (const auto& t : known_model_types())
      if (m.pipeline_class_ == t.pipeline_class) {
        type = &t;
        break;
      }
  }
  if (type) m.model_type_ = type->name;

  // Non-weight components the pipeline needs but the folder lacks: from the assets.
  std::vector<std::string> needed = {"tokenizer", "scheduler"};
  if (type && type->edit) needed.push_back("processor");
  for (const auto& name : needed) {
    if (m.has(name)) continue;
    const fs::path p = fs::path(assets_dir()) / name;
    Component c;
    c.name = name;
    c.library = name == "scheduler" ? "diffusers" : "transformers";
    c.class_name = class_of(name);
    c.path = p.string();
    const char* cfg = name == "scheduler"   ? "scheduler_config.json"
                      : name == "processor" ? "preprocessor_config.json"
                                            : nullptr;
    if (cfg) {
      std::ifstream in(p / cfg, std::ios::binary);
      std::ostringstream ss;
      ss << in.rdbuf();
      c.config = json::parse(ss.str(), nullptr, false);
      if (!in || c.config.is_discarded())
        fail((p / cfg).string(), "missing or invalid asset: reinstall qwen-image");
    }
    m.components_.push_back(std::move(c));
    m.index_[name] = {m.components_.back().library, m.components_.back().class_name};
  }

  // Component files: opened (and their kind checked) by weights().
  for (const auto& g : given) {
    if (g.path.empty()) continue;
    if (!m.has(g.name)) {
      Component c;
      c.name = g.name;
      c.library = std::string(g.name) == "text_encoder" ? "transformers" : "diffusers";
      c.class_name = class_of(g.name);
      c.has_weights = true;
      c.path = g.path;
      m.components_.push_back(std::move(c));
    }
    m.files_.emplace_back(g.name, g.path);
  }
  return m;
}

}  // namespace qwen::io
