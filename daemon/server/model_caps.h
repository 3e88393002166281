// What a served model can do (issue #16; issue #17's one wire vocabulary): the typed
// ipc::ModelCaps the status block carries (protocol.h encode_models), from the loaded engine's
// ModelInfo, or before a model loads from its configured model_type / model_index.json, and the
// check that a job's pipeline suits the model.
#pragma once

#include <string>

#include "pipelines/engine.h"
#include "qwen_image/client.h"
#include "server/config.h"

namespace qwen::server {

// From a loaded engine.
ipc::ModelCaps caps_of(const ModelInfo& info);
// Before loading: from `spec.model_type` (io::known_model_types() names, qwen-image-layered) or
// the folder's model_index.json `_class_name`; known = false when neither tells.
ipc::ModelCaps caps_before_load(const ModelSpec& spec);
// "" when `pipeline` runs on a model with these capabilities, else a message for the client that
// names the model and what to do. Unknown capabilities pass (the engine decides).
std::string check_pipeline(const ipc::ModelCaps& caps, const std::string& pipeline,
                           const std::string& model_name);

}  // namespace qwen::server
