// QwenImagePipeline denoising loop against pipeline_t2i_cfg1 / pipeline_t2i_cfg4 using the stored
// prompt embeddings: initial latents, every transformer call's timestep and prediction, the
// latents after every step, then the VAE decode and the final image.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/fixtures.h"
#include "common/tiny_transformer.h"
#include "image/png.h"
#include "io/safetensors.h"
#include "models/vae.h"
#include "models/weights.h"
#include "pipelines/engine.h"
#include "pipelines/image_processing.h"
#include "pipelines/latents.h"
#include "pipelines/pipeline_t2i.h"

using namespace qwen::pipelines;
using qwen::test::AllClose;
using qwen::test::fixture_path;

namespace {

SchedulerConfig scheduler_config() {
  return SchedulerConfig::from_json_file(qwen::test::tiny_model_dir() +
                                         "/scheduler/scheduler_config.json");
}

TextCondition condition(const std::map<std::string, torch::Tensor>& t, const std::string& name) {
  TextCondition c;
  c.embeds = t.at(name);
  if (auto it = t.find(name + "_mask"); it != t.end()) c.mask = it->second;
  return c;
}

struct Case {
  std::string name;
  LatentJob job;
  int64_t seed;
  bool cfg;
};

void check_case(const Case& k) {
  auto t = qwen::test::load_tensors(fixture_path("cases/" + k.name + "/tensors.safetensors"));
  auto transformer = qwen::test::load_transformer(qwen::test::tiny_model_dir());
  auto cond = condition(t, "prompt_embeds");
  TextCondition uncond;
  if (k.cfg) uncond = condition(t, "negative_prompt_embeds");
  auto gen = make_generator(k.seed);
  DenoiseTrace trace;
  torch::Tensor initial;
  int calls = 0;
  auto latents = t2i_latents(
      *transformer, scheduler_config(), k.job, cond, uncond, gen, torch::kFloat32, torch::kCPU,
      [&](int done, int total, const torch::Tensor&, const torch::Tensor&) {
        EXPECT_EQ(done, ++calls);
        EXPECT_EQ(total, k.job.steps);
        return true;
      },
      &trace, &initial);
  EXPECT_EQ(calls, k.job.steps);
  EXPECT_TRUE(torch::equal(initial, t.at("initial_latents")));

  const int64_t per_step = k.cfg ? 2 : 1;
  ASSERT_EQ(static_cast<int64_t>(trace.noise_preds.size()), per_step * k.job.steps);
  EXPECT_TRUE(
      AllClose(torch::stack(trace.transformer_timesteps), t.at("transformer_timesteps"), 1e-7));
  EXPECT_TRUE(AllClose(torch::stack(trace.noise_preds), t.at("transformer_noise_pred"), 5e-4));
  EXPECT_TRUE(AllClose(torch::stack(trace.step_latents), t.at("step_latents"), 5e-4));

  // Decode + postprocess.
  auto vae =
      qwen::models::load_vae(qwen::test::tiny_model_dir() + "/vae", torch::kFloat32, torch::kCPU);
  torch::NoGradGuard ng;
  auto z = qwen::models::denormalize_latents(unpack_latents(latents, k.job.height, k.job.width),
                                             vae->config());
  auto decoded = vae->decode(z);
  EXPECT_TRUE(AllClose(decoded, t.at("vae_decoded"), 1e-3));
  auto images = postprocess(decoded.select(2, 0));
  ASSERT_EQ(static_cast<int64_t>(images.size()), k.job.batch);
  auto image0 = denormalize_image(decoded.select(2, 0))[0].permute({1, 2, 0});
  if (k.job.batch == 1) {
    EXPECT_TRUE(AllClose(image0, t.at("image"), 1e-3));
  }
  auto png = qwen::read_png(fixture_path("cases/" + k.name + "/output.png"));
  ASSERT_EQ(png.width, images[0].width);
  ASSERT_EQ(png.height, images[0].height);
  int max_diff = 0;
  for (size_t i = 0; i < png.pixels.size(); ++i)
    max_diff = std::max(max_diff, std::abs(int(png.pixels[i]) - int(images[0].pixels[i])));
  EXPECT_LE(max_diff, 1);
}

}  // namespace

TEST(T2ILoop, NoCfgMatchesReference) {
  LatentJob job;
  job.height = 64;
  job.width = 96;
  job.steps = 4;
  job.true_cfg_scale = 1.0;
  check_case({"pipeline_t2i_cfg1", job, 42, false});
}

TEST(T2ILoop, TrueCfgBatchWithMasksMatchesReference) {
  LatentJob job;
  job.height = 96;
  job.width = 64;
  job.steps = 3;
  job.true_cfg_scale = 4.0;
  job.batch = 2;
  check_case({"pipeline_t2i_cfg4", job, 7, true});
}

TEST(T2ILoop, CancelStopsTheLoop) {
  auto t = qwen::test::load_tensors(fixture_path("cases/pipeline_t2i_cfg1/tensors.safetensors"));
  auto transformer = qwen::test::load_transformer(qwen::test::tiny_model_dir());
  LatentJob job;
  job.height = 64;
  job.width = 96;
  job.steps = 4;
  auto gen = make_generator(42);
  int calls = 0;
  EXPECT_THROW(t2i_latents(*transformer, scheduler_config(), job, condition(t, "prompt_embeds"), {},
                           gen, torch::kFloat32, torch::kCPU,
                           [&](int, int, const torch::Tensor&, const torch::Tensor&) {
                             return ++calls < 2;
                           }),
               qwen::CancelledError);
  EXPECT_EQ(calls, 2);
}

TEST(T2ILoop, RejectsBadJobs) {
  auto t = qwen::test::load_tensors(fixture_path("cases/pipeline_t2i_cfg1/tensors.safetensors"));
  auto transformer = qwen::test::load_transformer(qwen::test::tiny_model_dir());
  auto gen = make_generator(0);
  LatentJob job;
  job.height = 60;  // not a multiple of 16
  EXPECT_THROW(t2i_latents(*transformer, scheduler_config(), job, condition(t, "prompt_embeds"), {},
                           gen, torch::kFloat32, torch::kCPU),
               std::invalid_argument);
  job.height = 64;
  job.steps = 0;
  EXPECT_THROW(t2i_latents(*transformer, scheduler_config(), job, condition(t, "prompt_embeds"), {},
                           gen, torch::kFloat32, torch::kCPU),
               std::invalid_argument);
}
