#include "pipelines/denoise.h"

#include <cstdlib>

#include "models/attention.h"
#include "models/offload.h"
#include "pipelines/engine.h"
#include "pipelines/latents.h"

namespace qwen::pipelines {

namespace {
torch::Tensor cpu_f32(const torch::Tensor& t) {
  return t.detach().to(torch::kCPU, torch::kFloat32);
}
}  // namespace

torch::Tensor denoise(models::QwenImageTransformer2DModelImpl& transformer,
                      FlowMatchEulerScheduler& scheduler, const DenoiseRequest& r,
                      const StepCallback& on_step, DenoiseTrace* trace) {
  torch::NoGradGuard no_grad;
  auto latents = r.latents;
  const auto device = latents.device();
  const auto dtype = latents.scalar_type();
  const int64_t batch = latents.size(0);
  const int64_t s_noise = latents.size(1);
  const bool cfg = r.uncond.embeds.defined();
  const bool inpaint = r.inpaint_mask.defined();
  const int begin = scheduler.begin_index();
  const int total = scheduler.num_steps() - begin;

  // An all-true text mask is dropped once here (not per call: it costs a host sync): without a
  // mask the joint attention can run on the flash kernels. Same numbers (the mask adds 0).
  const torch::Tensor cond_mask = models::padding_mask_or_none(r.cond.mask);
  const torch::Tensor uncond_mask =
      cfg ? models::padding_mask_or_none(r.uncond.mask) : torch::Tensor();

  // Every per-step scalar stays on the device: no host synchronisation inside the loop.
  auto ts = torch::tensor(scheduler.timesteps(), torch::kFloat32).to(device);

  // The reference casts t to the latent dtype, then divides by 1000 in that dtype.
  std::vector<torch::Tensor> step_t;
  for (int i = begin; i < scheduler.num_steps(); ++i)
    step_t.push_back(ts[i].expand({batch}).to(dtype) / 1000);
  // Memory modes that keep the modulation weights off the device (models/offload.h): the
  // timestep-only tensors of every step, computed once per job before the first step.
  std::vector<models::TimestepModulation> precomputed;
  if (auto* hooks = transformer.placement(); hooks && hooks->precomputes_modulation())
    precomputed = hooks->precompute_modulation(transformer, step_t, dtype, r.additional_t_cond);

  // Streamed blocks (issue #13): the first streamed block of every pass is copied in during the
  // previous pass / now, like every other block during the block before it. The guard lets an
  // unused copy go when the loop ends early (cancelled, out of memory).
  struct Passes {
    models::TransformerPlacement* p;
    ~Passes() {
      if (p) p->end_passes();
    }
  } passes{dynamic_cast<models::TransformerPlacement*>(transformer.placement())};
  if (passes.p) passes.p->begin_passes(int64_t(total) * (cfg ? 2 : 1));

  // Test hook (issue #13): an allocation failure injected at the start of step N (1-based).
  const char* oom_at = std::getenv("QWEN_TEST_OOM_AT_STEP");
  const int oom_step = oom_at ? std::atoi(oom_at) : 0;

  for (int i = begin; i < scheduler.num_steps(); ++i) {
    TORCH_CHECK_WITH(OutOfMemoryError, oom_step != i - begin + 1,
                     "CUDA out of memory (injected by QWEN_TEST_OOM_AT_STEP=", oom_step, ")");
    const auto& t = step_t[i - begin];
    auto model_in =
        r.condition_latents.defined() ? torch::cat({latents, r.condition_latents}, 1) : latents;
    // The timestep embedding and every block's img_mod / txt_mod depend on t alone: computed by
    // the conditional pass, read by the unconditional one (same tensors, so the same numbers).
    models::TimestepModulation local;
    models::TimestepModulation& modulation =
        precomputed.empty() ? local : precomputed[i - begin];
    auto pred = transformer.forward(model_in, r.cond.embeds, cond_mask, t, r.img_shapes,
                                    r.additional_t_cond, &modulation);
    pred = pred.slice(1, 0, s_noise);
    if (trace) {
      trace->transformer_timesteps.push_back(cpu_f32(t));
      trace->noise_preds.push_back(cpu_f32(pred));
    }
    if (cfg) {
      auto neg = transformer.forward(model_in, r.uncond.embeds, uncond_mask, t, r.img_shapes,
                                     r.additional_t_cond, &modulation);
      neg = neg.slice(1, 0, s_noise);
      if (trace) {
        trace->transformer_timesteps.push_back(cpu_f32(t));
        trace->noise_preds.push_back(cpu_f32(neg));
      }
      // Layered without cfg_normalize: the plain combination (the reference's comb_pred).
      pred = r.cfg_normalize ? true_cfg(pred, neg, r.true_cfg_scale)
                             : neg + r.true_cfg_scale * (pred - neg);
    }
    if (!precomputed.empty()) precomputed[i - begin] = {};  // no longer needed
    const int done = i - begin + 1;
    torch::Tensor x0;
    if (on_step.want_x0(done, total))  // the flow-matching clean estimate: x0 = x_t - sigma_t * v
      x0 = latents.to(torch::kFloat32) - scheduler.sigmas_on(device)[i] * pred.to(torch::kFloat32);
    latents = scheduler.step(pred, latents);
    if (inpaint) {
      torch::Tensor ref = r.inpaint_image_latents;
      if (i + 1 < scheduler.num_steps())
        ref = scheduler.scale_noise_at(r.inpaint_image_latents, r.inpaint_noise, i + 1);
      latents = (1 - r.inpaint_mask) * ref + r.inpaint_mask * latents;
    }
    if (trace) trace->step_latents.push_back(cpu_f32(latents));
    if (on_step) {
      if (inpaint && x0.defined())
        x0 =
            (1 - r.inpaint_mask.to(torch::kFloat32)) * r.inpaint_image_latents.to(torch::kFloat32) +
            r.inpaint_mask.to(torch::kFloat32) * x0;
      if (!on_step(done, total, latents, x0)) throw CancelledError();
    }
  }
  return latents;
}

}  // namespace qwen::pipelines
