// AutoencoderKLQwenImage vs diffusers on a fresh random configuration (base_dim, res blocks, storage
// dtype) and a random image size every run: posterior mean / logvar, decode(random latents),
// decode(mean).
#include <torch/torch.h>

#include <gtest/gtest.h>

#include "common/fixtures.h"
#include "models/vae.h"
#include "reference_case.h"

namespace {

TEST(ReferenceDifferential, VaeMatchesDiffusers) {
  torch::set_num_threads(1);
  QWEN_REFERENCE_CASE(ref, "vae");
  auto vae = qwen::models::load_vae(ref.model_dir() + "/vae", torch::kFloat32, torch::kCPU);
  vae->eval();
  auto t = ref.tensors("vae");
  const double atol = qwen::reftest::kComponentAtol, rtol = qwen::reftest::kComponentRtol;
  const std::string where = "seed " + std::to_string(ref.seed()) + ", config " +
                            ref.json()["config"]["vae"].dump() + ", " +
                            ref.json()["parts"]["vae"].dump();
  torch::NoGradGuard ng;
  auto post = vae->encode(t.at("image"));
  EXPECT_TRUE(qwen::test::AllClose(post.mean, t.at("mean"), atol, rtol)) << where;
  EXPECT_TRUE(qwen::test::AllClose(post.logvar, t.at("logvar"), atol, rtol)) << where;
  EXPECT_TRUE(qwen::test::AllClose(vae->decode(t.at("latents")), t.at("decoded"), atol, rtol))
      << where;
  EXPECT_TRUE(qwen::test::AllClose(vae->decode(t.at("mean")), t.at("decoded_mean"), atol, rtol))
      << where;
}

}  // namespace
