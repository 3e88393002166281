// The denoising loop's GPU-minded economies, checked on the CPU: the timestep modulation is
// computed once per step and shared by the CFG passes; the preview's x0 estimate (and its copy to
// the host) only exists on the steps whose preview is published.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/fixtures.h"
#include "common/tiny_transformer.h"
#include "pipelines/engine.h"
#include "pipelines/engine_impl.h"
#include "pipelines/latents.h"
#include "pipelines/pipeline_t2i.h"

using namespace qwen::pipelines;
using qwen::test::fixture_path;

namespace {

TextCondition condition(const std::map<std::string, torch::Tensor>& t, const std::string& name) {
  TextCondition c;
  c.embeds = t.at(name);
  if (auto it = t.find(name + "_mask"); it != t.end()) c.mask = it->second;
  return c;
}

}  // namespace

TEST(Denoise, ModulationOncePerStepWithCfg) {
  auto t = qwen::test::load_tensors(fixture_path("cases/pipeline_t2i_cfg4/tensors.safetensors"));
  auto tr = qwen::test::load_transformer(qwen::test::tiny_model_dir());
  LatentJob job;
  job.height = 96;
  job.width = 64;
  job.steps = 3;
  job.true_cfg_scale = 4.0;
  job.batch = 2;
  for (bool cfg : {true, false}) {
    SCOPED_TRACE(cfg ? "cfg" : "no cfg");
    auto gen = make_generator(7);
    DenoiseTrace trace;
    const int64_t before = tr->modulation_computations();
    t2i_latents(*tr, SchedulerConfig::qwen_image(), job, condition(t, "prompt_embeds"),
                cfg ? condition(t, "negative_prompt_embeds") : TextCondition{}, gen,
                torch::kFloat32, torch::kCPU, {}, &trace);
    EXPECT_EQ(trace.noise_preds.size(), size_t(cfg ? 6 : 3));  // transformer calls
    EXPECT_EQ(tr->modulation_computations() - before, 3);      // one per step
  }
}

TEST(Denoise, PreviewDueSteps) {
  auto due = [](int total, int every) {
    std::vector<int> v;
    for (int s = 1; s <= total; ++s)
      if (qwen::preview_due(s, total, every)) v.push_back(s);
    return v;
  };
  EXPECT_EQ(due(7, 3), (std::vector<int>{1, 4, 7}));
  EXPECT_EQ(due(6, 5), (std::vector<int>{1, 6}));
  EXPECT_EQ(due(3, 1), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(due(3, 0), (std::vector<int>{}));
}

// x0 only on the steps the callback wants, bit-identical to the estimate of a run that wants all.
TEST(Denoise, X0EstimateOnlyWhenWanted) {
  auto t = qwen::test::load_tensors(fixture_path("cases/pipeline_t2i_cfg1/tensors.safetensors"));
  auto tr = qwen::test::load_transformer(qwen::test::tiny_model_dir());
  LatentJob job;
  job.height = 64;
  job.width = 96;
  job.steps = 4;
  job.true_cfg_scale = 1.0;
  auto run = [&](const std::function<bool(int, int)>& wants) {
    std::vector<torch::Tensor> x0s;
    auto gen = make_generator(42);
    auto out = t2i_latents(*tr, SchedulerConfig::qwen_image(), job, condition(t, "prompt_embeds"),
                           {}, gen, torch::kFloat32, torch::kCPU,
                           StepCallback(
                               [&](int, int, const torch::Tensor&, const torch::Tensor& x0) {
                                 x0s.push_back(x0);
                                 return true;
                               },
                               wants));
    return std::make_pair(out, x0s);
  };
  auto [all_out, all_x0] = run({});
  auto [some_out, some_x0] = run([](int done, int) { return done % 2 == 1; });
  EXPECT_TRUE(torch::equal(all_out, some_out));
  ASSERT_EQ(all_x0.size(), 4u);
  ASSERT_EQ(some_x0.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(all_x0[i].defined());
    EXPECT_EQ(some_x0[i].defined(), i % 2 == 0) << i;
    if (some_x0[i].defined()) {
      EXPECT_TRUE(torch::equal(some_x0[i], all_x0[i])) << i;
    }
  }
}

TEST(Denoise, StepCallbackBuildsOnlyPublishedPreviews) {
  std::vector<int> seen;
  auto cb = make_step_callback(
      [&](const qwen::ProgressInfo& info) {
        if (!info.preview.empty()) seen.push_back(info.step);
        return true;
      },
      /*preview=*/true, 64, 96, /*preview_every=*/3);
  std::vector<int> wanted;
  for (int s = 1; s <= 7; ++s)
    if (cb.want_x0(s, 7)) wanted.push_back(s);
  EXPECT_EQ(wanted, (std::vector<int>{1, 4, 7}));
  const auto x0 = torch::zeros({1, 24, 64});
  for (int s = 1; s <= 7; ++s) cb(s, 7, x0, cb.want_x0(s, 7) ? x0 : torch::Tensor());
  EXPECT_EQ(seen, (std::vector<int>{1, 4, 7}));
  // Without previews the loop is never asked for an estimate.
  auto plain = make_step_callback([](const qwen::ProgressInfo&) { return true; }, false, 64, 96);
  for (int s = 1; s <= 3; ++s) EXPECT_FALSE(plain.want_x0(s, 3));
}

// Through the engine, as the daemon configures it (preview_every from its config).
TEST(Denoise, EnginePublishesPreviewsEveryNthStep) {
  qwen::EngineOptions o;
  o.model_dir = qwen::test::tiny_model_dir();
  o.device = "cpu";
  o.threads = 2;
  o.preview = true;
  o.preview_every = 2;
  auto engine = qwen::Engine::open(o);
  qwen::RunParams p;
  p.prompts = {"a lighthouse"};
  p.width = 64;
  p.height = 48;
  p.steps = 4;
  std::vector<int> with_preview;
  int steps = 0;
  engine->run(p, [&](const qwen::ProgressInfo& info) {
    ++steps;
    if (!info.preview.empty()) with_preview.push_back(info.step);
    return true;
  });
  EXPECT_EQ(steps, 4);
  EXPECT_EQ(with_preview, (std::vector<int>{1, 3, 4}));
}
