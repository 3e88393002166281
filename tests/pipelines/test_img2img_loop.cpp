// Img2img and inpaint latent stages against pipeline_img2img / pipeline_inpaint with the stored
// prompt embeddings: posterior-sampled image latents, mask latents, noised start, every
// transformer call and step (inpaint blending included).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/fixtures.h"
#include "common/tiny_transformer.h"
#include "image/png.h"
#include "io/safetensors.h"
#include "models/vae.h"
#include "models/weights.h"
#include "pipelines/image_latents.h"
#include "pipelines/latents.h"
#include "pipelines/pipeline_t2i.h"

using namespace qwen::pipelines;
using qwen::test::AllClose;
using qwen::test::fixture_path;

namespace {

SchedulerConfig sched() {
  return SchedulerConfig::from_json_file(qwen::test::tiny_model_dir() +
                                         "/scheduler/scheduler_config.json");
}

}  // namespace

TEST(Img2ImgLoop, MatchesReference) {
  const std::string dir = fixture_path("cases/pipeline_img2img/");
  auto t = qwen::test::load_tensors(dir + "tensors.safetensors");
  auto vae =
      qwen::models::load_vae(qwen::test::tiny_model_dir() + "/vae", torch::kFloat32, torch::kCPU);
  auto tr = qwen::test::load_transformer(qwen::test::tiny_model_dir());
  LatentJob job;
  job.height = 64;
  job.width = 80;
  job.steps = 5;
  job.true_cfg_scale = 4.0;
  auto gen = make_generator(3);
  auto image_latents =
      encode_image_latents(*vae, qwen::read_png(dir + "image_0.png"), job.width, job.height, gen);
  TextCondition cond{t.at("prompt_embeds"), {}}, uncond{t.at("negative_prompt_embeds"), {}};
  DenoiseTrace trace;
  torch::Tensor initial;
  int steps = 0;
  auto out = img2img_latents(
      *tr, sched(), job, strength_from_float(0.7f), image_latents, {}, cond, uncond, gen,
      torch::kFloat32, torch::kCPU,
      [&](int done, int total, const torch::Tensor&, const torch::Tensor&) {
        EXPECT_EQ(total, 4);  // strength 0.7 of 5 steps: start index 1
        steps = done;
        return true;
      },
      &trace, &initial);
  EXPECT_EQ(steps, 4);
  EXPECT_TRUE(AllClose(initial, t.at("initial_latents"), 1e-4));
  EXPECT_TRUE(
      AllClose(torch::stack(trace.transformer_timesteps), t.at("transformer_timesteps"), 1e-7));
  EXPECT_TRUE(AllClose(torch::stack(trace.noise_preds), t.at("transformer_noise_pred"), 5e-4));
  EXPECT_TRUE(AllClose(torch::stack(trace.step_latents), t.at("step_latents"), 5e-4));
  EXPECT_TRUE(AllClose(out, t.at("step_latents")[3], 5e-4));
}

TEST(InpaintLoop, MatchesReference) {
  const std::string dir = fixture_path("cases/pipeline_inpaint/");
  auto t = qwen::test::load_tensors(dir + "tensors.safetensors");
  auto vae =
      qwen::models::load_vae(qwen::test::tiny_model_dir() + "/vae", torch::kFloat32, torch::kCPU);
  auto tr = qwen::test::load_transformer(qwen::test::tiny_model_dir());
  LatentJob job;
  job.height = 64;
  job.width = 96;
  job.steps = 4;
  job.true_cfg_scale = 1.0;
  auto gen = make_generator(11);
  auto image_latents =
      encode_image_latents(*vae, qwen::read_png(dir + "image_0.png"), job.width, job.height, gen);
  EXPECT_TRUE(AllClose(pack_latents(image_latents), t.at("image_latents"), 1e-4));
  auto mask = pack_mask_latents(qwen::read_png(dir + "mask.png"), job.width, job.height, 1,
                                torch::kFloat32, torch::kCPU);
  EXPECT_TRUE(torch::equal(mask, t.at("mask_latents")));
  DenoiseTrace trace;
  torch::Tensor initial;
  img2img_latents(*tr, sched(), job, strength_from_float(0.9f), image_latents, mask,
                  {t.at("prompt_embeds"), {}}, {}, gen, torch::kFloat32, torch::kCPU, {}, &trace,
                  &initial);
  EXPECT_TRUE(AllClose(initial, t.at("initial_latents"), 1e-4));
  EXPECT_TRUE(AllClose(torch::stack(trace.noise_preds), t.at("transformer_noise_pred"), 5e-4));
  EXPECT_TRUE(AllClose(torch::stack(trace.step_latents), t.at("step_latents"), 5e-4));
  // Outside the mask the last latents are the clean image latents.
  auto last = trace.step_latents.back();
  auto keep = mask.eq(0);
  EXPECT_TRUE(AllClose(last.masked_select(keep), t.at("image_latents").masked_select(keep), 1e-4));
}

TEST(Img2ImgLoop, RejectsBadStrength) {
  auto tr = qwen::test::load_transformer(qwen::test::tiny_model_dir());
  LatentJob job;
  job.height = 64;
  job.width = 64;
  job.steps = 4;
  auto gen = make_generator(0);
  auto lat = torch::zeros({1, 16, 1, 8, 8});
  TextCondition cond{torch::zeros({1, 3, 32}), {}};
  EXPECT_THROW(
      img2img_latents(*tr, sched(), job, 0.0, lat, {}, cond, {}, gen, torch::kFloat32, torch::kCPU),
      std::invalid_argument);
  EXPECT_THROW(
      img2img_latents(*tr, sched(), job, 1.5, lat, {}, cond, {}, gen, torch::kFloat32, torch::kCPU),
      std::invalid_argument);
}
