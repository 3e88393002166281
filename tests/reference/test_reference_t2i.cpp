// Text-to-image through qwen::Engine vs diffusers' QwenImagePipeline on a fresh random tiny model
// folder every run: random prompt, optional negative prompt with true CFG, random size, 2-4 steps,
// random seed. The engine's 8-bit image must be within 1 level of round(reference image * 255),
// the fixture tests' PNG tolerance.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include "common/fixtures.h"
#include "pipelines/engine.h"
#include "reference_case.h"

namespace {

TEST(ReferenceDifferential, TextToImageMatchesDiffusers) {
  QWEN_REFERENCE_CASE(ref, "t2i");
  const auto& p = ref.json()["parts"]["t2i"];
  const std::string where = "seed " + std::to_string(ref.seed()) + ", job " + p.dump() +
                            ", config " + ref.json()["config"].dump();
  qwen::EngineOptions opt;
  opt.model_dir = ref.model_dir();
  opt.device = "cpu";
  opt.dtype = "float32";
  opt.threads = 1;
  auto engine = qwen::Engine::open(opt);

  qwen::RunParams rp;
  rp.pipeline = qwen::PipelineKind::Generate;
  rp.prompts = {p["prompt"].get<std::string>()};
  if (!p["negative_prompt"].is_null()) rp.negative_prompts = {p["negative_prompt"].get<std::string>()};
  rp.true_cfg_scale = p["true_cfg_scale"].get<float>();
  rp.width = p["width"].get<int>();
  rp.height = p["height"].get<int>();
  rp.steps = p["steps"].get<int>();
  rp.seed = p["seed"].get<int64_t>();
  auto images = engine->run(rp);
  ASSERT_EQ(images.size(), 1u) << where;
  const auto& img = images[0];
  ASSERT_EQ(img.width, rp.width) << where;
  ASSERT_EQ(img.height, rp.height) << where;
  ASSERT_EQ(img.channels, 3) << where;

  auto expected = (ref.tensors("t2i").at("image") * 255).round().clamp(0, 255).to(torch::kInt32);
  auto actual = torch::from_blob(const_cast<uint8_t*>(img.pixels.data()),
                                 {img.height, img.width, 3}, torch::kUInt8)
                    .to(torch::kInt32);
  auto diff = (actual - expected).abs();
  int max_diff = diff.max().item<int>();
  double frac = (diff > 0).to(torch::kDouble).mean().item<double>();
  EXPECT_LE(max_diff, qwen::reftest::kPngMaxLevels)
      << "max level difference " << max_diff << ", " << frac * 100 << " % of values differ; "
      << where;
}

}  // namespace
