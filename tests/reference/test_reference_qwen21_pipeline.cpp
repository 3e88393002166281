// QwenImage21Pipeline (Qwen-Image-2.1, issue #15) through the engine vs diffusers 0.42.1 on a fresh
// random tiny model folder every run (gen_qwen21_pipeline.py): text to image (output_resolution,
// sizes floored to 32; a batch of 2 prompts of different lengths), edit with 2 references (one RGBA
// with transparency, one RGB), true CFG with a reference, Turbo (model_index.json sample_sigmas;
// the step count ignored), each with and without the KV cache against the reference's matching
// use_kv_cache: the final packed latents (float32 noise) and the RGBA output within 1 level. Also
// the engine's errors for what 2.1 cannot do, and Exact geometry (the last input's pixel grid).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>
#include <string>

#include "common/fixtures.h"
#include "image/png.h"
#include "pipelines/engine_qwen21.h"
#include "reference_case.h"

namespace {

using qwen::EngineError;
using qwen::PipelineKind;
using qwen::RunParams;
using qwen::pipelines::Qwen21Engine;

std::unique_ptr<Qwen21Engine> open_engine(const std::string& dir) {
  qwen::EngineOptions o;
  o.model_dir = dir;
  o.device = "cpu";
  o.dtype = "float32";
  o.threads = 1;
  o.log = [](const std::string&) {};
  EXPECT_TRUE(qwen::pipelines::is_qwen21_model(o)) << dir;
  auto e = qwen::Engine::open(o);
  auto* q = dynamic_cast<Qwen21Engine*>(e.get());
  if (!q) return nullptr;
  e.release();
  return std::unique_ptr<Qwen21Engine>(q);
}

RunParams params_of(const nlohmann::json& c, const qwen::reftest::ReferenceCase& ref) {
  RunParams p;
  if (c["prompt"].is_array())
    p.prompts = c["prompt"].get<std::vector<std::string>>();
  else
    p.prompts = {c["prompt"].get<std::string>()};
  if (c.contains("negative_prompt")) p.negative_prompts = {c["negative_prompt"].get<std::string>()};
  if (c.contains("true_cfg_scale")) p.true_cfg_scale = c["true_cfg_scale"].get<float>();
  if (c.contains("width")) p.width = c["width"].get<int>();
  if (c.contains("height")) p.height = c["height"].get<int>();
  p.output_resolution = c["output_resolution"].get<int>();
  p.steps = c["num_inference_steps"].get<int>();
  p.seed = c["seed"].get<int64_t>();
  if (c.contains("images")) {
    for (int i : c["images"].get<std::vector<int>>())
      p.images.push_back(qwen::read_png(ref.dir() + "/ref_" + std::to_string(i) + ".png"));
    p.pipeline = p.images.size() > 1 ? PipelineKind::EditPlus : PipelineKind::Edit;
  }
  return p;
}

torch::Tensor levels(const qwen::ImageU8& im) {
  return torch::from_blob(const_cast<uint8_t*>(im.pixels.data()),
                          {1, im.height, im.width, im.channels}, torch::kUInt8)
      .to(torch::kFloat32);
}

TEST(ReferenceDifferential, Qwen21PipelineMatchesDiffusers) {
  torch::set_num_threads(1);
  QWEN_REFERENCE_CASE(ref, "pipeline", "", "gen_qwen21_pipeline.py");
  const auto t = ref.tensors("qwen21_pipeline");
  auto engine = open_engine(ref.model_dir());
  ASSERT_TRUE(engine);
  EXPECT_EQ(engine->info().family, "qwen-image-2.1");
  EXPECT_TRUE(engine->info().can_edit);
  EXPECT_FALSE(engine->sample_sigmas());
  auto turbo = open_engine(ref.dir() + "/model_turbo");
  ASSERT_TRUE(turbo);
  ASSERT_TRUE(turbo->sample_sigmas());
  EXPECT_EQ(turbo->sample_sigmas()->size(), ref.json()["turbo_sigmas"].size());

  for (const auto& [name, c] : ref.json()["cases"].items()) {
    auto& e = name == "turbo" ? *turbo : *engine;
    for (bool kv : {true, false}) {
      RunParams p = params_of(c, ref);
      p.kv_cache = kv;
      const std::string tag = name + (kv ? "_kv" : "_nokv");
      const std::string where = tag + ", seed " + std::to_string(ref.seed()) + ", " + c.dump();
      qwen::pipelines::qwen21::Trace21 trace;
      const auto images = e.run_traced(p, {}, &trace);
      ASSERT_EQ(images.size(), p.prompts.size()) << where;
      for (const auto& im : images) {
        EXPECT_EQ(im.channels, 4) << where;
        EXPECT_EQ(im.width, c["size"][0].get<int>()) << where;
        EXPECT_EQ(im.height, c["size"][1].get<int>()) << where;
      }
      EXPECT_TRUE(qwen::test::AllClose(trace.final_latents, t.at(tag + "_latents"),
                                       qwen::reftest::kComponentAtol,
                                       qwen::reftest::kComponentRtol))
          << where;
      const auto& expected = t.at(tag + "_image");
      ASSERT_EQ(expected.size(0), static_cast<int64_t>(images.size())) << where;
      for (size_t i = 0; i < images.size(); ++i) {
        ASSERT_EQ(levels(images[i]).sizes(), expected.slice(0, i, i + 1).sizes()) << where;
        EXPECT_LE((levels(images[i]) - expected.slice(0, i, i + 1)).abs().max().item<float>(), 1.0f)
            << where << ", image " << i;
      }
      if (name == "turbo") {
        // The Turbo sigmas set the step count: another --steps gives the same run.
        p.steps = 2;
        qwen::pipelines::qwen21::Trace21 again;
        e.run_traced(p, {}, &again);
        EXPECT_TRUE(torch::equal(again.final_latents, trace.final_latents)) << where;
        EXPECT_EQ(again.sigmas, trace.sigmas) << where;
      }
    }
  }

  {
    // Exact geometry: the edit comes back on the last input's pixel grid, RGBA.
    RunParams p = params_of(ref.json()["cases"]["edit"], ref);
    p.geometry = qwen::GeometryMode::Exact;
    p.width = p.height = 64;  // ignored in Exact mode
    const auto images = engine->run(p, {});
    ASSERT_EQ(images.size(), 1u);
    EXPECT_EQ(images[0].width, p.images.back().width);
    EXPECT_EQ(images[0].height, p.images.back().height);
    EXPECT_EQ(images[0].channels, 4);
  }

  // What 2.1 cannot do, refused by name.
  RunParams bad;
  bad.prompts = {"x"};
  bad.steps = 1;
  bad.images.push_back(qwen::read_png(ref.dir() + "/ref_1.png"));
  for (auto kind : {PipelineKind::Img2Img, PipelineKind::Inpaint, PipelineKind::Decompose,
                    PipelineKind::EditInpaint}) {
    bad.pipeline = kind;
    try {
      engine->run(bad, {});
      ADD_FAILURE() << "pipeline " << qwen::to_string(kind) << " was accepted";
    } catch (const EngineError& err) {
      EXPECT_NE(std::string(err.what()).find("Qwen-Image-2.1"), std::string::npos) << err.what();
    }
  }
  bad.pipeline = PipelineKind::EditPlus;
  bad.images.resize(11, bad.images[0]);
  try {
    engine->run(bad, {});
    ADD_FAILURE() << "11 references were accepted";
  } catch (const EngineError& err) {
    EXPECT_NE(std::string(err.what()).find("1 to 10"), std::string::npos) << err.what();
  }
}

}  // namespace

// LoRAs on Qwen-Image-2.1 (issue #14 "the same mechanism must serve Qwen-Image-2.1") vs diffusers'
// load_lora_weights + peft on a fresh random diffusers/PEFT LoRA (gen_qwen21_pipeline.py part lora:
// half of the transformer's Linear modules, a random strength): text to image and an edit with one
// RGBA reference within 1 level; the same jobs without the LoRA are further off (the LoRA matters).
TEST(ReferenceDifferential, Qwen21LoraMatchesDiffusers) {
  torch::set_num_threads(1);
  QWEN_REFERENCE_CASE(ref, "lora", "", "gen_qwen21_pipeline.py");
  const auto t = ref.tensors("qwen21_lora");
  auto engine = open_engine(ref.model_dir());
  ASSERT_TRUE(engine);
  for (const auto& [name, c] : ref.json()["cases"].items()) {
    RunParams p;
    p.prompts = {c["prompt"].get<std::string>()};
    p.output_resolution = c["output_resolution"].get<int>();
    p.steps = c["num_inference_steps"].get<int>();
    p.seed = c["seed"].get<int64_t>();
    if (c.contains("images")) {
      for (const auto& f : c["images"])
        p.images.push_back(qwen::read_png(ref.dir() + "/" + f.get<std::string>()));
      p.pipeline = PipelineKind::Edit;
    }
    const std::string where = name + ", seed " + std::to_string(ref.seed()) + ", " + c.dump();
    const auto& want = t.at(name + "_image");
    const auto without = engine->run(p, {});
    p.loras = {{ref.dir() + "/" + c["lora"]["file"].get<std::string>(),
                c["lora"]["strength"].get<double>()}};
    const auto with = engine->run(p, {});
    ASSERT_EQ(with.size(), 1u) << where;
    ASSERT_EQ(with[0].width, c["size"][0].get<int>()) << where;
    ASSERT_EQ(with[0].height, c["size"][1].get<int>()) << where;
    EXPECT_LE((levels(with[0]) - want).abs().max().item<float>(), qwen::reftest::kPngMaxLevels)
        << where;
    EXPECT_GT((levels(without[0]) - want).abs().max().item<float>(), qwen::reftest::kPngMaxLevels)
        << "the LoRA did not change the reference's image: " << where;
  }
}
