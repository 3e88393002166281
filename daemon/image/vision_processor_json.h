// VisionProcessorConfig from JSON text, for processor settings that are not a file of their own
// (transformers 5's processor_config.json nests them under "image_processor"). Torch-free.
#pragma once

#include <string>

#include "image/vision_processor.h"

namespace qwen {

// The settings of a preprocessor_config.json-style object given as text; `label` names the source
// in errors. Same rules and errors (ImageError) as VisionProcessorConfig::from_json_file.
VisionProcessorConfig vision_processor_config_from_json_text(const std::string& text,
                                                             const std::string& label);

}  // namespace qwen
