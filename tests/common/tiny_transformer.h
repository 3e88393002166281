// The transformer of a fixture model folder, loaded in float32 on the CPU for the model and
// pipeline tests.
#pragma once

#include <optional>
#include <string>

#include "io/safetensors.h"
#include "models/transformer.h"
#include "models/weights.h"

namespace qwen::test {

// `model_dir`/transformer (config.json + weights); `zero_cond_t`, when given, replaces the
// config's flag.
inline models::QwenImageTransformer2DModel load_transformer(
    const std::string& model_dir, std::optional<bool> zero_cond_t = std::nullopt) {
  const std::string dir = model_dir + "/transformer";
  auto cfg = models::TransformerConfig::from_json_file(dir + "/config.json");
  if (zero_cond_t) cfg.zero_cond_t = *zero_cond_t;
  models::QwenImageTransformer2DModel t(cfg);
  models::load_module(*t, io::TensorStore::open(dir), "transformer", torch::kFloat32, torch::kCPU);
  t->eval();
  return t;
}

}  // namespace qwen::test
