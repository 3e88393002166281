// Qwen-Image-Layered (issue #16) vs diffusers on a fresh random tiny Layered model every run
// (gen_layered.py): the transformer with the Layer3D RoPE and the additional timestep embedding,
// and QwenImageLayeredPipeline (decompose) on a random partly transparent RGBA image at resolution
// 640 with several layer counts, without CFG and with CFG with and without cfg_normalize. Compared:
// the condition (image) latents, the initial latents, every transformer call's timestep and
// prediction, the latents after every step and the RGBA layers (8-bit, within 1 level).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <iostream>

#include "common/fixtures.h"
#include "image/png.h"
#include "io/safetensors.h"
#include "models/transformer.h"
#include "models/weights.h"
#include "pipelines/engine_impl.h"
#include "reference_case.h"

namespace {

using qwen::reftest::ReferenceCase;

TEST(ReferenceDifferential, LayeredTransformerMatchesDiffusers) {
  torch::set_num_threads(1);
  QWEN_REFERENCE_CASE(ref, "transformer", "", "gen_layered.py");
  auto cfg =
      qwen::models::TransformerConfig::from_json_file(ref.model_dir() + "/transformer/config.json");
  ASSERT_TRUE(cfg.use_layer3d_rope && cfg.use_additional_t_cond);
  qwen::models::QwenImageTransformer2DModel model(cfg);
  auto store = qwen::io::TensorStore::open(ref.model_dir() + "/transformer");
  qwen::models::load_module(*model, store, "transformer", torch::kFloat32, torch::kCPU);
  model->eval();
  auto t = ref.tensors("transformer");
  const auto& p = ref.json()["parts"]["transformer"];
  std::vector<qwen::models::ImageShape> shapes;
  for (const auto& s : p["img_shapes"])
    shapes.push_back({s[0].get<int64_t>(), s[1].get<int64_t>(), s[2].get<int64_t>()});
  torch::Tensor mask;
  if (p["mask"].get<bool>()) mask = t.at("encoder_hidden_states_mask");
  torch::NoGradGuard ng;
  auto out = model->forward(t.at("hidden_states"), t.at("encoder_hidden_states"), mask,
                            t.at("timestep"), shapes, t.at("additional_t_cond"));
  EXPECT_TRUE(qwen::test::AllClose(out, t.at("output"), qwen::reftest::kComponentAtol,
                                   qwen::reftest::kComponentRtol))
      << "seed " << ref.seed() << ", config " << ref.json()["config"]["transformer"].dump()
      << ", case " << p.dump();
}

// Loop tensors: float32 on both sides, a few steps of a tiny model; differences come from
// summation order only.
constexpr double kLoopAtol = 2e-4, kLoopRtol = 2e-4;

void expect_decompose_matches(const ReferenceCase& ref) {
  const auto& p = ref.json()["parts"]["layered"];
  const std::string where = "seed " + std::to_string(ref.seed()) + ", job " + p.dump() +
                            ", config " + ref.json()["config"].dump();
  qwen::EngineOptions opt;
  opt.model_dir = ref.model_dir();
  opt.device = "cpu";
  opt.dtype = "float32";
  opt.threads = 1;
  auto engine = qwen::Engine::open(opt);
  ASSERT_TRUE(engine->info().can_decompose);
  ASSERT_EQ(engine->info().default_pipeline, qwen::PipelineKind::Decompose);
  auto* qe = dynamic_cast<qwen::pipelines::QwenEngine*>(engine.get());
  ASSERT_NE(qe, nullptr);

  qwen::RunParams rp;
  rp.pipeline = qwen::PipelineKind::Decompose;
  rp.prompts = {p["prompt"].get<std::string>()};
  if (!p["negative_prompt"].is_null())
    rp.negative_prompts = {p["negative_prompt"].get<std::string>()};
  rp.true_cfg_scale = p["true_cfg_scale"].get<float>();
  rp.steps = p["steps"].get<int>();
  rp.seed = p["seed"].get<int64_t>();
  rp.layers = p["layers"].get<int>();
  rp.resolution = p["resolution"].get<int>();
  rp.cfg_normalize = p["cfg_normalize"].get<bool>();
  rp.images = {qwen::read_png(ref.dir() + "/" + p["image"].get<std::string>())};
  ASSERT_EQ(rp.images[0].channels, 4);

  c10::InferenceMode inference;
  auto rpp = qwen::pipelines::resolve_params(rp);
  qe->check_decompose_model(rp);
  qe->prepare_decompose(rpp, rp);
  EXPECT_EQ(rpp.width, p["output_size"][0].get<int64_t>()) << where;
  EXPECT_EQ(rpp.height, p["output_size"][1].get<int64_t>()) << where;
  qwen::pipelines::LayeredTrace trace;
  const auto t0 = std::chrono::steady_clock::now();
  auto layers = qe->run_decompose(rpp, rp, {}, &trace);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "[reference] layered: " << rp.layers << " layers " << rpp.width << "x" << rpp.height
            << ", " << rp.steps << " steps"
            << (rp.negative_prompts.empty() ? ", no CFG" : ", CFG " + p["true_cfg_scale"].dump())
            << (rp.cfg_normalize ? " normalized" : "") << ": engine " << secs << " s, reference "
            << p.value("seconds", 0.0) << " s" << std::endl;

  auto t = ref.tensors("layered");
  auto close = [&](const torch::Tensor& a, const torch::Tensor& b, const char* what,
                   double atol = kLoopAtol, double rtol = kLoopRtol) {
    EXPECT_TRUE(qwen::test::AllClose(a.to(torch::kCPU, torch::kFloat32), b, atol, rtol))
        << what << "; " << where;
  };
  close(trace.condition_latents, t.at("image_latents"), "condition (image) latents",
        qwen::reftest::kComponentAtol, qwen::reftest::kComponentRtol);
  close(trace.initial_latents, t.at("initial_latents"), "initial latents", 0, 0);
  const auto& tr = trace.denoise;
  ASSERT_EQ(static_cast<int64_t>(tr.noise_preds.size()), t.at("noise_preds").size(0)) << where;
  for (size_t i = 0; i < tr.noise_preds.size(); ++i) {
    close(tr.transformer_timesteps[i], t.at("timesteps")[i], "transformer timestep", 0, 0);
    close(tr.noise_preds[i], t.at("noise_preds")[i],
          ("transformer prediction of call " + std::to_string(i)).c_str());
  }
  ASSERT_EQ(static_cast<int64_t>(tr.step_latents.size()), t.at("step_latents").size(0)) << where;
  for (size_t i = 0; i < tr.step_latents.size(); ++i)
    close(tr.step_latents[i], t.at("step_latents")[i],
          ("latents after step " + std::to_string(i + 1)).c_str());
  close(trace.final_latents, t.at("final_latents"), "final latents");

  // The RGBA layers, in the reference's order.
  ASSERT_EQ(static_cast<int>(layers.size()), rp.layers) << where;
  auto expected = (t.at("layers") * 255).round().clamp(0, 255).to(torch::kInt32);  // [L, H, W, 4]
  int max_diff = 0;
  for (int i = 0; i < rp.layers; ++i) {
    const auto& img = layers[i];
    ASSERT_EQ(img.channels, 4) << where;
    ASSERT_EQ(img.height, expected.size(1)) << where;
    ASSERT_EQ(img.width, expected.size(2)) << where;
    auto actual = torch::from_blob(const_cast<uint8_t*>(img.pixels.data()),
                                   {img.height, img.width, 4}, torch::kUInt8)
                      .to(torch::kInt32);
    max_diff = std::max(max_diff, (actual - expected[i]).abs().max().item<int>());
  }
  std::cout << "[reference] layered: max level difference " << max_diff << std::endl;
  ::testing::Test::RecordProperty("max_level_diff_layered", std::to_string(max_diff));
  EXPECT_LE(max_diff, qwen::reftest::kPngMaxLevels) << where;

  // The public path (Engine::run: LoRA set, scheduler, validation) gives the same layers.
  if (rp.negative_prompts.empty()) {
    auto again = engine->run(rp);
    ASSERT_EQ(again.size(), layers.size());
    for (size_t i = 0; i < layers.size(); ++i)
      EXPECT_EQ(again[i].pixels, layers[i].pixels) << "layer " << i << "; " << where;
  }
}

TEST(ReferenceDifferential, DecomposeTwoLayersNoCfgMatchesDiffusers) {
  torch::set_num_threads(1);
  QWEN_REFERENCE_CASE(ref, "layered", "--layers 2 --cfg off", "gen_layered.py");
  expect_decompose_matches(ref);
}

TEST(ReferenceDifferential, DecomposeThreeLayersCfgMatchesDiffusers) {
  torch::set_num_threads(1);
  QWEN_REFERENCE_CASE(ref, "layered", "--layers 3 --cfg on --cfg-normalize off", "gen_layered.py");
  expect_decompose_matches(ref);
}

TEST(ReferenceDifferential, DecomposeCfgNormalizeMatchesDiffusers) {
  torch::set_num_threads(1);
  QWEN_REFERENCE_CASE(ref, "layered", "--layers 4 --cfg on --cfg-normalize on", "gen_layered.py");
  expect_decompose_matches(ref);
}

}  // namespace
