// LoRAs and Lightning through the engine (issue #14) on the tiny model: a job without LoRAs after
// jobs with LoRAs is bit-identical to the first no-LoRA job (side branch and merged), changing the
// set keeps the loaded weights, Lightning defaults (4 or 8 steps, CFG 1, shift 3) and --shift.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "common/fixtures.h"
#include "pipelines/engine.h"
#include "pipelines/engine_impl.h"

namespace {

std::string samples(const std::string& f) { return std::string(QWEN_LORA_SAMPLES) + "/" + f; }

std::unique_ptr<qwen::Engine> open_tiny(const std::string& lora_mode = "") {
  qwen::EngineOptions o;
  o.model_dir = qwen::test::tiny_model_dir();
  o.device = "cpu";
  o.threads = 2;
  o.lora_mode = lora_mode;
  return qwen::Engine::open(o);
}

qwen::RunParams job() {
  qwen::RunParams p;
  p.prompts = {"a red fox"};
  p.negative_prompts = {"blurry"};
  p.width = p.height = 32;
  p.steps = 2;
  p.seed = 5;
  return p;
}

std::vector<uint8_t> pixels(qwen::Engine& e, const qwen::RunParams& p) {
  auto images = e.run(p);
  EXPECT_EQ(images.size(), 1u);
  return images.at(0).pixels;
}

}  // namespace

TEST(EngineLora, NoLoraJobAfterLoraJobsIsBitIdentical) {
  for (const std::string mode : {"side", "merge"}) {
    SCOPED_TRACE(mode);
    auto engine = open_tiny(mode);
    auto& impl = dynamic_cast<qwen::pipelines::QwenEngine&>(*engine);
    auto& to_q = *impl.transformer()
                      ->transformer_blocks[0]
                      ->as<qwen::models::dit::TransformerBlockImpl>()
                      ->attn->to_q;
    const void* weight_data = to_q.weight.data_ptr();
    const auto weight = to_q.weight.clone();
    const auto base = pixels(*engine, job());
    auto p = job();
    p.loras = {{samples("kohya_musubi.safetensors"), 3.0}, {samples("lightx2v.safetensors"), -2.0}};
    const auto with = pixels(*engine, p);
    EXPECT_NE(with, base);
    EXPECT_EQ(impl.applied_loras().size(), 2u);
    // Another set (one LoRA, other strength), then none: the loaded weights stay in place.
    p.loras = {{samples("diffusers_peft.safetensors"), 0.5}};
    EXPECT_NE(pixels(*engine, p), with);
    EXPECT_EQ(pixels(*engine, job()), base);
    EXPECT_TRUE(impl.applied_loras().empty());
    EXPECT_EQ(to_q.weight.data_ptr(), weight_data);
    EXPECT_TRUE(torch::equal(to_q.weight, weight));
    EXPECT_TRUE(to_q.lora().empty());
    EXPECT_FALSE(to_q.lora_merged());
  }
}

// Side branch and merged copy give the same images (within a level: float32 rounding).
TEST(EngineLora, SideBranchAndMergedAgree) {
  auto p = job();
  p.loras = {{samples("aitoolkit.safetensors"), 2.0}, {samples("diffsynth.safetensors"), -1.5}};
  const auto side = pixels(*open_tiny("side"), p);
  const auto merged = pixels(*open_tiny("merge"), p);
  ASSERT_EQ(side.size(), merged.size());
  int d = 0;
  for (size_t i = 0; i < side.size(); ++i) d = std::max(d, std::abs(side[i] - merged[i]));
  EXPECT_LE(d, 1);
}

TEST(EngineLora, BadLorasAreErrorsNamingTheFile) {
  auto engine = open_tiny();
  auto p = job();
  p.loras = {{"/nonexistent/x.safetensors", 1.0}};
  try {
    engine->run(p);
    ADD_FAILURE() << "no error";
  } catch (const qwen::EngineError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/x.safetensors"), std::string::npos)
        << e.what();
  }
  p.loras = {
      {qwen::test::tiny_model_dir() + "/transformer/diffusion_pytorch_model.safetensors", 1.0}};
  try {
    engine->run(p);
    ADD_FAILURE() << "no error";
  } catch (const qwen::EngineError& e) {
    EXPECT_NE(std::string(e.what()).find("diffusion_pytorch_model.safetensors"), std::string::npos)
        << e.what();
  }
  // The engine still runs without LoRAs afterwards.
  EXPECT_EQ(pixels(*engine, job()), pixels(*open_tiny(), job()));
  EXPECT_THROW(open_tiny("fold"), qwen::EngineError);
}

// Lightning: CFG 1 and shift 3 unless set; explicit values win.
TEST(EngineLora, LightningDefaults) {
  auto engine = open_tiny();
  auto explicit_job = job();
  explicit_job.true_cfg_scale = 1.0f;
  explicit_job.shift = 3.0;
  const auto expected = pixels(*engine, explicit_job);
  auto lightning = job();
  lightning.lightning = true;
  EXPECT_EQ(pixels(*engine, lightning), expected);
  EXPECT_NE(pixels(*engine, job()), expected);  // the model's scheduler and CFG 4
  // A shift other than 3 changes the image; CFG set by the user is kept.
  lightning.shift = 1.5;
  EXPECT_NE(pixels(*engine, lightning), expected);
  auto bad = job();
  bad.shift = -1.0;
  EXPECT_THROW(engine->run(bad), qwen::EngineError);
}

// Steps 0 (the CLI without --steps, a daemon job with the model's default) is the one rule's:
// a Lightning LoRA's 4 or 8 (its name, else 8; the fewest of several), 8 for the lightning flag
// alone, else the model's 50; a step count the job gives stays.
TEST(EngineLora, StepsZeroTakesLightningsOrTheModelsCount) {
  auto engine = open_tiny();
  const std::string dir = ::testing::TempDir();
  const std::string four = dir + "/Qwen-Image-Lightning-4steps-V1.0.safetensors";
  const std::string eight = dir + "/Qwen-Image-Lightning-8steps-V1.1.safetensors";
  const std::string plain = dir + "/qwen-lightning-distill.safetensors";  // no step count named
  for (const auto& f : {four, eight, plain})
    std::filesystem::copy_file(samples("lightx2v.safetensors"), f,
                               std::filesystem::copy_options::overwrite_existing);
  auto total = [&](const std::vector<std::string>& loras, bool flag, int steps) {
    auto p = job();
    p.steps = steps;
    p.lightning = flag;
    for (const auto& l : loras) p.loras.push_back({l, 1.0});
    int seen = 0;
    engine->run(p, [&](const qwen::ProgressInfo& info) {
      seen = info.total;
      return true;
    });
    return seen;
  };
  EXPECT_EQ(total({four}, false, 0), 4);
  EXPECT_EQ(total({eight}, false, 0), 8);
  EXPECT_EQ(total({plain}, false, 0), 8);
  EXPECT_EQ(total({eight, four}, false, 0), 4);
  EXPECT_EQ(total({}, true, 0), 8);
  EXPECT_EQ(total({four}, true, 0), 4);
  EXPECT_EQ(total({samples("kohya_musubi.safetensors")}, false, 0), 50);  // not Lightning
  EXPECT_EQ(total({four}, false, 3), 3);
  EXPECT_EQ(total({}, true, 2), 2);
  // Steps 0 with a Lightning LoRA is the same image as 4 steps, CFG 1 and shift 3 spelled out.
  auto defaults = job();
  defaults.steps = 0;
  defaults.loras = {{four, 1.0}};
  auto spelled = defaults;
  spelled.steps = 4;
  spelled.true_cfg_scale = 1.0f;
  spelled.shift = 3.0;
  EXPECT_EQ(pixels(*engine, defaults), pixels(*engine, spelled));
  for (const auto& f : {four, eight, plain}) std::filesystem::remove(f);
}
