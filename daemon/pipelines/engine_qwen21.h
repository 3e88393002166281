// The Qwen-Image-2.1 engine (issue #15): a model folder whose model_index.json names
// QwenImage21Pipeline, its three components loaded through io::open_component, Generate and Edit /
// Edit-Plus (1-10 references) run through pipelines/pipeline_qwenimage21.h, RGBA results.
// Engine::open() picks it (is_qwen21_model); internal to qwen_pipelines (tests include it).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "image/vision_processor.h"
#include "models/offload.h"
#include "models/qwen3vl_text_encoder.h"
#include "models/transformer21.h"
#include "models/vae21.h"
#include "pipelines/engine.h"
#include "pipelines/pipeline_qwenimage21.h"
#include "pipelines/scheduler.h"
#include "tokenizer/qwen2_tokenizer.h"

namespace qwen::pipelines {

// True when options.model_dir has a model_index.json whose _class_name is QwenImage21Pipeline.
bool is_qwen21_model(const EngineOptions& options);

class Qwen21Engine : public Engine {
 public:
  explicit Qwen21Engine(const EngineOptions& options);
  const ModelInfo& info() const override { return info_; }
  std::vector<ImageU8> run(const RunParams& params, const ProgressFn& progress) override;
  // run() with the job's intermediates (tests).
  std::vector<ImageU8> run_traced(const RunParams& params, const ProgressFn& progress,
                                  qwen21::Trace21* trace);

  models::QwenImage21Transformer2DModel& transformer() { return transformer_; }
  models::AutoencoderKLQwenImage21& vae() { return vae_; }
  const SchedulerConfig& scheduler_config() const { return scheduler_config_; }
  const std::optional<std::vector<float>>& sample_sigmas() const { return sample_sigmas_; }

 private:
  void log(const std::string& message) const;

  EngineOptions options_;
  ModelInfo info_;
  torch::Device device_{torch::kCPU};
  torch::Dtype dtype_ = torch::kFloat32;
  SchedulerConfig scheduler_config_;
  std::optional<std::vector<float>> sample_sigmas_;  // Turbo (model_index.json)
  models::QwenImage21Transformer2DModel transformer_{nullptr};
  models::AutoencoderKLQwenImage21 vae_{nullptr};
  models::qwen3vl::TextEncoder text_encoder_{nullptr};
  std::optional<tokenizer::Qwen2Tokenizer> tokenizer_;
  VisionProcessorConfig processor_;
  // On an accelerator the text encoder lives in host memory and is on the device only while it
  // encodes (the pipeline's model_cpu_offload_seq text_encoder -> transformer -> vae).
  std::unique_ptr<models::HostWeights> text_encoder_host_;
};

}  // namespace qwen::pipelines
