// QwenImageEditPipeline / QwenImageEditPlusPipeline latent stages (spec §5.4, §5.5): noise for the
// target, condition-image latents appended along the sequence, mu from the target tokens only,
// predictions sliced to the target tokens.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "models/transformer.h"
#include "models/vae.h"
#include "pipelines/denoise.h"
#include "pipelines/pipeline_t2i.h"

namespace qwen::pipelines {

// One condition image's VAE latents (posterior mean, (z - mean) / std), packed: [1, S_c, 64], with
// its segment shape (1, h/16, w/16).
struct ConditionLatents {
  torch::Tensor packed;
  models::ImageShape shape{1, 0, 0};
};

// `pixels`: [1, 3, H, W] in [-1, 1] (preprocess_image output), H and W multiples of 16.
ConditionLatents encode_condition(models::AutoencoderKLQwenImageImpl& vae,
                                  const torch::Tensor& pixels);

// Draws the target noise from `gen`, runs the loop with the condition latents (repeated to the
// batch) appended, returns the final packed target latents.
torch::Tensor edit_latents(models::QwenImageTransformer2DModelImpl& transformer,
                           const SchedulerConfig& scheduler_config, const LatentJob& job,
                           const std::vector<ConditionLatents>& conditions,
                           const TextCondition& cond, const TextCondition& uncond,
                           at::Generator& gen, torch::Dtype dtype, const torch::Device& device,
                           const StepCallback& on_step = {}, DenoiseTrace* trace = nullptr,
                           torch::Tensor* initial_latents = nullptr);

// QwenImageEditInpaintPipeline latent stage (spec §5.6): `image_latents` [1, 16, 1, h, w] are the
// normalised posterior SAMPLE of the input (drawn by the caller from `gen` first); they are both
// the condition appended along the sequence and the blend reference. Noise is drawn next from
// `gen`; x0 = scale_noise(image, sigma[t_start], noise); every step blends with `mask_latents`
// (packed [batch, S, 64] of 0/1, 1 = repaint) exactly as inpaint (§5.3). mu from the target tokens
// only.
torch::Tensor edit_inpaint_latents(models::QwenImageTransformer2DModelImpl& transformer,
                                   const SchedulerConfig& scheduler_config, const LatentJob& job,
                                   double strength, const torch::Tensor& image_latents,
                                   const torch::Tensor& mask_latents, const TextCondition& cond,
                                   const TextCondition& uncond, at::Generator& gen,
                                   torch::Dtype dtype, const torch::Device& device,
                                   const StepCallback& on_step = {}, DenoiseTrace* trace = nullptr);

}  // namespace qwen::pipelines
