// QwenImage21Pipeline's size and schedule rules (pipelines/pipeline_qwenimage21.h; issue #15):
// output_resolution defaults, the last reference's aspect ratio, flooring to 32, Turbo
// sample_sigmas from model_index.json (and their errors), linspace(1, 1/N, N).
#include <gtest/gtest.h>

#include <stdexcept>

#include "pipelines/pipeline_qwenimage21.h"

namespace q21 = qwen::pipelines::qwen21;

TEST(Qwen21Pipeline, OutputSizeRules) {
  // Text to image: output_resolution squared, given sides floored to 32.
  auto s = q21::output_size(0, 0, {}, 1024);
  EXPECT_EQ(s.width, 1024);
  EXPECT_EQ(s.height, 1024);
  s = q21::output_size(1000, 0, {}, 1024);
  EXPECT_EQ(s.width, 992);
  EXPECT_EQ(s.height, 1024);
  // Edit: the LAST reference's aspect ratio at output_resolution^2 (Python round, half to even).
  std::vector<qwen::ImageU8> refs{qwen::ImageU8(100, 100, 3), qwen::ImageU8(200, 100, 4)};
  s = q21::output_size(0, 0, refs, 1024);
  EXPECT_EQ(s.width, 1440);  // sqrt(2) * 1024 = 1448.2 -> 45.26 * 32
  EXPECT_EQ(s.height, 736);  // 724.1 / 32 = 22.63 -> 23 * 32
  s = q21::output_size(0, 500, refs, 1024);
  EXPECT_EQ(s.height, 480);
  EXPECT_EQ(s.width, 1440);
  EXPECT_THROW(q21::output_size(20, 20, {}, 1024), std::invalid_argument);
}

TEST(Qwen21Pipeline, SigmasAndTurboIndex) {
  const auto lin = q21::input_sigmas(4, std::nullopt);
  ASSERT_EQ(lin.size(), 4u);
  EXPECT_FLOAT_EQ(lin[0], 1.0f);
  EXPECT_FLOAT_EQ(lin[1], 0.75f);
  EXPECT_FLOAT_EQ(lin[3], 0.25f);
  // Turbo: the model's sigmas whatever the step count.
  const auto turbo = q21::sample_sigmas_from_index(
      R"({"_class_name": "QwenImage21Pipeline", "sample_sigmas": [1.0, 0.95418, 0.704534]})", "mi");
  ASSERT_TRUE(turbo);
  EXPECT_EQ(q21::input_sigmas(40, turbo), *turbo);
  EXPECT_FALSE(q21::sample_sigmas_from_index(R"({"sample_sigmas": null})", "mi"));
  EXPECT_FALSE(q21::sample_sigmas_from_index(R"({})", "mi"));
  for (const char* bad : {R"({"sample_sigmas": []})", R"({"sample_sigmas": [1.0, "x"]})",
                          R"({"sample_sigmas": [1.5]})", "{"}) {
    try {
      q21::sample_sigmas_from_index(bad, "model_index.json");
      ADD_FAILURE() << bad;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("model_index.json"), std::string::npos) << e.what();
    }
  }
}
