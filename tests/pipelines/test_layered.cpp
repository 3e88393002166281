// Qwen-Image-Layered (issue #16): the pipeline's stage helpers (pipeline_layered.h) and the
// engine's Decompose validation on the committed tiny Layered fixture. The numbers against the
// live reference: tests/reference/test_reference_layered.cpp.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "common/fixtures.h"
#include "pipelines/engine.h"
#include "pipelines/pipeline_layered.h"
#include "pipelines/scheduler.h"

namespace {

using qwen::pipelines::layered_size;

std::string layered_model_dir() {
  return qwen::test::fixture_path("models/qwen-image-layered-tiny");
}

// What EngineError `f` throws ("" when none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const qwen::EngineError& e) {
    return e.what();
  }
  return "";
}

TEST(LayeredPipeline, CalculateDimensions) {
  // calculate_dimensions(640^2, w / h): sides rounded to multiples of 32.
  auto s = layered_size(1000, 500, 640);  // w = sqrt(2) * 640 = 905.1 -> 896, h = 452.5 -> 448
  EXPECT_EQ(s.width, 896);
  EXPECT_EQ(s.height, 448);
  s = layered_size(37, 37, 640);
  EXPECT_EQ(s.width, 640);
  EXPECT_EQ(s.height, 640);
  s = layered_size(300, 400, 1024);  // w = 886.8 -> 896, h = 1182.4 -> 1184
  EXPECT_EQ(s.width, 896);
  EXPECT_EQ(s.height, 1184);
  EXPECT_THROW(layered_size(5000, 1, 640), std::invalid_argument);
}

TEST(LayeredPipeline, SigmasAndMu) {
  EXPECT_EQ(qwen::pipelines::layered_sigmas(4), (std::vector<float>{1.0f, 0.75f, 0.5f, 0.25f}));
  EXPECT_EQ(qwen::pipelines::layered_sigmas(1), (std::vector<float>{1.0f}));
  EXPECT_DOUBLE_EQ(qwen::pipelines::layered_mu(1600), 2.5);  // 640x640: 40 x 40 tokens
  // The released Layered scheduler config: linear shift, shift_terminal false (a JSON boolean).
  auto c = qwen::pipelines::SchedulerConfig::from_json_file(layered_model_dir() +
                                                            "/scheduler/scheduler_config.json");
  EXPECT_EQ(c.time_shift_type, "linear");
  EXPECT_FALSE(c.shift_terminal.has_value());
  qwen::pipelines::FlowMatchEulerScheduler sched(c);
  sched.set_timesteps_from_sigmas(qwen::pipelines::layered_sigmas(2), 2.5);
  // mu / (mu + (1 / s - 1)): 1 -> 1, 0.5 -> 2.5 / 3.5.
  EXPECT_FLOAT_EQ(sched.sigmas()[0], 1.0f);
  EXPECT_FLOAT_EQ(sched.sigmas()[1], 2.5f / 3.5f);
  EXPECT_EQ(sched.sigmas()[2], 0.0f);
}

TEST(LayeredPipeline, PreprocessMakesRgbaInMinusOneToOne) {
  qwen::ImageU8 rgb(20, 10, 3, 255);
  auto x = qwen::pipelines::preprocess_rgba(rgb, 32, 32);
  ASSERT_EQ(x.sizes(), (std::vector<int64_t>{1, 4, 32, 32}));
  EXPECT_TRUE(torch::allclose(x, torch::ones_like(x)));  // white, opaque
  qwen::ImageU8 rgba(8, 8, 4, 0);                        // fully transparent black
  auto y = qwen::pipelines::preprocess_rgba(rgba, 32, 32);
  EXPECT_TRUE(torch::allclose(y, -torch::ones_like(y)));
}

TEST(LayeredEngine, RecognisesTheLayeredModelAndValidatesJobs) {
  qwen::EngineOptions o;
  o.model_dir = layered_model_dir();
  o.device = "cpu";
  o.threads = 2;
  auto engine = qwen::Engine::open(o);
  EXPECT_TRUE(engine->info().can_decompose);
  EXPECT_FALSE(engine->info().can_edit);
  EXPECT_EQ(engine->info().default_pipeline, qwen::PipelineKind::Decompose);
  EXPECT_EQ(engine->info().pipeline_class, "QwenImageLayeredPipeline");

  qwen::RunParams p;
  p.pipeline = qwen::PipelineKind::Decompose;
  p.prompts = {"a red circle over a blue square"};
  p.images = {qwen::ImageU8(40, 24, 4, 128)};
  p.layers = 2;
  p.steps = 1;
  auto bad = [&](auto change, const std::string& expected) {
    qwen::RunParams q = p;
    change(q);
    const std::string msg = error_of([&] { engine->run(q); });
    EXPECT_NE(msg.find(expected), std::string::npos) << "message: '" << msg << "'";
  };
  bad([](qwen::RunParams& q) { q.layers = 1; }, "layers must be between 2 and 10 (got 1)");
  bad([](qwen::RunParams& q) { q.layers = 11; }, "layers must be between 2 and 10 (got 11)");
  bad([](qwen::RunParams& q) { q.resolution = 512; }, "resolution must be 640 or 1024");
  bad([](qwen::RunParams& q) { q.prompts = {" "}; }, "decompose needs a prompt");
  bad([](qwen::RunParams& q) { q.prompts = {""}; }, "Qwen2.5-VL");
  bad([](qwen::RunParams& q) { q.images.clear(); }, "exactly one input image (got 0)");
  bad([](qwen::RunParams& q) { q.pipeline = qwen::PipelineKind::Generate; },
      "is a Qwen-Image-Layered model: it only decomposes");
  bad([](qwen::RunParams& q) { q.pipeline = qwen::PipelineKind::Edit; }, "only decomposes");

  // A real (one-step, two-layer) run: RGBA layers at calculate_dimensions(640^2, 40 / 24).
  int steps = 0;
  auto layers = engine->run(p, [&](const qwen::ProgressInfo& i) {
    steps = i.step;
    return true;
  });
  ASSERT_EQ(layers.size(), 2u);
  for (const auto& l : layers) {
    EXPECT_EQ(l.channels, 4);
    EXPECT_EQ(l.width, 832);
    EXPECT_EQ(l.height, 480);
  }
  EXPECT_EQ(steps, 1);
  EXPECT_NE(layers[0].pixels, layers[1].pixels);
}

TEST(LayeredEngine, PreviewShowsTheCompositeFrame) {
  // The step preview of a decompose job is frame 0 (the composite estimate) at the layers' size
  // on the latent grid (832 x 480 -> 104 x 60).
  qwen::EngineOptions o;
  o.model_dir = layered_model_dir();
  o.device = "cpu";
  o.threads = 2;
  o.preview = true;
  auto engine = qwen::Engine::open(o);
  qwen::RunParams p;
  p.pipeline = qwen::PipelineKind::Decompose;
  p.prompts = {"a card"};
  p.images = {qwen::ImageU8(40, 24, 3, 90)};
  p.layers = 2;
  p.steps = 1;
  qwen::ImageU8 preview;
  auto layers = engine->run(p, [&](const qwen::ProgressInfo& i) {
    preview = i.preview;
    return true;
  });
  EXPECT_EQ(layers.size(), 2u);
  EXPECT_EQ(preview.width, 104);
  EXPECT_EQ(preview.height, 60);
  EXPECT_EQ(preview.channels, 3);
}

TEST(LayeredEngine, OtherModelsDoNotDecompose) {
  qwen::EngineOptions o;
  o.model_dir = qwen::test::tiny_model_dir();
  o.device = "cpu";
  auto engine = qwen::Engine::open(o);
  EXPECT_FALSE(engine->info().can_decompose);
  qwen::RunParams p;
  p.pipeline = qwen::PipelineKind::Decompose;
  p.prompts = {"x"};
  p.images = {qwen::ImageU8(32, 32, 3, 0)};
  const std::string msg = error_of([&] { engine->run(p); });
  EXPECT_NE(msg.find("cannot decompose"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Qwen-Image-Layered"), std::string::npos) << msg;
}

}  // namespace
