// The concrete Engine (engine.h): the loaded components of one model folder and the pipelines
// that run on them. Internal to qwen_pipelines (tests include it to reach the components).
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "image/vision_processor.h"
#include "models/lora.h"
#include "models/text_encoder.h"
#include "models/transformer.h"
#include "models/vae.h"
#include "pipelines/denoise.h"
#include "pipelines/placement.h"
#include "pipelines/engine.h"
#include "pipelines/lora_set.h"
#include "pipelines/pipeline_layered.h"
#include "pipelines/prompt_encoding.h"
#include "pipelines/scheduler.h"
#include "tokenizer/qwen2_tokenizer.h"

namespace qwen::pipelines {

// Validated, defaulted job parameters (sizes floored to 16, CFG decided).
struct ResolvedParams {
  int64_t width = 1024, height = 1024;  // 0 when the request left the size to the pipeline
  bool width_given = false, height_given = false;
  int steps = 50;
  double true_cfg_scale = 4.0;
  bool do_cfg = false;
  std::vector<std::string> prompts, negative_prompts;  // negatives: one per prompt when do_cfg
  int64_t images_per_prompt = 1;
  double strength = 0.6;
  int64_t max_sequence_length = 512;
  // Decompose (Qwen-Image-Layered): the layer count (0 for the other pipelines); width / height
  // are then the layered_size() of the input at the job's resolution.
  int layers = 0;
};
// Throws EngineError naming the bad field. Limits: sides 16..8192 px (after defaults), at most
// 64 MP, steps 1..1000, CFG scale >= 0 and finite, 1..64 images in all.
ResolvedParams resolve_params(const RunParams& params);

// Device/dtype strings of EngineOptions -> torch values. Throws EngineError.
torch::Device resolve_device(const std::string& device);
torch::Dtype resolve_dtype(const std::string& dtype, const torch::Device& device);
const char* dtype_name(torch::Dtype dtype);

// Hands the accelerator allocator's cached blocks back to the driver (after a failed load or an
// out-of-memory job; issue #13). No-op on the CPU.
void release_cached_memory();

// what() without c10's C++ backtrace.
std::string message_of(const std::exception& e);
// Runs f(); any non-EngineError exception becomes EngineError("<what>: <message>").
template <typename F>
auto with_context(const std::string& what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const EngineError&) {
    throw;
  } catch (const std::exception& e) {
    throw EngineError(what + ": " + message_of(e));
  }
}
// ProgressFn -> the denoising loop's per-step callback. With `preview`, the ProgressInfo.preview of
// the steps preview_due(step, total, preview_every) picks carries latent_preview() of the x0
// estimate of the first batch entry for an image of height x width pixels; the loop computes no
// x0 estimate (and copies nothing to the host) on the other steps.
StepCallback make_step_callback(const ProgressFn& progress, bool preview = false,
                                int64_t height = 0, int64_t width = 0, int preview_every = 1);
// A cheap RGB approximation of packed normalised latents [B, S, 64] (batch entry 0) of an image of
// height x width pixels, on the latent grid (1/8 of the pixel size), downscaled (area average) to
// at most `max_side` on the long side: a fixed linear map 16 latent channels -> RGB (the published
// Wan 2.1 latent-to-RGB factors, which apply to the normalised latent space Qwen-Image shares with
// Wan 2.1), then (v + 1) / 2 clamped to [0, 1]. No VAE decode: about 50 flops per latent pixel.
ImageU8 latent_preview(const torch::Tensor& packed, int64_t height, int64_t width,
                       int max_side = 256);
// Prompt embeddings in the compute dtype.
TextCondition to_condition(const PromptEmbeds& pe, torch::Dtype dtype);

class QwenEngine : public Engine {
 public:
  explicit QwenEngine(const EngineOptions& options);
  const ModelInfo& info() const override { return info_; }
  std::vector<ImageU8> run(const RunParams& params, const ProgressFn& progress) override;
  // The transformer's LoRA state now (tests): the applied (path, strength) list.
  const std::vector<std::pair<std::string, double>>& applied_loras() const {
    return loras_.applied();
  }

  // Throws EngineError when `params.pipeline` does not suit the model: Decompose on a model that
  // is not Qwen-Image-Layered, or another pipeline on a Layered model.
  void check_decompose_model(const RunParams& params) const;
  // Decompose's own checks (one input image, layers 2-10, resolution 640 or 1024, a non-empty
  // prompt) and p.width / p.height / p.layers for the job (engine_layered.cpp).
  void prepare_decompose(ResolvedParams& p, const RunParams& params) const;
  // Decompose (Qwen-Image-Layered, pipeline_layered.h; engine_layered.cpp), with the job's
  // intermediates in `trace` when given (tests).
  std::vector<ImageU8> run_decompose(const ResolvedParams& p, const RunParams& params,
                                     const ProgressFn& progress, LayeredTrace* trace = nullptr);

  models::QwenImageTransformer2DModel& transformer() { return transformer_; }
  models::AutoencoderKLQwenImage& vae() { return vae_; }
  const SchedulerConfig& scheduler_config() const { return scheduler_config_; }
  torch::Device device() const { return device_; }
  torch::Dtype dtype() const { return dtype_; }
  const plan::MemoryPlan& memory_plan() const { return memory_plan_; }
  // The offloaded text encoder's host weights (null unless the plan offloads it).
  const models::HostWeights* text_encoder_host() const { return text_encoder_host_.get(); }

 private:
  // run() after the LoRA set and the job's scheduler are in place.
  std::vector<ImageU8> run_job(const RunParams& params, const ProgressFn& progress);
  std::vector<ImageU8> run_generate(const ResolvedParams& p, int64_t seed,
                                    const ProgressFn& progress);
  std::vector<ImageU8> run_img2img(const ResolvedParams& p, const RunParams& params,
                                   const ProgressFn& progress);
  // Edit (one image) and Edit-Plus (one or more images; one prompt): engine_edit.cpp.
  std::vector<ImageU8> run_edit(const ResolvedParams& p, const RunParams& params,
                                const ProgressFn& progress);
  // The prompts (and, with CFG, the negative prompts) through the text-to-image template.
  std::pair<TextCondition, TextCondition> encode_t2i_conditions(const ResolvedParams& p);
  // Packed final latents -> RGB images.
  std::vector<ImageU8> decode(const torch::Tensor& latents, int64_t height, int64_t width);

  // Puts the job's LoRA set on the transformer (read once per file and kept; the set is only
  // re-applied when it changes; an empty set clears it). Returns what it says about Lightning
  // (LoraSet::prepare).
  models::LightningInfo prepare_loras(const RunParams& params);

  void log(const std::string& message) const;
  // Runs load() (which loads `component`) under a models::LoadMeter; records and logs the rate.
  template <typename F>
  auto load_component(const std::string& component, F&& load) -> decltype(load());

  EngineOptions options_;
  ModelInfo info_;
  torch::Device device_{torch::kCPU};
  torch::Dtype dtype_ = torch::kFloat32;
  SchedulerConfig scheduler_config_;
  models::QwenImageTransformer2DModel transformer_{nullptr};
  models::AutoencoderKLQwenImage vae_{nullptr};
  models::qwenvl::TextEncoder text_encoder_{nullptr};
  std::optional<tokenizer::Qwen2Tokenizer> tokenizer_;
  std::optional<VisionProcessorConfig> processor_;  // edit models only
  // The memory plan followed (issue #13) and the text encoder's host copy when it is offloaded.
  plan::MemoryPlan memory_plan_;
  std::unique_ptr<models::HostWeights> text_encoder_host_;
  // The error of an out-of-memory job: memory released, advice that matches the cause.
  EngineError out_of_memory(const ResolvedParams& p, const std::string& what);
  // The LoRA files read so far and the set on the transformer now.
  LoraSet loras_;
};

}  // namespace qwen::pipelines
