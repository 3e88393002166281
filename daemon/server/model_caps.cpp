#include "server/model_caps.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace qwen::server {

namespace {

// Capabilities of a pipeline class as model_index.json names it (diffusers' class names).
ipc::ModelCaps caps_of_class(const std::string& cls, const std::string& family) {
  ipc::ModelCaps c;
  c.family = family;
  if (cls == "QwenImageLayeredPipeline") {
    c.known = c.can_decompose = c.rgba = true;
  } else if (cls == "QwenImageEditPlusPipeline" || cls == "QwenImageEditPipeline") {
    c.known = c.can_generate = c.can_edit = c.loras = true;
    c.max_references = cls == "QwenImageEditPlusPipeline" ? 3 : 1;
  } else if (cls == "QwenImagePipeline") {
    c.known = c.can_generate = c.loras = true;
  } else if (cls == "QwenImage21Pipeline") {  // issue #15: RGBA, 1-10 references, LoRAs
    c.known = c.can_generate = c.can_edit = c.rgba = c.loras = true;
    c.max_references = 10;
  }
  return c;
}

}  // namespace

ipc::ModelCaps caps_of(const ModelInfo& info) {
  ipc::ModelCaps c;
  c.known = true;
  c.family = !info.model_type.empty() ? info.model_type : info.pipeline_class;
  c.can_decompose = info.can_decompose;
  c.can_edit = info.can_edit;
  // Every Qwen-Image transformer runs text to image except the Layered one (decompose only).
  c.can_generate = info.can_edit || !info.can_decompose;
  c.rgba = info.can_decompose;
  c.loras = c.can_generate;
  if (info.can_edit) c.max_references = info.default_pipeline == PipelineKind::EditPlus ? 3 : 1;
  if (info.family == "qwen-image-2.1") {  // issue #15: RGBA results, 1-10 references, LoRAs
    c.family = info.family;
    c.rgba = true;
    c.loras = true;
    if (c.can_edit) c.max_references = 10;
  }
  return c;
}

ipc::ModelCaps caps_before_load(const ModelSpec& spec) {
  const std::string& t = spec.model_type;
  if (t == "qwen-image-layered") return caps_of_class("QwenImageLayeredPipeline", t);
  if (t == "qwen-image-edit-2509" || t == "qwen-image-edit-2511")
    return caps_of_class("QwenImageEditPlusPipeline", t);
  if (t == "qwen-image-edit") return caps_of_class("QwenImageEditPipeline", t);
  if (t == "qwen-image" || t == "qwen-image-2512") return caps_of_class("QwenImagePipeline", t);
  if (spec.dir.empty()) return {};
  try {
    std::ifstream in(std::filesystem::path(spec.dir) / "model_index.json");
    if (!in) return {};
    const auto j = nlohmann::json::parse(in);
    const std::string cls = j.value("_class_name", "");
    return caps_of_class(cls, cls);
  } catch (const std::exception&) {
    return {};  // unreadable: the load will say why
  }
}

std::string check_pipeline(const ipc::ModelCaps& caps, const std::string& pipeline,
                           const std::string& model_name) {
  if (!caps.known) return {};
  if (pipeline == "decompose" && !caps.can_decompose)
    return "model '" + model_name + "' (" + caps.family +
           ") cannot decompose: decompose needs a Qwen-Image-Layered model "
           "(QwenImageLayeredPipeline); name one in the job or load one in qwen-imaged";
  if (pipeline != "decompose" && !caps.can_generate && !caps.can_edit)
    return "model '" + model_name + "' (" + caps.family + ") only decomposes pictures into " +
           "layers; " + pipeline + " needs a Qwen-Image or Qwen-Image-Edit model";
  return {};
}

}  // namespace qwen::server
