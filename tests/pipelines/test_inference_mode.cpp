// The engine runs in c10::InferenceMode (loading and jobs) and no model parameter requires grad.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/fixtures.h"
#include "io/safetensors.h"
#include "models/text_encoder.h"
#include "models/transformer.h"
#include "models/vae.h"
#include "pipelines/engine.h"
#include "pipelines/engine_impl.h"

namespace {

int64_t count_requiring_grad(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.requires_grad();
  return n;
}

}  // namespace

TEST(InferenceMode, ModelsCreateNoParameterThatRequiresGrad) {
  namespace m = qwen::models;
  m::TransformerConfig tc;
  tc.num_layers = 1;
  tc.num_attention_heads = 2;
  tc.attention_head_dim = 16;
  tc.axes_dims_rope = {4, 6, 6};
  tc.joint_attention_dim = 8;
  tc.use_additional_t_cond = true;  // the torch::nn::Embedding table too
  m::QwenImageTransformer2DModel t(tc);
  EXPECT_GT(t->parameters().size(), 0u);
  EXPECT_EQ(count_requiring_grad(*t), 0);

  auto vae = m::load_vae(qwen::test::tiny_model_dir() + "/vae", torch::kFloat32, torch::kCPU);
  EXPECT_EQ(vae->parameters().size(), 194u);
  EXPECT_EQ(count_requiring_grad(*vae), 0);
  m::AutoencoderKLQwenImage fresh(vae->config());  // before loading too
  EXPECT_EQ(count_requiring_grad(*fresh), 0);

  auto te = m::qwenvl::load_text_encoder(qwen::test::tiny_edit_model_dir() + "/text_encoder",
                                         torch::kFloat32, torch::kCPU, /*with_vision=*/true);
  EXPECT_EQ(count_requiring_grad(*te), 0);
}

TEST(InferenceMode, TheEngineLoadsAndRunsInInferenceMode) {
  ASSERT_FALSE(c10::InferenceMode::is_enabled());
  qwen::EngineOptions o;
  o.model_dir = qwen::test::tiny_model_dir();
  o.device = "cpu";
  o.threads = 2;
  auto engine = qwen::Engine::open(o);
  auto& qe = dynamic_cast<qwen::pipelines::QwenEngine&>(*engine);
  for (auto* m : {static_cast<torch::nn::Module*>(qe.transformer().get()),
                  static_cast<torch::nn::Module*>(qe.vae().get())}) {
    for (const auto& p : m->named_parameters()) {
      EXPECT_TRUE(p.value().is_inference()) << p.key();
      EXPECT_FALSE(p.value().requires_grad()) << p.key();
    }
  }
  qwen::RunParams p;
  p.prompts = {"a cat"};
  p.negative_prompts = {" "};
  p.width = 32;
  p.height = 32;
  p.steps = 2;
  int calls = 0;
  auto images = engine->run(p, [&](const qwen::ProgressInfo&) {
    ++calls;
    EXPECT_TRUE(c10::InferenceMode::is_enabled());
    return true;
  });
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(images.size(), 1u);
  EXPECT_FALSE(c10::InferenceMode::is_enabled());  // restored for the caller
}

// Each component's load is measured and logged (the GB/s line; on the CPU the tensors are mapped).
TEST(InferenceMode, TheEngineReportsEachComponentsLoad) {
  std::vector<std::string> lines;
  qwen::EngineOptions o;
  o.model_dir = qwen::test::tiny_model_dir();
  o.device = "cpu";
  o.threads = 2;
  o.log = [&](const std::string& m) { lines.push_back(m); };
  auto engine = qwen::Engine::open(o);
  const auto& loads = engine->info().loads;
  ASSERT_EQ(loads.size(), 3u);
  EXPECT_EQ(loads[0].component, "transformer");
  EXPECT_EQ(loads[1].component, "vae");
  EXPECT_EQ(loads[2].component, "text_encoder");
  for (const auto& l : loads) EXPECT_GT(l.bytes, 0) << l.component;
  // Every stored byte of the transformer and VAE files (all their tensors are parameters).
  for (int i : {0, 1}) {
    const auto store =
        qwen::io::TensorStore::open(qwen::test::tiny_model_dir() + "/" + loads[i].component);
    EXPECT_EQ(loads[i].bytes, int64_t(store.total_bytes())) << loads[i].component;
  }
  ASSERT_EQ(lines.size(), 3u);  // no attention line on the CPU
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(lines[i].rfind(loads[i].component + ": ", 0), 0u) << lines[i];
    EXPECT_NE(lines[i].find("GB/s"), std::string::npos) << lines[i];
  }
  EXPECT_TRUE(engine->info().attention.empty());
}
