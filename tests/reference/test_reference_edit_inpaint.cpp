// Edit-Inpaint through qwen::Engine vs diffusers' QwenImageEditInpaintPipeline on the tiny edit
// model of the fixtures. The reference run is produced by gen_edit_inpaint.py (about a minute on
// the CPU); the test reads it from $QWEN_EDIT_INPAINT_REF and SKIPs when that is not set:
//   .venv/bin/python tests/reference/gen_edit_inpaint.py /tmp/ei
//   QWEN_EDIT_INPAINT_REF=/tmp/ei ./test_reference_edit_inpaint
// The engine's PNG must be within 1 level of the reference's PNG.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "common/fixtures.h"
#include "image/png.h"
#include "pipelines/engine.h"

namespace {

TEST(ReferenceDifferential, EditInpaintMatchesDiffusers) {
  const char* dir_env = std::getenv("QWEN_EDIT_INPAINT_REF");
  if (!dir_env || !*dir_env)
    GTEST_SKIP() << "set QWEN_EDIT_INPAINT_REF to the output folder of gen_edit_inpaint.py";
  const std::string dir = dir_env;
  const auto p = nlohmann::json::parse(qwen::test::read_text(dir + "/params.json"));
  qwen::EngineOptions opt;
  opt.model_dir = qwen::test::tiny_edit_model_dir();
  opt.device = "cpu";
  opt.dtype = "float32";
  opt.threads = 2;
  auto engine = qwen::Engine::open(opt);

  qwen::RunParams rp;
  rp.pipeline = qwen::PipelineKind::EditInpaint;
  rp.prompts = {p["prompt"].get<std::string>()};
  rp.negative_prompts = {p["negative_prompt"].get<std::string>()};
  rp.true_cfg_scale = p["true_cfg_scale"].get<float>();
  rp.steps = p["steps"].get<int>();
  rp.strength = p["strength"].get<float>();
  rp.seed = p["seed"].get<int64_t>();
  rp.images = {qwen::read_png(dir + "/image.png")};
  rp.mask = qwen::read_png(dir + "/mask.png");
  auto images = engine->run(rp);
  ASSERT_EQ(images.size(), 1u);
  const auto expected = qwen::read_png(dir + "/output.png");
  ASSERT_EQ(images[0].width, expected.width);
  ASSERT_EQ(images[0].height, expected.height);
  ASSERT_EQ(images[0].channels, expected.channels);
  int max_diff = 0;
  size_t differ = 0;
  for (size_t i = 0; i < expected.pixels.size(); ++i) {
    const int d = std::abs(int(images[0].pixels[i]) - int(expected.pixels[i]));
    max_diff = std::max(max_diff, d);
    differ += d > 0;
  }
  EXPECT_LE(max_diff, 1) << differ << " of " << expected.pixels.size() << " values differ";
}

}  // namespace
