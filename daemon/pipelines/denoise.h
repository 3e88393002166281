// The shared denoising loop of the Qwen-Image pipelines (spec §5.1 step 6, §5.3 step 5, §5.4
// step 9): transformer call(s) per step, true CFG, Euler step, optional inpaint blending.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <type_traits>
#include <vector>

#include "models/transformer.h"
#include "pipelines/scheduler.h"

namespace qwen::pipelines {

// Encoded prompts as the transformer takes them: embeds [B, S, C]; mask [B, S] (1 = valid) or
// undefined when every token is valid.
struct TextCondition {
  torch::Tensor embeds;
  torch::Tensor mask;
};

struct DenoiseRequest {
  torch::Tensor latents;                       // packed [B, S, 64] in the compute dtype/device
  std::vector<models::ImageShape> img_shapes;  // target segment first, then condition images
  torch::Tensor condition_latents;  // packed [B, S_c, 64] appended along the sequence, or undefined
  TextCondition cond;
  TextCondition uncond;  // embeds undefined: no CFG
  double true_cfg_scale = 1.0;
  // Whether true CFG rescales uncond + scale * (cond - uncond) to the conditional prediction's
  // norm over the last dimension: every pipeline but Layered always does; Layered only with
  // `cfg_normalize` (QwenImageLayeredPipeline).
  bool cfg_normalize = true;
  // Layered models (use_additional_t_cond): the [B] int64 `additional_t_cond` of every
  // transformer call (the reference's is_rgb = zeros). Undefined for the other models.
  torch::Tensor additional_t_cond;
  // Inpainting: after every step x = (1 - mask) * ref + mask * x with ref the clean image latents
  // noised to the current sigma (the clean latents after the last step). All packed [B, S, 64].
  torch::Tensor inpaint_mask;
  torch::Tensor inpaint_image_latents;
  torch::Tensor inpaint_noise;
};

// Intermediates recorded for tests (each entry on the CPU, float32).
struct DenoiseTrace {
  std::vector<torch::Tensor> transformer_timesteps;  // per transformer call
  std::vector<torch::Tensor> noise_preds;            // per transformer call (sliced to S)
  std::vector<torch::Tensor> step_latents;           // after every step
};

// Called after every step with (steps done, steps total, packed latents after the step, packed
// x0 estimate of this step: x - sigma * v before the step, float32, with the kept latents blended
// in when inpainting); return false to cancel (the loop then throws qwen::CancelledError).
// The x0 estimate is computed only on steps where `wants_x0(done, total)` is true (every step when
// wants_x0 is empty); it is undefined on the others, which then cost no extra work (the preview of
// a step nobody publishes: no device->host copy, no arithmetic).
struct StepCallback {
  using Fn = std::function<bool(int done, int total, const torch::Tensor& latents,
                                const torch::Tensor& x0_estimate)>;
  Fn fn;
  std::function<bool(int done, int total)> wants_x0;

  StepCallback() = default;
  template <typename F>
  requires(!std::is_same_v<std::decay_t<F>, StepCallback> &&
           std::is_invocable_r_v<bool, F&, int, int, const torch::Tensor&, const torch::Tensor&>)
      StepCallback(F f, std::function<bool(int, int)> wants = {})  // NOLINT: implicit on purpose
      : fn(std::move(f)), wants_x0(std::move(wants)) {}

  explicit operator bool() const { return static_cast<bool>(fn); }
  bool operator()(int done, int total, const torch::Tensor& latents,
                  const torch::Tensor& x0) const {
    return fn(done, total, latents, x0);
  }
  bool want_x0(int done, int total) const { return fn && (!wants_x0 || wants_x0(done, total)); }
};

// Runs timesteps[begin_index:] of `scheduler` (set_timesteps/set_begin_index already called).
// Returns the final packed latents.
torch::Tensor denoise(models::QwenImageTransformer2DModelImpl& transformer,
                      FlowMatchEulerScheduler& scheduler, const DenoiseRequest& request,
                      const StepCallback& on_step = {}, DenoiseTrace* trace = nullptr);

}  // namespace qwen::pipelines
