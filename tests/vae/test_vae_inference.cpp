// The VAE's inference economies: 2-D kernels prepared once (no per-call slicing or copying of the
// 5-D weights) and the automatic tiling switch (untiled, bit for bit, below the threshold).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/fixtures.h"
#include "models/vae.h"

using namespace qwen::models;

namespace {

AutoencoderKLQwenImage load_tiny() {
  torch::set_num_threads(2);
  return load_vae(qwen::test::tiny_model_dir() + "/vae", torch::kFloat, torch::kCPU);
}

std::vector<std::shared_ptr<vae::CausalConv3d>> convs(AutoencoderKLQwenImage& v) {
  std::vector<std::shared_ptr<vae::CausalConv3d>> out;
  for (const auto& m : v->modules(false))
    if (auto c = std::dynamic_pointer_cast<vae::CausalConv3d>(m)) out.push_back(c);
  return out;
}

}  // namespace

TEST(VaeInference, KernelsArePreparedOnce) {
  auto v = load_tiny();
  const auto cs = convs(v);
  ASSERT_GT(cs.size(), 20u);
  int taps3 = 0;
  for (const auto& c : cs) {
    const auto k = c->kernel();
    const auto last = c->weight.select(2, c->weight.size(2) - 1);
    EXPECT_TRUE(k.is_contiguous());
    EXPECT_TRUE(torch::equal(k, last));
    EXPECT_EQ(c->kernel().data_ptr(), k.data_ptr());  // the same tensor every call
    taps3 += c->weight.size(2) == 3;
  }
  EXPECT_GT(taps3, 10);  // the 3x3x3 convs, whose last tap is a strided slice of the weight
  // A replaced weight is never served from the stale kernel.
  auto& c = *cs.front();
  torch::NoGradGuard ng;
  c.weight.set_data(c.weight.clone() * 2);
  EXPECT_TRUE(torch::equal(c.kernel(), c.weight.select(2, c.weight.size(2) - 1)));
}

// The layout the accelerators get (prepare() re-lays the parameter out in place there).
TEST(VaeInference, ContiguousTapsKeepTheValues) {
  torch::manual_seed(0);
  const auto w = torch::randn({4, 3, 3, 3, 3});
  const auto r = vae::with_contiguous_taps(w);
  EXPECT_EQ(r.sizes(), w.sizes());
  EXPECT_TRUE(torch::equal(r, w));
  for (int t = 0; t < 3; ++t) EXPECT_TRUE(r.select(2, t).is_contiguous()) << t;
  EXPECT_FALSE(w.select(2, 2).is_contiguous());
}

TEST(VaeInference, TilingRule) {
  VaeTiling t;  // automatic, 4 MP, tiles of 256
  EXPECT_FALSE(vae_should_tile(t, 1, 1328, 1328, torch::kBFloat16, std::nullopt));
  EXPECT_FALSE(vae_should_tile(t, 4, 2048, 2048, torch::kFloat, std::nullopt));  // = the limit
  EXPECT_TRUE(vae_should_tile(t, 1, 2048, 2064, torch::kBFloat16, std::nullopt));
  // The memory rule (CUDA): the estimate against what the process can still get.
  const int64_t need = vae_peak_bytes(1, 1328, 1328, torch::kBFloat16);
  EXPECT_GT(need, int64_t(3) << 30);
  EXPECT_LT(need, int64_t(5) << 30);
  EXPECT_GT(vae_peak_bytes(1, 1328, 1328, torch::kFloat), need);
  EXPECT_EQ(vae_peak_bytes(2, 1328, 1328, torch::kBFloat16), 2 * need);
  EXPECT_FALSE(vae_should_tile(t, 1, 1328, 1328, torch::kBFloat16, need));
  EXPECT_TRUE(vae_should_tile(t, 1, 1328, 1328, torch::kBFloat16, need - 1));
  // Never for an image that fits one tile; always when forced; never when off.
  EXPECT_FALSE(vae_should_tile(t, 1, 256, 256, torch::kBFloat16, 0));
  VaeTiling forced{true, 256, 192};
  EXPECT_TRUE(vae_should_tile(forced, 1, 512, 256, torch::kBFloat16, std::nullopt));
  VaeTiling off;
  off.automatic = false;
  EXPECT_FALSE(vae_should_tile(off, 1, 8192, 8192, torch::kBFloat16, 0));
}

// The switch on the tiny model with small tiles: below the threshold exactly the untiled result,
// above it exactly diffusers' tiled path.
TEST(VaeInference, AutomaticTilingSwitchesAboveTheThreshold) {
  auto v = load_tiny();
  torch::manual_seed(5);
  const auto z = torch::randn({1, 16, 1, 8, 12});  // 64 x 96 pixels
  const auto x = torch::rand({1, 3, 1, 64, 96}) * 2 - 1;
  auto with = [&](VaeTiling t) {
    v->set_tiling(t);
    return std::make_pair(v->decode(z), v->encode(x).mean);
  };
  VaeTiling off{false, 32, 24};
  off.automatic = false;
  VaeTiling forced{true, 32, 24};
  VaeTiling below{false, 32, 24};
  below.auto_max_pixels = 64 * 96;  // not above: untiled
  VaeTiling above{false, 32, 24};
  above.auto_max_pixels = 64 * 96 - 1;
  const auto [d_off, e_off] = with(off);
  const auto [d_forced, e_forced] = with(forced);
  const auto [d_below, e_below] = with(below);
  const auto [d_above, e_above] = with(above);
  EXPECT_FALSE(torch::equal(d_off, d_forced));  // the two paths differ on this input
  EXPECT_FALSE(torch::equal(e_off, e_forced));
  EXPECT_TRUE(torch::equal(d_below, d_off));
  EXPECT_TRUE(torch::equal(e_below, e_off));
  EXPECT_TRUE(torch::equal(d_above, d_forced));
  EXPECT_TRUE(torch::equal(e_above, e_forced));
  // The default threshold leaves the fixture sizes untiled.
  v->set_tiling(VaeTiling{});
  EXPECT_TRUE(torch::equal(v->decode(z), d_off));
}
