#include "pipelines/pipeline_t2i.h"

#include <stdexcept>
#include <string>

#include "pipelines/latents.h"

namespace qwen::pipelines {

namespace {

void check_job(const LatentJob& job) {
  if (job.height < 16 || job.width < 16 || job.height % 16 != 0 || job.width % 16 != 0)
    throw std::invalid_argument("image size " + std::to_string(job.width) + "x" +
                                std::to_string(job.height) +
                                " must be positive multiples of 16 pixels");
  if (job.steps < 1) throw std::invalid_argument("steps must be at least 1");
  if (job.batch < 1) throw std::invalid_argument("batch must be at least 1");
}

std::vector<models::ImageShape> target_shape(const LatentJob& job) {
  return {{1, job.height / 16, job.width / 16}};
}

}  // namespace

torch::Tensor t2i_latents(models::QwenImageTransformer2DModelImpl& transformer,
                          const SchedulerConfig& scheduler_config, const LatentJob& job,
                          const TextCondition& cond, const TextCondition& uncond,
                          at::Generator& gen, torch::Dtype dtype, const torch::Device& device,
                          const StepCallback& on_step, DenoiseTrace* trace,
                          torch::Tensor* initial_latents) {
  check_job(job);
  const int64_t h = latent_size(job.height), w = latent_size(job.width);
  auto noise = randn(gen, {job.batch, 1, kLatentChannels, h, w}, dtype, device);
  auto latents = pack_latents(noise);
  if (initial_latents) *initial_latents = latents;

  FlowMatchEulerScheduler scheduler(scheduler_config);
  scheduler.set_timesteps(job.steps, calculate_shift(latents.size(1), scheduler_config));
  scheduler.set_begin_index(0);

  DenoiseRequest r;
  r.latents = latents;
  r.img_shapes = target_shape(job);
  r.cond = cond;
  r.uncond = uncond;
  r.true_cfg_scale = job.true_cfg_scale;
  return denoise(transformer, scheduler, r, on_step, trace);
}

torch::Tensor img2img_latents(models::QwenImageTransformer2DModelImpl& transformer,
                              const SchedulerConfig& scheduler_config, const LatentJob& job,
                              double strength, const torch::Tensor& image_latents,
                              const torch::Tensor& mask_latents, const TextCondition& cond,
                              const TextCondition& uncond, at::Generator& gen, torch::Dtype dtype,
                              const torch::Device& device, const StepCallback& on_step,
                              DenoiseTrace* trace, torch::Tensor* initial_latents) {
  check_job(job);
  if (!(strength > 0.0 && strength <= 1.0))
    throw std::invalid_argument("strength must be in (0, 1], got " + std::to_string(strength));
  const int64_t h = latent_size(job.height), w = latent_size(job.width);
  const int64_t seq = (h / 2) * (w / 2);

  FlowMatchEulerScheduler scheduler(scheduler_config);
  scheduler.set_timesteps(job.steps, calculate_shift(seq, scheduler_config));
  const int t_start = start_index_for_strength(job.steps, strength);
  if (job.steps - t_start < 1)
    throw std::invalid_argument("strength " + std::to_string(strength) + " with " +
                                std::to_string(job.steps) + " steps leaves no step to run");
  scheduler.set_begin_index(t_start);

  // [B, 16, 1, h, w] -> [B, 1, 16, h, w] (same memory order for one frame), repeated to the batch.
  auto img = image_latents.to(device, dtype);
  if (img.size(0) != job.batch) {
    if (job.batch % img.size(0) != 0)
      throw std::invalid_argument("cannot repeat the image latents to the batch size");
    img = img.repeat({job.batch / img.size(0), 1, 1, 1, 1});
  }
  img = img.transpose(1, 2);
  auto noise = randn(gen, {job.batch, 1, kLatentChannels, h, w}, dtype, device);
  auto packed_image = pack_latents(img);
  auto packed_noise = pack_latents(noise);
  auto latents = scheduler.scale_noise(packed_image, packed_noise);
  if (initial_latents) *initial_latents = latents;

  DenoiseRequest r;
  r.latents = latents;
  r.img_shapes = {{1, job.height / 16, job.width / 16}};
  r.cond = cond;
  r.uncond = uncond;
  r.true_cfg_scale = job.true_cfg_scale;
  if (mask_latents.defined()) {
    r.inpaint_mask = mask_latents.to(device, dtype);
    r.inpaint_image_latents = packed_image;
    r.inpaint_noise = packed_noise;
  }
  return denoise(transformer, scheduler, r, on_step, trace);
}

}  // namespace qwen::pipelines
