#include "pipelines/pipeline_layered.h"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "image/resample.h"
#include "pipelines/image_processing.h"
#include "pipelines/latents.h"

namespace qwen::pipelines {

LayeredSize layered_size(int image_width, int image_height, int resolution) {
  if (image_width <= 0 || image_height <= 0 || resolution <= 0)
    throw std::invalid_argument("layered_size: sizes must be positive");
  // calculate_dimensions (pipeline_qwenimage_layered.py), float64 as Python; round() of a float
  // rounds half to even, as nearbyint in the default rounding mode.
  const double ratio = static_cast<double>(image_width) / static_cast<double>(image_height);
  const double area = static_cast<double>(int64_t(resolution) * resolution);
  const double w = std::sqrt(area * ratio);
  const double h = w / ratio;
  LayeredSize s;
  s.width = static_cast<int64_t>(std::nearbyint(w / 32)) * 32;
  s.height = static_cast<int64_t>(std::nearbyint(h / 32)) * 32;
  if (s.width <= 0 || s.height <= 0)
    throw std::invalid_argument("an image of " + std::to_string(image_width) + "x" +
                                std::to_string(image_height) +
                                " pixels is too thin to decompose (its short side becomes 0 at "
                                "resolution " +
                                std::to_string(resolution) + "); crop it to a less extreme shape");
  return s;
}

torch::Tensor preprocess_rgba(const ImageU8& image, int64_t width, int64_t height) {
  validate_image(image, "input image", {1, 2, 3, 4});
  // The reference takes an RGBA PIL image; ours may come without alpha: made opaque (for an
  // opaque image the premultiplied resize is the plain one).
  ImageU8 rgba(image.width, image.height, 4);
  for (size_t i = 0, n = size_t(image.width) * image.height; i < n; ++i) {
    const uint8_t* src = image.pixels.data() + i * image.channels;
    uint8_t* dst = rgba.pixels.data() + i * 4;
    switch (image.channels) {
      case 1:
        dst[0] = dst[1] = dst[2] = src[0];
        dst[3] = 255;
        break;
      case 2:
        dst[0] = dst[1] = dst[2] = src[0];
        dst[3] = src[1];
        break;
      case 3:
        std::memcpy(dst, src, 3);
        dst[3] = 255;
        break;
      default:
        std::memcpy(dst, src, 4);
    }
  }
  // VaeImageProcessor.resize (PIL LANCZOS; RGBA is resized premultiplied), then preprocess (a
  // second resize to the same size is a copy), float32 u8 / 255, 2x - 1.
  const ImageU8 r =
      resize(rgba, static_cast<int>(width), static_cast<int>(height), ResampleFilter::Lanczos);
  torch::Tensor u8 = torch::from_blob(const_cast<uint8_t*>(r.pixels.data()), {r.height, r.width, 4},
                                      torch::kUInt8);
  torch::Tensor x = u8.to(torch::kFloat) / 255.0f;
  x = x.permute({2, 0, 1}).unsqueeze(0).contiguous();
  return 2.0 * x - 1.0;
}

std::vector<float> layered_sigmas(int steps) {
  if (steps < 1) throw std::invalid_argument("steps must be at least 1");
  // np.linspace(1.0, 0, N + 1): y[i] = i * step + start with step = (stop - start) / N (float64);
  // [:-1] drops the endpoint.
  std::vector<float> s(static_cast<size_t>(steps));
  const double step = (0.0 - 1.0) / steps;
  for (int i = 0; i < steps; ++i) s[i] = static_cast<float>(i * step + 1.0);
  return s;
}

double layered_mu(int64_t condition_tokens) {
  const double base_seqlen = 256.0 * 256.0 / 16.0 / 16.0;
  return std::pow(static_cast<double>(condition_tokens) / base_seqlen, 0.5);
}

namespace {

// [B, F, 16, h, w] -> [B, F * (h/2) * (w/2), 64] (QwenImageLayeredPipeline._pack_latents: frame
// major, then the usual 2x2 packing).
torch::Tensor pack_frames(const torch::Tensor& x) {
  const int64_t b = x.size(0), f = x.size(1);
  auto packed = pack_latents(x.reshape({b * f, x.size(2), x.size(3), x.size(4)}));
  return packed.reshape({b, f * packed.size(1), packed.size(2)});
}

}  // namespace

torch::Tensor layered_latents(models::QwenImageTransformer2DModelImpl& transformer,
                              const SchedulerConfig& scheduler_config, const LayeredJob& job,
                              const torch::Tensor& condition_latents, const TextCondition& cond,
                              const TextCondition& uncond, at::Generator& gen, torch::Dtype dtype,
                              const torch::Device& device, const StepCallback& on_step,
                              DenoiseTrace* trace, torch::Tensor* initial_latents) {
  if (job.height < 32 || job.width < 32 || job.height % 32 != 0 || job.width % 32 != 0)
    throw std::invalid_argument("layered size " + std::to_string(job.width) + "x" +
                                std::to_string(job.height) + " must be multiples of 32 pixels");
  if (job.layers < 1) throw std::invalid_argument("layers must be at least 1");
  if (job.steps < 1) throw std::invalid_argument("steps must be at least 1");
  if (job.batch < 1) throw std::invalid_argument("batch must be at least 1");
  const int64_t h = latent_size(job.height), w = latent_size(job.width);
  const int64_t frame_tokens = (h / 2) * (w / 2);
  if (!condition_latents.defined() || condition_latents.dim() != 3 ||
      condition_latents.size(1) != frame_tokens)
    throw std::invalid_argument("layered condition latents must be packed [1, " +
                                std::to_string(frame_tokens) + ", 64]");

  // 4. Noise for the composite + every layer, then the condition (repeated to the batch).
  auto noise = randn(gen, {job.batch, job.layers + 1, kLatentChannels, h, w}, dtype, device);
  auto latents = pack_frames(noise);
  if (initial_latents) *initial_latents = latents;
  auto condition = condition_latents.to(device, dtype);
  if (condition.size(0) != job.batch) condition = condition.repeat({job.batch, 1, 1});
  std::vector<models::ImageShape> img_shapes(static_cast<size_t>(job.layers + 1),
                                             models::ImageShape{1, h / 2, w / 2});
  img_shapes.push_back({1, h / 2, w / 2});

  // 5. Timesteps.
  FlowMatchEulerScheduler scheduler(scheduler_config);
  scheduler.set_timesteps_from_sigmas(layered_sigmas(job.steps), layered_mu(condition.size(1)));
  scheduler.set_begin_index(0);

  // 6. Loop.
  DenoiseRequest r;
  r.latents = latents;
  r.img_shapes = std::move(img_shapes);
  r.condition_latents = condition;
  r.cond = cond;
  r.uncond = uncond;
  r.true_cfg_scale = job.true_cfg_scale;
  r.cfg_normalize = job.cfg_normalize;
  if (transformer.config().use_additional_t_cond)
    r.additional_t_cond =
        torch::zeros({job.batch}, torch::TensorOptions().dtype(torch::kInt64).device(device));
  return denoise(transformer, scheduler, r, on_step, trace);
}

std::vector<ImageU8> decode_layers(models::AutoencoderKLQwenImageImpl& vae,
                                   const torch::Tensor& latents, const LayeredJob& job) {
  torch::NoGradGuard ng;
  const int64_t frames = job.layers + 1;
  const int64_t b = latents.size(0);
  if (latents.dim() != 3 || latents.size(1) % frames != 0)
    throw std::invalid_argument("decode_layers: latents do not hold " + std::to_string(frames) +
                                " frames");
  // _unpack_latents -> [B, F, 16, 1, h, w]; to the VAE dtype; latents / (1 / std) + mean.
  auto z = unpack_latents(latents.reshape({b * frames, latents.size(1) / frames, latents.size(2)}),
                          job.height, job.width)
               .to(vae.dtype());
  z = models::denormalize_latents(z, vae.config());
  z = z.reshape({b, frames, z.size(1), 1, z.size(3), z.size(4)});
  std::vector<ImageU8> out;
  for (int64_t i = 0; i < b; ++i) {
    for (int64_t f = 1; f < frames; ++f) {  // frame 0 (the composite) is dropped
      auto img = vae.decode(z[i][f].unsqueeze(0)).select(2, 0);  // [1, 4, H, W]
      if (img.size(1) != 4)
        throw std::invalid_argument("the VAE decodes " + std::to_string(img.size(1)) +
                                    " channels, not the 4 (RGBA) of a Layered model");
      // VaeImageProcessor.postprocess: (x / 2 + 0.5).clamp(0, 1) in x's dtype, float32,
      // round(x * 255) (half to even) -> uint8.
      auto u8 = (denormalize_image(img).to(torch::kCPU, torch::kFloat) * 255.0f)
                    .round()
                    .clamp(0, 255)
                    .to(torch::kUInt8)
                    .squeeze(0)
                    .permute({1, 2, 0})
                    .contiguous();
      ImageU8 o(static_cast<int>(u8.size(1)), static_cast<int>(u8.size(0)), 4);
      std::memcpy(o.pixels.data(), u8.data_ptr<uint8_t>(), o.pixels.size());
      out.push_back(std::move(o));
    }
  }
  return out;
}

}  // namespace qwen::pipelines
