#include "pipelines/pipeline_edit.h"

#include <stdexcept>

#include "pipelines/latents.h"

namespace qwen::pipelines {

ConditionLatents encode_condition(models::AutoencoderKLQwenImageImpl& vae,
                                  const torch::Tensor& pixels) {
  torch::NoGradGuard ng;
  auto post = vae.encode(pixels.unsqueeze(2).to(vae.device(), vae.dtype()));
  auto z = models::normalize_latents_mode(post.mode(), vae.config());  // [1, 16, 1, h, w]
  ConditionLatents c;
  c.shape = {1, z.size(3) / 2, z.size(4) / 2};
  c.packed = pack_latents(z);
  return c;
}

torch::Tensor edit_latents(models::QwenImageTransformer2DModelImpl& transformer,
                           const SchedulerConfig& scheduler_config, const LatentJob& job,
                           const std::vector<ConditionLatents>& conditions,
                           const TextCondition& cond, const TextCondition& uncond,
                           at::Generator& gen, torch::Dtype dtype, const torch::Device& device,
                           const StepCallback& on_step, DenoiseTrace* trace,
                           torch::Tensor* initial_latents) {
  if (job.height < 16 || job.width < 16 || job.height % 16 || job.width % 16)
    throw std::invalid_argument("edit: output size must be positive multiples of 16 pixels");
  if (job.steps < 1) throw std::invalid_argument("steps must be at least 1");
  if (conditions.empty()) throw std::invalid_argument("edit: no condition image");
  const int64_t h = latent_size(job.height), w = latent_size(job.width);
  std::vector<models::ImageShape> shapes{{1, job.height / 16, job.width / 16}};
  std::vector<torch::Tensor> cond_parts;
  for (const auto& c : conditions) {
    shapes.push_back(c.shape);
    cond_parts.push_back(c.packed.to(device, dtype).repeat({job.batch, 1, 1}));
  }
  auto noise = randn(gen, {job.batch, 1, kLatentChannels, h, w}, dtype, device);
  auto latents = pack_latents(noise);
  if (initial_latents) *initial_latents = latents;

  FlowMatchEulerScheduler scheduler(scheduler_config);
  scheduler.set_timesteps(job.steps, calculate_shift(latents.size(1), scheduler_config));
  scheduler.set_begin_index(0);

  DenoiseRequest r;
  r.latents = latents;
  r.img_shapes = shapes;
  r.condition_latents = torch::cat(cond_parts, 1);
  r.cond = cond;
  r.uncond = uncond;
  r.true_cfg_scale = job.true_cfg_scale;
  return denoise(transformer, scheduler, r, on_step, trace);
}

torch::Tensor edit_inpaint_latents(models::QwenImageTransformer2DModelImpl& transformer,
                                   const SchedulerConfig& scheduler_config, const LatentJob& job,
                                   double strength, const torch::Tensor& image_latents,
                                   const torch::Tensor& mask_latents, const TextCondition& cond,
                                   const TextCondition& uncond, at::Generator& gen,
                                   torch::Dtype dtype, const torch::Device& device,
                                   const StepCallback& on_step, DenoiseTrace* trace) {
  if (job.height < 16 || job.width < 16 || job.height % 16 || job.width % 16)
    throw std::invalid_argument(
        "edit-inpaint: output size must be positive multiples of 16 pixels");
  if (job.steps < 1) throw std::invalid_argument("steps must be at least 1");
  if (!(strength > 0.0 && strength <= 1.0))
    throw std::invalid_argument("strength must be in (0, 1], got " + std::to_string(strength));
  if (!mask_latents.defined()) throw std::invalid_argument("edit-inpaint: no mask");
  const int64_t h = latent_size(job.height), w = latent_size(job.width);
  if (image_latents.size(0) != 1 || image_latents.size(3) != h || image_latents.size(4) != w)
    throw std::invalid_argument("edit-inpaint: image latents do not match the output size");

  FlowMatchEulerScheduler scheduler(scheduler_config);
  scheduler.set_timesteps(job.steps, calculate_shift((h / 2) * (w / 2), scheduler_config));
  const int t_start = start_index_for_strength(job.steps, strength);
  if (job.steps - t_start < 1)
    throw std::invalid_argument("strength " + std::to_string(strength) + " with " +
                                std::to_string(job.steps) + " steps leaves no step to run");
  scheduler.set_begin_index(t_start);

  // [1, 16, 1, h, w] packs like [1, 1, 16, h, w] (one frame); repeated to the batch.
  auto packed_image = pack_latents(image_latents.to(device, dtype)).repeat({job.batch, 1, 1});
  auto noise = randn(gen, {job.batch, 1, kLatentChannels, h, w}, dtype, device);
  auto packed_noise = pack_latents(noise);

  DenoiseRequest r;
  r.latents = scheduler.scale_noise(packed_image, packed_noise);
  r.img_shapes = {{1, job.height / 16, job.width / 16}, {1, job.height / 16, job.width / 16}};
  r.condition_latents = packed_image;
  r.cond = cond;
  r.uncond = uncond;
  r.true_cfg_scale = job.true_cfg_scale;
  r.inpaint_mask = mask_latents.to(device, dtype);
  r.inpaint_image_latents = packed_image;
  r.inpaint_noise = packed_noise;
  return denoise(transformer, scheduler, r, on_step, trace);
}

}  // namespace qwen::pipelines
