#include "io/config_json.h"

namespace qwen::io {

nlohmann::json parse_config_object(const std::string& text, const std::string& label) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw CheckpointError(label + ": not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object()) throw CheckpointError(label + ": not a JSON object");
  return j;
}

}  // namespace qwen::io
