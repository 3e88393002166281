// Packing, seeded noise and the CFG combination.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/fixtures.h"
#include "pipelines/latents.h"

using namespace qwen::pipelines;
using qwen::test::AllClose;
using qwen::test::fixture_path;

TEST(Latents, PackingOrder) {
  // channel = c * 4 + dy * 2 + dx, token = row-major over 2x2 patches.
  auto lat = torch::arange(1 * 16 * 4 * 6, torch::kFloat32).view({1, 1, 16, 4, 6});
  auto packed = pack_latents(lat);
  ASSERT_EQ(packed.sizes(), (std::vector<int64_t>{1, 6, 64}));
  for (int64_t tok : {0, 4}) {
    const int64_t i = tok / 3, j = tok % 3;
    for (int64_t c : {0, 7, 15})
      for (int64_t dy = 0; dy < 2; ++dy)
        for (int64_t dx = 0; dx < 2; ++dx)
          EXPECT_EQ(packed[0][tok][c * 4 + dy * 2 + dx].item<float>(),
                    lat[0][0][c][2 * i + dy][2 * j + dx].item<float>());
  }
  auto back = unpack_latents(packed, 32, 48);
  ASSERT_EQ(back.sizes(), (std::vector<int64_t>{1, 16, 1, 4, 6}));
  EXPECT_TRUE(torch::equal(back.view({1, 1, 16, 4, 6}), lat));
  EXPECT_THROW(unpack_latents(packed, 48, 48), std::invalid_argument);
  EXPECT_EQ(latent_size(100), 12);  // floored: 96 px
  EXPECT_EQ(floor_to_16(100), 96);
}

TEST(Latents, SeededNoiseMatchesReferenceDraws) {
  // pipeline_t2i_cfg1: torch.Generator('cpu').manual_seed(42), randn([1,1,16,8,12]).
  auto t = qwen::test::load_tensors(fixture_path("cases/pipeline_t2i_cfg1/tensors.safetensors"));
  auto gen = make_generator(42);
  auto noise = randn(gen, {1, 1, 16, 8, 12}, torch::kFloat32, torch::kCPU);
  EXPECT_TRUE(torch::equal(noise, t.at("randn_0")));
  EXPECT_TRUE(torch::equal(pack_latents(noise), t.at("initial_latents")));
  // Seed 7, batch 2 in one draw (pipeline_t2i_cfg4).
  auto t4 = qwen::test::load_tensors(fixture_path("cases/pipeline_t2i_cfg4/tensors.safetensors"));
  auto gen7 = make_generator(7);
  EXPECT_TRUE(
      torch::equal(randn(gen7, {2, 1, 16, 12, 8}, torch::kFloat32, torch::kCPU), t4.at("randn_0")));
}

TEST(Latents, TrueCfgPreservesConditionalNorm) {
  auto cond = torch::randn({2, 5, 64});
  auto uncond = torch::randn({2, 5, 64});
  auto out = true_cfg(cond, uncond, 4.0);
  auto comb = uncond + 4.0 * (cond - uncond);
  EXPECT_TRUE(AllClose(out.norm(2, {-1}), cond.norm(2, {-1}), 1e-5, 1e-5));
  // Same direction as the plain CFG combination.
  auto cos = (out * comb).sum(-1) / (out.norm(2, {-1}) * comb.norm(2, {-1}));
  EXPECT_TRUE(AllClose(cos, torch::ones({2, 5}), 1e-5));
  // Scale 1: the conditional prediction itself.
  EXPECT_TRUE(AllClose(true_cfg(cond, uncond, 1.0), cond, 1e-6));
}
