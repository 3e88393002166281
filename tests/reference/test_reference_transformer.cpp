// QwenImageTransformer2DModel vs diffusers on a fresh random configuration (layers, heads, head dim,
// RoPE axes split, text width, zero_cond_t, batch, image segments, text mask) every run.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include "common/fixtures.h"
#include "io/safetensors.h"
#include "models/transformer.h"
#include "models/weights.h"
#include "reference_case.h"

namespace {

TEST(ReferenceDifferential, TransformerMatchesDiffusers) {
  torch::set_num_threads(1);
  QWEN_REFERENCE_CASE(ref, "transformer");
  auto cfg = qwen::models::TransformerConfig::from_json_file(ref.model_dir() +
                                                             "/transformer/config.json");
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
                            t.at("timestep"), shapes);
  EXPECT_TRUE(qwen::test::AllClose(out, t.at("output"), qwen::reftest::kComponentAtol,
                                   qwen::reftest::kComponentRtol))
      << "seed " << ref.seed() << ", config " << ref.json()["config"]["transformer"].dump()
      << ", case " << p.dump();
}

}  // namespace
