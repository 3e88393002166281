// QwenImagePipeline / QwenImageImg2ImgPipeline / QwenImageInpaintPipeline latent stages
// (spec §5.1-§5.3), separated from text encoding and VAE decoding so that the loop can be checked
// against the fixtures with stored prompt embeddings.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>

#include "models/transformer.h"
#include "pipelines/denoise.h"
#include "pipelines/scheduler.h"

namespace qwen::pipelines {

struct LatentJob {
  int64_t height = 1024;  // pixels, already floored to multiples of 16
  int64_t width = 1024;
  int steps = 50;
  double true_cfg_scale = 4.0;  // used only when `uncond` is present
  int64_t batch = 1;            // prompts x images per prompt (rows of the text embeddings)
};

// Text-to-image: draws the noise [batch, 1, 16, h, w] from `gen` in `dtype` on the CPU, packs it,
// schedules with mu from the image token count and denoises. `initial_latents` (optional output)
// receives the packed noise. Returns the final packed latents.
torch::Tensor t2i_latents(models::QwenImageTransformer2DModelImpl& transformer,
                          const SchedulerConfig& scheduler_config, const LatentJob& job,
                          const TextCondition& cond, const TextCondition& uncond,
                          at::Generator& gen, torch::Dtype dtype, const torch::Device& device,
                          const StepCallback& on_step = {}, DenoiseTrace* trace = nullptr,
                          torch::Tensor* initial_latents = nullptr);

// Img2img / inpaint from normalised image latents [batch, 16, 1, h, w] (posterior sample drawn by
// the caller from `gen` first, as the reference does). `strength` in (0, 1]. With `mask_latents`
// (packed [batch, S, 64] of 0/1, 1 = repaint) the inpaint blending runs after every step.
torch::Tensor img2img_latents(models::QwenImageTransformer2DModelImpl& transformer,
                              const SchedulerConfig& scheduler_config, const LatentJob& job,
                              double strength, const torch::Tensor& image_latents,
                              const torch::Tensor& mask_latents, const TextCondition& cond,
                              const TextCondition& uncond, at::Generator& gen, torch::Dtype dtype,
                              const torch::Device& device, const StepCallback& on_step = {},
                              DenoiseTrace* trace = nullptr,
                              torch::Tensor* initial_latents = nullptr);

}  // namespace qwen::pipelines
