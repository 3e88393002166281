// QwenImage21Pipeline (diffusers 0.42.1 pipelines/qwenimage21/pipeline_qwenimage21.py; issue #15):
// text to image and edit with 1-10 reference images on one model, RGBA results. The stages,
// numbered as the reference's __call__:
//   0. sizes: with references, calculate_dimensions(output_resolution^2, last reference's w / h);
//      else output_resolution^2; given width / height win; both floored to multiples of 32.
//   1. references: RGBA, calculate_dimensions(output_resolution^2, w / h), PIL LANCZOS
//   (premultiplied
//      alpha); the same resized image feeds the VAE (4 channels) and, pasted over white, the text
//      encoder (engine side: prompt_encoding_qwen21.h).
//   2. prompt encoding (engine side), the negative prompt with the same references (true CFG).
//   3. latents: noise randn([B, 1, 64, H/16, W/16]) from the CPU generator, packed [B, h*w, 64];
//      reference latents = VAE posterior mode, (z - mean) / std, packed the same way.
//   4. timesteps: sigmas linspace(1, 1/N, N) or the model's Turbo `sample_sigmas` (their count sets
//      N; the requested step count is then ignored, as the reference ignores
//      num_inference_steps), mu = calculate_shift(target tokens), exponential shift and the
//      shift_terminal stretch (the model's scheduler config).
//   5. loop (qwen21_denoise): [references, target] through the transformer with the KV cache
//      (extract at step 0, cached after) unless disabled; true CFG neg + s (cond - neg) with no
//      renormalisation; Euler steps.
//   6. decode: unpack, denormalise, VAE decode -> RGBA (4 channels).
//
// The 20B loop (pipelines/denoise.h) does not fit 2.1's transformer: it takes the 20B model type,
// 2x2-packed 16-channel latents, per-stream modulation and no KV cache or img_mask, so the 2.1
// loop is here.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "image/image.h"
#include "models/transformer21.h"
#include "models/vae21.h"
#include "pipelines/denoise.h"
#include "pipelines/scheduler.h"

namespace qwen::pipelines::qwen21 {

inline constexpr int kMaxReferences = 10;
// QwenImage21Pipeline.__call__'s num_inference_steps default (RunParams.steps 0).
inline constexpr int kDefaultSteps = 40;
inline constexpr int kVaeScale = 16;

struct Size21 {
  int64_t width = 0, height = 0;
};

// calculate_dimensions(resolution^2, width / height): sides rounded half-to-even to multiples of
// 32. Throws std::invalid_argument for a side that would be 0.
Size21 calculate_dimensions(int image_width, int image_height, int resolution);

// Stage 0: the output size. `width` / `height` 0 = not given. With references the default is the
// last reference's calculate_dimensions; without, resolution x resolution. Floored to 32; throws
// std::invalid_argument when a side floors to 0.
Size21 output_size(int width, int height, const std::vector<ImageU8>& references, int resolution);

// Stage 1 for one reference: the image made RGBA (gray / RGB opaque) and resized with PIL LANCZOS
// (premultiplied) to its calculate_dimensions size; `vae_input` is [1, 4, 1, H, W] float32 in
// [-1, 1] of the same pixels.
struct Reference {
  ImageU8 resized;  // RGBA
  torch::Tensor vae_input;
  int64_t width = 0, height = 0;
};
Reference prepare_reference(const ImageU8& image, int resolution);
// The same resized to an explicit size (multiples of 16): Exact geometry passes its canvas.
Reference prepare_reference(const ImageU8& image, int64_t width, int64_t height);

// Stage 3: the reference's normalised posterior mode, packed [1, h*w, 64] (h, w = size / 16).
torch::Tensor encode_reference(models::AutoencoderKLQwenImage21Impl& vae, const Reference& ref,
                               torch::Dtype dtype, const torch::Device& device);

// Stage 4: the input sigmas (float32): `sample_sigmas` when the model has them, else
// linspace(1, 1/N, N) in float64 cast to float32.
std::vector<float> input_sigmas(int steps, const std::optional<std::vector<float>>& sample_sigmas);

// The model's `sample_sigmas` from model_index.json text (null / absent: nullopt). Throws
// std::runtime_error naming `label` when it is not a non-empty list of numbers in (0, 1].
std::optional<std::vector<float>> sample_sigmas_from_index(const std::string& json_text,
                                                           const std::string& label);

// A prompt batch's condition as the transformer takes it.
struct Condition21 {
  torch::Tensor embeds;        // [B, L, C]
  torch::Tensor mask;          // bool [B, L] or undefined (no padding)
  std::vector<bool> img_mask;  // row 0 of image_pad_mask (L entries), without the target slots
};

struct Job21 {
  int64_t width = 1024, height = 1024;  // output_size()
  int steps = 40;
  std::optional<std::vector<float>> sample_sigmas;  // Turbo
  double true_cfg_scale = 4.0;                      // used only when `uncond` is given
  bool kv_cache = true;
  int64_t batch = 1;  // prompts x images per prompt
};

struct Trace21 {
  DenoiseTrace denoise;
  torch::Tensor initial_latents, final_latents;
  std::vector<float> sigmas;  // the schedule, N + 1 values
};

// Stages 3 (noise), 4 and 5. `reference_latents`: encode_reference() of every reference, in
// order (empty for text to image); `reference_shapes` their (1, h, w). Returns the final packed
// latents [batch, h*w, 64].
torch::Tensor qwen21_denoise(models::QwenImage21Transformer2DModelImpl& transformer,
                             const SchedulerConfig& scheduler_config, const Job21& job,
                             const std::vector<torch::Tensor>& reference_latents,
                             const std::vector<Reference>& references, const Condition21& cond,
                             const Condition21* uncond, at::Generator& gen, torch::Dtype dtype,
                             const torch::Device& device, const StepCallback& on_step = {},
                             Trace21* trace = nullptr);

// Stage 6: packed latents [B, h*w, 64] of a width x height image -> B RGBA images.
std::vector<ImageU8> decode21(models::AutoencoderKLQwenImage21Impl& vae,
                              const torch::Tensor& latents, int64_t width, int64_t height);

}  // namespace qwen::pipelines::qwen21
