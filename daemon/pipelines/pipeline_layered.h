// QwenImageLayeredPipeline (diffusers pipelines/qwenimage/pipeline_qwenimage_layered.py; spec
// transformer-and-pipelines.md §5.7; issue #16): one RGBA picture in, `layers` RGBA layers out.
// The stages, numbered as the reference's __call__:
//   2. resize: calculate_dimensions(resolution^2, w / h) (sides multiples of 32), PIL LANCZOS on
//      the RGBA image (premultiplied, as PIL resizes RGBA), 4-channel VAE input in [-1, 1];
//      condition latents = VAE posterior mode, (z - mean) / std, packed [1, S_c, 64].
//   3. prompt encoding: the text-to-image template (drop 34), engine side.
//   4. latents: noise [B, layers + 1, 16, h, w] from the CPU generator, packed frame by frame
//      (frame 0 = the composite); img_shapes = (layers + 1) x (1, h/16, w/16) + the condition's.
//   5. timesteps: sigmas linspace(1, 0, N + 1)[:-1], mu = sqrt(S_c / 256) through the model's
//      scheduler config (Layered ships time_shift_type linear, shift_terminal false).
//   6. loop: additional_t_cond = 0 (is_rgb), true CFG, optional cfg_normalize.
//   7. decode: unpack, denormalise, drop frame 0, VAE-decode every layer -> RGBA.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "image/image.h"
#include "models/transformer.h"
#include "models/vae.h"
#include "pipelines/denoise.h"
#include "pipelines/scheduler.h"

namespace qwen::pipelines {

// The layer count and resolution buckets the reference allows.
constexpr int kMinLayers = 2;
constexpr int kMaxLayers = 10;

// calculate_dimensions(resolution^2, image_width / image_height): width = sqrt(area * ratio),
// height = width / ratio, each rounded (half to even, Python round) to a multiple of 32. Throws
// std::invalid_argument when a side would be 0 (an extremely thin image).
struct LayeredSize {
  int64_t width = 0, height = 0;
};
LayeredSize layered_size(int image_width, int image_height, int resolution);

// Stage 2: the image (gray, gray + alpha, RGB: made opaque RGBA first; RGBA as is) resized with
// PIL LANCZOS on premultiplied alpha to width x height -> [1, 4, H, W] float32 in [-1, 1].
torch::Tensor preprocess_rgba(const ImageU8& image, int64_t width, int64_t height);

struct LayeredJob {
  int64_t width = 640, height = 640;  // layered_size(): output and condition size
  int layers = 4;
  int steps = 50;
  double true_cfg_scale = 4.0;  // used only when `uncond` is present
  bool cfg_normalize = false;
  int64_t batch = 1;  // prompts x images per prompt
};

// Stage 5: the schedule's input sigmas, float32 of NumPy's float64 linspace(1, 0, N + 1)[:-1].
std::vector<float> layered_sigmas(int steps);
// Stage 5: mu = (S_c / 256) ** 0.5 for a condition of `condition_tokens` packed tokens.
double layered_mu(int64_t condition_tokens);

// Stages 4-6. `condition_latents`: packed [1, S_c, 64] (encode_condition on preprocess_rgba's
// output) of the job's width x height. Returns the final packed latents [batch, (layers + 1) * S,
// 64]; `initial_latents` (optional) receives the packed noise.
torch::Tensor layered_latents(models::QwenImageTransformer2DModelImpl& transformer,
                              const SchedulerConfig& scheduler_config, const LayeredJob& job,
                              const torch::Tensor& condition_latents, const TextCondition& cond,
                              const TextCondition& uncond, at::Generator& gen, torch::Dtype dtype,
                              const torch::Device& device, const StepCallback& on_step = {},
                              DenoiseTrace* trace = nullptr,
                              torch::Tensor* initial_latents = nullptr);

// Intermediates of a decompose job (tests): the loop's trace, the packed noise, the packed
// condition latents [1, S_c, 64] and the final packed latents (all as computed, on the device).
struct LayeredTrace {
  DenoiseTrace denoise;
  torch::Tensor initial_latents, condition_latents, final_latents;
};

// Stage 7: batch * layers RGBA images, batch entry major, each entry's layers in the reference's
// order (frame 1 .. layers; frame 0, the composite, is dropped). Decodes one layer at a time.
std::vector<ImageU8> decode_layers(models::AutoencoderKLQwenImageImpl& vae,
                                   const torch::Tensor& latents, const LayeredJob& job);

}  // namespace qwen::pipelines
