// FlowMatchEulerScheduler: every (steps x image tokens) schedule of the `scheduler` fixture,
// strength start indices, scale_noise and one Euler step.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "common/fixtures.h"
#include "pipelines/scheduler.h"

using qwen::pipelines::calculate_shift;
using qwen::pipelines::FlowMatchEulerScheduler;
using qwen::pipelines::SchedulerConfig;
using qwen::test::AllClose;
using qwen::test::fixture_path;

namespace {

SchedulerConfig tiny_config() {
  return SchedulerConfig::from_json_file(qwen::test::tiny_model_dir() +
                                         "/scheduler/scheduler_config.json");
}

nlohmann::json inputs() {
  // The reference wrote NaN (its N=1 schedules), which is not JSON: read it as null.
  auto text = qwen::test::read_text(fixture_path("cases/scheduler/inputs.json"));
  for (size_t p = text.find("NaN"); p != std::string::npos; p = text.find("NaN", p))
    text.replace(p, 3, "null");
  return nlohmann::json::parse(text);
}

torch::Tensor vec(const std::vector<float>& v) { return torch::tensor(v, torch::kFloat32); }

}  // namespace

TEST(SchedulerConfig, ReadsQwenImageConfig) {
  auto c = tiny_config();
  EXPECT_TRUE(c.use_dynamic_shifting);
  EXPECT_DOUBLE_EQ(c.base_shift, 0.5);
  EXPECT_DOUBLE_EQ(c.max_shift, 0.9);
  EXPECT_EQ(c.base_image_seq_len, 256);
  EXPECT_EQ(c.max_image_seq_len, 8192);
  ASSERT_TRUE(c.shift_terminal.has_value());
  EXPECT_DOUBLE_EQ(*c.shift_terminal, 0.02);
  EXPECT_EQ(c.time_shift_type, "exponential");
}

TEST(SchedulerConfig, RejectsUnsupportedOptions) {
  EXPECT_THROW(SchedulerConfig::from_json_text(R"({"use_karras_sigmas": true})", "s.json"),
               std::runtime_error);
  EXPECT_THROW(SchedulerConfig::from_json_text(R"({"stochastic_sampling": true})", "s.json"),
               std::runtime_error);
  EXPECT_THROW(SchedulerConfig::from_json_text(R"({"time_shift_type": "cosine"})", "s.json"),
               std::runtime_error);
  EXPECT_THROW(SchedulerConfig::from_json_text(R"({"_class_name": "DDIMScheduler"})", "s.json"),
               std::runtime_error);
  EXPECT_THROW(SchedulerConfig::from_json_text("nope", "s.json"), std::runtime_error);
  // Lightning-style config: shift_terminal null -> no stretch.
  auto c = SchedulerConfig::from_json_text(
      R"({"use_dynamic_shifting": true, "shift_terminal": null, "base_shift": 1.0986122886681098,
          "max_shift": 1.0986122886681098, "max_image_seq_len": 8192})",
      "s.json");
  EXPECT_FALSE(c.shift_terminal.has_value());
}

TEST(Scheduler, MuMatchesReference) {
  auto c = tiny_config();
  const auto in = inputs();  // keep the document alive for the loop
  EXPECT_EQ(in.at("grid").size(), 48u);
  for (const auto& g : in.at("grid")) {
    EXPECT_DOUBLE_EQ(calculate_shift(g.at("image_seq_len").get<int64_t>(), c),
                     g.at("mu").get<double>())
        << g.at("key");
  }
  // Spec §4.3 worked values.
  EXPECT_NEAR(calculate_shift(6889, c), 0.8343245968, 1e-10);
  EXPECT_NEAR(calculate_shift(4096, c), 0.6935483871, 1e-10);
}

TEST(Scheduler, AllSchedulesMatchReferenceBitExactly) {
  auto c = tiny_config();
  auto t = qwen::test::load_tensors(fixture_path("cases/scheduler/tensors.safetensors"));
  int checked = 0;
  const auto in = inputs();  // keep the document alive for the loop
  for (const auto& g : in.at("grid")) {
    const std::string key = g.at("key");
    const int n = g.at("num_inference_steps");
    FlowMatchEulerScheduler s(c);
    s.set_timesteps(n, g.at("mu").get<double>());
    ASSERT_EQ(s.num_steps(), n);
    ASSERT_EQ(s.sigmas().size(), static_cast<size_t>(n + 1));
    if (n == 1) {
      // The reference gives NaN here (0/0 in the terminal stretch); we return the valid
      // one-step schedule [1, 0] instead (documented deviation).
      EXPECT_TRUE(std::isnan(t.at(key + "_sigmas")[0].item<float>()));
      EXPECT_EQ(s.sigmas(), (std::vector<float>{1.0f, 0.0f})) << key;
      EXPECT_EQ(s.timesteps(), (std::vector<float>{1000.0f})) << key;
      ++checked;
      continue;
    }
    EXPECT_TRUE(AllClose(vec(s.sigmas()), t.at(key + "_sigmas"), 0)) << key;
    EXPECT_TRUE(AllClose(vec(s.timesteps()), t.at(key + "_timesteps"), 0)) << key;
    EXPECT_NEAR(s.sigmas()[n - 1], 0.02f, 1e-6) << key;
    ++checked;
  }
  EXPECT_EQ(checked, 48);
}

TEST(Scheduler, StrengthStartIndex) {
  auto c = tiny_config();
  const auto in = inputs();
  int cases = 0;
  for (const auto& g : in.at("strength")) {
    ++cases;
    const int n = g.at("num_inference_steps");
    const double strength = g.at("strength");
    const int t_start = qwen::pipelines::start_index_for_strength(n, strength);
    EXPECT_EQ(t_start, g.at("t_start").get<int>());
    EXPECT_EQ(n - t_start, g.at("effective_num_inference_steps").get<int>());
    FlowMatchEulerScheduler s(c);
    s.set_timesteps(n, calculate_shift(g.at("image_seq_len").get<int64_t>(), c));
    std::vector<float> run(s.timesteps().begin() + t_start, s.timesteps().end());
    EXPECT_TRUE(AllClose(vec(run), vec(g.at("timesteps").get<std::vector<float>>()), 0));
    EXPECT_EQ(s.sigmas()[t_start], g.at("first_sigma").get<float>());
  }
  EXPECT_EQ(cases, 5);
  // Spec §4.6 examples.
  EXPECT_EQ(qwen::pipelines::start_index_for_strength(50, 0.6), 20);
  EXPECT_EQ(qwen::pipelines::start_index_for_strength(50, 0.85), 7);
  EXPECT_EQ(qwen::pipelines::start_index_for_strength(28, 0.7), 8);
  // A float strength behaves like the decimal the user typed (0.7f is below 0.7).
  EXPECT_EQ(
      qwen::pipelines::start_index_for_strength(10, qwen::pipelines::strength_from_float(0.7f)),
      qwen::pipelines::start_index_for_strength(10, 0.7));
  EXPECT_EQ(qwen::pipelines::strength_from_float(0.7f), 0.7);
}

TEST(Scheduler, ScaleNoiseAndStepMatchReference) {
  auto t = qwen::test::load_tensors(fixture_path("cases/scheduler/tensors.safetensors"));
  FlowMatchEulerScheduler s(tiny_config());
  // The fixture's schedule: 4 steps for 64 image tokens (timesteps[1] = 743.4282).
  s.set_timesteps(4, calculate_shift(64, s.config()));
  ASSERT_FLOAT_EQ(s.timesteps()[1], t.at("scale_noise_timestep")[0].item<float>());
  ASSERT_FLOAT_EQ(s.timesteps()[0], t.at("step_timestep")[0].item<float>());
  auto noised = s.scale_noise_at(t.at("scale_noise_sample"), t.at("scale_noise_noise"), 1);
  EXPECT_TRUE(AllClose(noised, t.at("scale_noise_out"), 1e-6));
  // scale_noise uses begin_index before the first step.
  s.set_begin_index(1);
  EXPECT_TRUE(
      torch::equal(s.scale_noise(t.at("scale_noise_sample"), t.at("scale_noise_noise")), noised));
  s.set_begin_index(0);
  auto out = s.step(t.at("step_model_output"), t.at("step_sample"));
  EXPECT_TRUE(AllClose(out, t.at("step_out"), 1e-6));
  EXPECT_EQ(s.step_index(), 1);
  // After a step, scale_noise uses the current step index.
  EXPECT_TRUE(
      torch::equal(s.scale_noise(t.at("scale_noise_sample"), t.at("scale_noise_noise")), noised));
  for (int i = 1; i < 4; ++i) s.step(t.at("step_model_output"), t.at("step_sample"));
  EXPECT_THROW(s.step(t.at("step_model_output"), t.at("step_sample")), std::out_of_range);
}

TEST(Scheduler, EulerStepRoundsProductInModelDtype) {
  FlowMatchEulerScheduler s(tiny_config());
  s.set_timesteps(3, calculate_shift(4096, s.config()));
  auto x = torch::randn({1, 8, 64}).to(torch::kBFloat16);
  auto v = torch::randn({1, 8, 64}).to(torch::kBFloat16);
  auto out = s.step(v, x);
  EXPECT_EQ(out.scalar_type(), torch::kBFloat16);
  auto dt = torch::tensor(s.sigmas()[1] - s.sigmas()[0]);
  auto prod = (dt * v);  // bf16 op
  ASSERT_EQ(prod.scalar_type(), torch::kBFloat16);
  auto expect = (x.to(torch::kFloat32) + prod.to(torch::kFloat32)).to(torch::kBFloat16);
  EXPECT_TRUE(torch::equal(out, expect));
}

TEST(Scheduler, RejectsBadArguments) {
  FlowMatchEulerScheduler s(tiny_config());
  EXPECT_THROW(s.set_timesteps(0, 0.5), std::invalid_argument);
  EXPECT_THROW(s.step(torch::zeros({1}), torch::zeros({1})), std::logic_error);
  s.set_timesteps(4, 0.5);
  EXPECT_THROW(s.set_begin_index(4), std::out_of_range);
}
