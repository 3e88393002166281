#include "pipelines/pipeline_qwenimage21.h"

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "pipelines/engine.h"
#include "pipelines/latents.h"
#include "pipelines/pipeline_layered.h"

namespace qwen::pipelines::qwen21 {

Size21 calculate_dimensions(int image_width, int image_height, int resolution) {
  // Same function as the Layered / Edit pipelines' calculate_dimensions (Python round()).
  const LayeredSize s = layered_size(image_width, image_height, resolution);
  return {s.width, s.height};
}

Size21 output_size(int width, int height, const std::vector<ImageU8>& references, int resolution) {
  if (resolution <= 0) throw std::invalid_argument("output_resolution must be positive");
  Size21 s{width, height};
  if (!references.empty()) {
    // calculate_dimensions(output_resolution^2, image[-1].size[0] / image[-1].size[1]).
    const Size21 c =
        calculate_dimensions(references.back().width, references.back().height, resolution);
    if (s.height <= 0) s.height = c.height;
    if (s.width <= 0) s.width = c.width;
  }
  if (s.height <= 0) s.height = resolution;
  if (s.width <= 0) s.width = resolution;
  // multiple_of = vae_scale_factor * 2: floored.
  constexpr int64_t m = kVaeScale * 2;
  s.width = s.width / m * m;
  s.height = s.height / m * m;
  if (s.width <= 0 || s.height <= 0)
    throw std::invalid_argument(
        "the output size " + std::to_string(width) + "x" + std::to_string(height) +
        " is below 32 pixels on a side; Qwen-Image-2.1 needs at least 32x32");
  return s;
}

Reference prepare_reference(const ImageU8& image, int resolution) {
  // img.convert("RGBA"), calculate_dimensions, image_processor.resize (PIL LANCZOS, RGBA resized
  // premultiplied) and preprocess: preprocess_rgba (pipeline_layered.h) is exactly that.
  const Size21 s = calculate_dimensions(image.width, image.height, resolution);
  return prepare_reference(image, s.width, s.height);
}

Reference prepare_reference(const ImageU8& image, int64_t width, int64_t height) {
  if (width <= 0 || height <= 0 || width % kVaeScale != 0 || height % kVaeScale != 0)
    throw std::invalid_argument("reference size " + std::to_string(width) + "x" +
                                std::to_string(height) + " is not a positive multiple of 16");
  const Size21 s{width, height};
  Reference r;
  r.width = s.width;
  r.height = s.height;
  auto x = preprocess_rgba(image, s.width, s.height);  // [1, 4, H, W] float32 in [-1, 1]
  r.vae_input = x.unsqueeze(2);
  // The same 8-bit pixels for the text encoder: (x + 1) / 2 * 255 recovers them exactly (the
  // preprocess is v / 255 * 2 - 1 of 8-bit values).
  auto u8 = ((x[0] + 1.0) * 127.5)
                .round()
                .clamp(0, 255)
                .to(torch::kUInt8)
                .permute({1, 2, 0})
                .contiguous();
  r.resized = ImageU8(static_cast<int>(s.width), static_cast<int>(s.height), 4);
  std::memcpy(r.resized.pixels.data(), u8.data_ptr<uint8_t>(), r.resized.pixels.size());
  return r;
}

namespace {
// _pack_latents: [B, C, 1, h, w] -> [B, h*w, C] (2.1 takes latents unpatched).
torch::Tensor pack21(const torch::Tensor& z) {
  const int64_t b = z.size(0), c = z.size(1), h = z.size(-2), w = z.size(-1);
  return z.reshape({b, c, h * w}).transpose(1, 2);
}
}  // namespace

torch::Tensor encode_reference(models::AutoencoderKLQwenImage21Impl& vae, const Reference& ref,
                               torch::Dtype dtype, const torch::Device& device) {
  torch::NoGradGuard ng;
  // prepare_latents: image.to(device, dtype); _encode_vae_image: argmax (posterior mode), then
  // (z - mean) / std.
  auto z = vae.encode(ref.vae_input.to(device, dtype)).mode();
  z = models::normalize_latents21(z, vae.config());
  return pack21(z).to(dtype);
}

std::vector<float> input_sigmas(int steps, const std::optional<std::vector<float>>& sample_sigmas) {
  if (sample_sigmas) return *sample_sigmas;
  if (steps < 1) throw std::invalid_argument("the number of steps must be at least 1");
  // np.linspace(1.0, 1 / N, N) (float64), cast to float32 by the scheduler.
  std::vector<float> s(static_cast<size_t>(steps));
  const double start = 1.0, stop = 1.0 / steps;
  if (steps == 1) {
    s[0] = 1.0f;
  } else {
    const double step = (stop - start) / (steps - 1);
    for (int i = 0; i < steps; ++i) s[i] = static_cast<float>(i * step + start);
    s.back() = static_cast<float>(stop);
  }
  return s;
}

std::optional<std::vector<float>> sample_sigmas_from_index(const std::string& json_text,
                                                           const std::string& label) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const std::exception& e) {
    throw std::runtime_error(label + ": not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object() || !j.contains("sample_sigmas") || j["sample_sigmas"].is_null())
    return std::nullopt;
  const auto& v = j["sample_sigmas"];
  if (!v.is_array() || v.empty())
    throw std::runtime_error(label + ": sample_sigmas must be a non-empty list of numbers");
  std::vector<float> out;
  for (const auto& e : v) {
    if (!e.is_number())
      throw std::runtime_error(label + ": sample_sigmas holds a value that is not a number (" +
                               e.dump() + ")");
    const double d = e.get<double>();
    if (!(d > 0.0 && d <= 1.0))
      throw std::runtime_error(label + ": sample_sigmas value " + e.dump() + " is outside (0, 1]");
    out.push_back(static_cast<float>(d));
  }
  return out;
}

torch::Tensor qwen21_denoise(models::QwenImage21Transformer2DModelImpl& transformer,
                             const SchedulerConfig& scheduler_config, const Job21& job,
                             const std::vector<torch::Tensor>& reference_latents,
                             const std::vector<Reference>& references, const Condition21& cond,
                             const Condition21* uncond, at::Generator& gen, torch::Dtype dtype,
                             const torch::Device& device, const StepCallback& on_step,
                             Trace21* trace) {
  torch::NoGradGuard ng;
  if (reference_latents.size() != references.size())
    throw std::invalid_argument("qwen21_denoise: one latent per reference is needed");
  const int64_t h = 2 * (job.height / (kVaeScale * 2)), w = 2 * (job.width / (kVaeScale * 2));
  const int64_t channels = transformer.config().in_channels;
  // 3. prepare_latents: randn((B, 1, C, h, w)) in the model dtype from the CPU generator, packed.
  auto noise = randn(gen, {job.batch, 1, channels, h, w}, dtype, device);
  torch::Tensor latents = noise.reshape({job.batch, channels, h * w}).transpose(1, 2);
  if (trace) trace->initial_latents = latents.to(torch::kCPU, torch::kFloat32).clone();
  const int64_t target = h * w;

  torch::Tensor cond_images;  // [B, S_c, C]: every reference's latents, repeated over the batch
  if (!reference_latents.empty()) {
    cond_images = torch::cat(reference_latents, 1);
    if (cond_images.size(0) != job.batch) cond_images = cond_images.expand({job.batch, -1, -1});
  }
  // img_shapes: references then the target, (1, h, w) in latent tokens.
  std::vector<models::qwen21::Shape> img_shapes;
  for (const auto& r : references)
    img_shapes.push_back({1, r.height / kVaeScale, r.width / kVaeScale});
  img_shapes.push_back({1, h, w});

  // append_target_slots: one slot per 2x2 group of target latents.
  auto with_target_slots = [&](std::vector<bool> m) {
    m.insert(m.end(), static_cast<size_t>(target / 4), true);
    return m;
  };
  const std::vector<bool> img_mask = with_target_slots(cond.img_mask);
  const std::vector<bool> neg_img_mask =
      uncond ? with_target_slots(uncond->img_mask) : std::vector<bool>{};

  // 4. timesteps.
  FlowMatchEulerScheduler scheduler(scheduler_config);
  const double mu = calculate_shift(target, scheduler_config);
  scheduler.set_timesteps_from_sigmas(input_sigmas(job.steps, job.sample_sigmas), mu);
  scheduler.set_begin_index(0);
  if (trace) trace->sigmas = scheduler.sigmas();

  // KV caches: only with causal_condition (the reference's cache_enabled).
  const bool cache_enabled = job.kv_cache && transformer.config().causal_condition;
  models::Transformer21KVCache cond_cache, neg_cache;

  // 5. the loop.
  const auto& timesteps = scheduler.timesteps();
  const int total = static_cast<int>(timesteps.size());
  // Streamed blocks (issue #13, models/block_stream.h): the first streamed block of every pass
  // is copied in during the previous pass / now; an unused copy goes when the loop ends early.
  models::BlockPasses passes(transformer.block_hooks(), int64_t(total) * (uncond ? 2 : 1));
  for (int i = 0; i < total; ++i) {
    auto input = cond_images.defined() ? torch::cat({cond_images, latents}, 1) : latents;
    // t.expand(B).to(latents.dtype) / 1000, in the latents' dtype.
    auto timestep =
        torch::full({job.batch}, timesteps[i], torch::dtype(torch::kFloat32)).to(device, dtype) /
        1000;
    if (trace)
      trace->denoise.transformer_timesteps.push_back(timestep.to(torch::kCPU, torch::kFloat32));
    auto noise_pred = transformer.forward(input, cond.embeds, cond.mask, timestep, img_shapes,
                                          img_mask, cache_enabled ? &cond_cache : nullptr);
    if (trace) trace->denoise.noise_preds.push_back(noise_pred.to(torch::kCPU, torch::kFloat32));
    if (uncond) {
      auto neg = transformer.forward(input, uncond->embeds, uncond->mask, timestep, img_shapes,
                                     neg_img_mask, cache_enabled ? &neg_cache : nullptr);
      if (trace) trace->denoise.noise_preds.push_back(neg.to(torch::kCPU, torch::kFloat32));
      // neg + s * (cond - neg): no renormalisation in 2.1.
      noise_pred = neg + job.true_cfg_scale * (noise_pred - neg);
    }
    // The flow-matching clean estimate x0 = x_t - sigma_t * v, on the steps that carry a preview
    // (as the 20B loop, denoise.cpp); the engine maps 2.1's 64 channels to RGB (Qwen21Engine).
    torch::Tensor x0;
    if (on_step && on_step.want_x0(i + 1, total))
      x0 = latents.to(torch::kFloat32) -
           scheduler.sigmas()[static_cast<size_t>(i)] * noise_pred.to(torch::kFloat32);
    latents = scheduler.step(noise_pred, latents);
    if (trace) trace->denoise.step_latents.push_back(latents.to(torch::kCPU, torch::kFloat32));
    if (on_step && !on_step(i + 1, total, latents, x0)) throw CancelledError();
  }
  if (trace) trace->final_latents = latents.to(torch::kCPU, torch::kFloat32);
  return latents;
}

std::vector<ImageU8> decode21(models::AutoencoderKLQwenImage21Impl& vae,
                              const torch::Tensor& latents, int64_t width, int64_t height) {
  torch::NoGradGuard ng;
  const int64_t h = 2 * (height / (kVaeScale * 2)), w = 2 * (width / (kVaeScale * 2));
  const int64_t b = latents.size(0), c = latents.size(2);
  // _unpack_latents, .to(vae.dtype), z * std + mean, decode, [:, :, 0].
  auto z = latents.transpose(1, 2).reshape({b, c, 1, h, w}).to(vae.dtype());
  z = models::denormalize_latents21(z, vae.config());
  auto img = vae.decode(z).select(2, 0);  // [B, 4, H, W] in [-1, 1]
  // postprocess: (x / 2 + 0.5).clamp(0, 1), then numpy (float32) * 255, round.
  auto u8 = ((img.to(torch::kCPU, torch::kFloat32) / 2 + 0.5).clamp(0, 1) * 255.0f)
                .round()
                .clamp(0, 255)
                .to(torch::kUInt8)
                .permute({0, 2, 3, 1})
                .contiguous();
  std::vector<ImageU8> out;
  const int channels = static_cast<int>(u8.size(3));
  for (int64_t i = 0; i < b; ++i) {
    ImageU8 im(static_cast<int>(u8.size(2)), static_cast<int>(u8.size(1)), channels);
    std::memcpy(im.pixels.data(), u8[i].data_ptr<uint8_t>(), im.pixels.size());
    out.push_back(std::move(im));
  }
  return out;
}

}  // namespace qwen::pipelines::qwen21
