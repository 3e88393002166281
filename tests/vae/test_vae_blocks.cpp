#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/fixtures.h"
#include "models/vae_blocks.h"

using namespace qwen::models::vae;
using qwen::test::AllClose;

// A 3x3x3 causal conv on one frame equals the reference formulation: pad T by 2 zero frames in
// front (and H/W by 1), then an unpadded Conv3d.
TEST(VaeBlocks, CausalConvSingleFrameEqualsPaddedConv3d) {
  torch::manual_seed(0);
  CausalConv3d conv(5, 7, 3, 3, 1);
  torch::NoGradGuard ng;
  conv.weight.normal_();
  conv.bias.normal_();
  const torch::Tensor x = torch::randn({2, 5, 1, 6, 9});
  const torch::Tensor padded = torch::constant_pad_nd(x, {1, 1, 1, 1, 2, 0}, 0);
  const torch::Tensor ref = torch::conv3d(padded, conv.weight, conv.bias);
  EXPECT_TRUE(AllClose(conv.forward(x.select(2, 0)).unsqueeze(2), ref, 1e-5, 1e-5));

  CausalConv3d pointwise(5, 4, 1, 1, 0);
  pointwise.weight.normal_();
  pointwise.bias.normal_();
  const torch::Tensor ref1 = torch::conv3d(x, pointwise.weight, pointwise.bias);
  EXPECT_TRUE(AllClose(pointwise.forward(x.select(2, 0)).unsqueeze(2), ref1, 1e-5, 1e-5));
}

TEST(VaeBlocks, RmsNormIsL2NormalisationTimesSqrtCTimesGamma) {
  torch::manual_seed(1);
  RmsNorm norm(6, 3);
  torch::NoGradGuard ng;
  norm.gamma.uniform_(0.5, 1.5);
  torch::Tensor x = torch::randn({2, 6, 4, 5});
  x[0][0][0][0] = 0;  // a location with tiny norm stays finite
  const torch::Tensor xd = x.to(torch::kDouble);
  const torch::Tensor ref = xd / xd.pow(2).sum(1, true).sqrt().clamp_min(1e-12) * std::sqrt(6.0) *
                            norm.gamma.to(torch::kDouble).view({6, 1, 1});
  EXPECT_TRUE(AllClose(norm.forward(x).to(torch::kDouble), ref, 1e-6, 1e-6));
  const torch::Tensor zero = norm.forward(torch::zeros({1, 6, 2, 2}));
  EXPECT_TRUE(torch::isfinite(zero).all().item<bool>());

  // bf16: normalise in float32, round to bf16, then the two bf16 multiplies.
  norm.to(torch::kBFloat16);
  const torch::Tensor xb = x.to(torch::kBFloat16);
  const torch::Tensor xf = xb.to(torch::kFloat);
  const torch::Tensor nb = (xf / xf.norm(2, {1}, true).clamp_min(1e-12)).to(torch::kBFloat16);
  const torch::Tensor refb = nb * std::sqrt(6.0) * norm.gamma.view({6, 1, 1});
  const torch::Tensor got = norm.forward(xb);
  EXPECT_EQ(got.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(got, refb));
}

TEST(VaeBlocks, ResampleShapesAndChannelHalving) {
  torch::NoGradGuard ng;
  Resample down(4, "downsample2d"), down3(4, "downsample3d"), up(8, "upsample3d");
  EXPECT_EQ(down.forward(torch::randn({1, 4, 6, 10})).sizes(), (std::vector<int64_t>{1, 4, 3, 5}));
  EXPECT_EQ(down3.forward(torch::randn({1, 4, 6, 10})).sizes(), (std::vector<int64_t>{1, 4, 3, 5}));
  EXPECT_EQ(up.forward(torch::randn({1, 8, 3, 5})).sizes(), (std::vector<int64_t>{1, 4, 6, 10}));
  // time_conv is registered (checkpoint keys) but never used for single frames.
  EXPECT_EQ(up.named_parameters().size(), 4u);
  EXPECT_THROW(Resample(4, "sideways"), std::invalid_argument);
}
