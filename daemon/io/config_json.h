// The one reader of the components' JSON configuration files (transformer/, vae/, text_encoder/,
// scheduler/ config.json, model_index.json): parsing and typed key lookup with errors that name
// the file and the key. Torch-free.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "io/safetensors.h"  // CheckpointError

namespace qwen::io {

// Parses `text` as one JSON object; otherwise throws CheckpointError "<label>: not valid JSON
// (...)" or "<label>: not a JSON object". `label` names the file.
nlohmann::json parse_config_object(const std::string& text, const std::string& label);

// Reads j[key] into `out` when present and not null (diffusers writes null for "the default"), so
// `out` keeps its default otherwise; a value of the wrong type throws CheckpointError
// "<label>: key '<key>' has the wrong type (...)".
template <typename T>
void read_key(const nlohmann::json& j, const char* key, T& out, const std::string& label) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return;
  try {
    out = it->get<T>();
  } catch (const std::exception& e) {
    throw CheckpointError(label + ": key '" + key + "' has the wrong type (" + e.what() + ")");
  }
}

}  // namespace qwen::io
