// The LoRA set an engine's transformer carries (issue #14), one home for the 20B engine
// (QwenEngine) and the Qwen-Image-2.1 engine: each LoRA file is read once per path and
// modification time, the set is applied only when it changes (models::apply_loras clears the
// previous one first, so a job without LoRAs after one with them runs the base weights exactly),
// and a set that fails to apply is cleared again before the error goes out.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/lora.h"
#include "pipelines/engine.h"

namespace qwen::pipelines {

class LoraSet {
 public:
  // Applies a changed set to the transformer (the engine chooses merge or side branches and where
  // they live).
  using Apply = std::function<void(const std::vector<models::LoraSpec>&)>;
  using Log = std::function<void(const std::string&)>;

  // Reads the job's LoRA files (cached) and calls `apply` when the set differs from the one
  // applied. Throws EngineError naming the file. Returns what the applied set says about Lightning
  // (io/lightning.h, by name or metadata): `lightning` when it holds a Lightning LoRA, `steps` the
  // fewest steps one of them stands for (4 or 8; 8 without one).
  models::LightningInfo prepare(const std::vector<RunParams::Lora>& loras,
                                torch::nn::Module& transformer, const Apply& apply, const Log& log);
  // The set on the transformer now: (path, strength) in job order.
  const std::vector<std::pair<std::string, double>>& applied() const { return applied_; }

 private:
  struct Cached {
    std::shared_ptr<const models::LoraFile> file;
    int64_t mtime = 0;
  };
  std::map<std::string, Cached> cache_;
  std::vector<std::pair<std::string, double>> applied_;
  models::LightningInfo applied_lightning_;
};

}  // namespace qwen::pipelines
