// The Qwen-Image-2.1 engine (issue #15): a model folder whose model_index.json names
// QwenImage21Pipeline, its three components loaded through io::open_component, Generate and Edit /
// Edit-Plus (1-10 references) run through pipelines/pipeline_qwenimage21.h, RGBA results.
// Engine::open() picks it (is_qwen21_model); internal to qwen_pipelines (tests include it).
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "image/vision_processor.h"
#include "models/block_stream.h"
#include "models/lora.h"
#include "models/offload.h"
#include "models/qwen3vl_text_encoder.h"
#include "models/transformer21.h"
#include "models/vae21.h"
#include "pipelines/engine.h"
#include "pipelines/lora_set.h"
#include "pipelines/pipeline_qwenimage21.h"
#include "pipelines/scheduler.h"
#include "plan/memory_plan.h"
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
  // The memory plan followed (issue #13 machinery; plan/memory_plan.h).
  const plan::MemoryPlan& memory_plan() const { return memory_plan_; }
  // The transformer's host copy when the plan swaps it out while the text encoder encodes.
  const models::HostWeights* transformer_host() const { return transformer_host_.get(); }
  const models::HostWeights* text_encoder_host() const { return text_encoder_host_.get(); }
  // Whether the last job ran with the KV cache (off when asked, or when it would not fit).
  bool last_job_kv_cache() const { return last_kv_cache_; }
  // The transformer's LoRA state now (tests): the applied (path, strength) list.
  const std::vector<std::pair<std::string, double>>& applied_loras() const {
    return loras_.applied();
  }

 private:
  void log(const std::string& message) const;
  // ProgressInfo.preview of a 2.1 job (EngineOptions.preview): the x0 estimate's first batch entry
  // [h*w, 64] through a linear map to RGBA (preview_map(), composited over white), one pixel per
  // 16x16 image pixels, at most 256 on the long side.
  ImageU8 preview21(const torch::Tensor& x0, int64_t height, int64_t width);
  // The map [65, 4] (64 channels + bias -> RGBA in [0, 1]): there are no published latent-to-RGB
  // factors for the 2.1 VAE, so it is fitted once per engine by least squares to this VAE's decode
  // of fixed random normalised latents (16 x 16, area-averaged per latent pixel). Colours are
  // approximate, as the 20B preview's.
  const torch::Tensor& preview_map();
  // Puts the job's LoRA set on the transformer (issue #14's mechanism, models/lora.h: read once
  // per file, re-applied only when the set changes, an empty set restores the loaded weights).
  void prepare_loras(const RunParams& params);

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
  // Memory modes (plan_engine_memory): offload-text / modulation / stream keep the text encoder in
  // host memory, on the device only while it encodes (the pipeline's model_cpu_offload_seq
  // text_encoder -> transformer -> vae); cpu-text modes encode on the CPU; stream modes stream
  // transformer blocks (models::BlockStreamer); swap_transformer puts the transformer in pinned
  // host memory while the text encoder is on the device.
  plan::MemoryPlan memory_plan_;
  std::unique_ptr<models::HostWeights> text_encoder_host_;
  std::unique_ptr<models::HostWeights> transformer_host_;
  bool last_kv_cache_ = false;
  torch::Tensor preview_map_;
  // The LoRA files read so far and the set on the transformer now.
  LoraSet loras_;
};

}  // namespace qwen::pipelines
