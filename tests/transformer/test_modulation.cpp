// The timestep-only modulation (timestep embedding, img_mod / txt_mod of every block, norm_out)
// computed once and shared between two forward passes at the same timestep (true CFG), exactly.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/fixtures.h"
#include "common/tiny_transformer.h"
#include "models/transformer.h"

using qwen::models::ImageShape;
using qwen::models::TimestepModulation;

namespace {

void check_shared_modulation(bool zero_cond_t) {
  SCOPED_TRACE(zero_cond_t ? "zero_cond_t" : "plain");
  auto tr = qwen::test::load_transformer(qwen::test::tiny_model_dir(), zero_cond_t);
  torch::NoGradGuard ng;
  const int64_t B = 2, C = tr->config().joint_attention_dim;
  std::vector<ImageShape> shapes{{1, 4, 6}};
  if (zero_cond_t) shapes.push_back({1, 2, 3});
  const int64_t S = zero_cond_t ? 30 : 24;
  torch::manual_seed(3);
  const auto x = torch::randn({B, S, 64});
  const auto pos = torch::randn({B, 7, C}), neg = torch::randn({B, 5, C});
  const auto t = torch::full({B}, 0.7f);

  const auto ref_pos = tr->forward(x, pos, {}, t, shapes);
  const auto ref_neg = tr->forward(x, neg, {}, t, shapes);

  TimestepModulation mod;
  const int64_t before = tr->modulation_computations();
  const auto got_pos = tr->forward(x, pos, {}, t, shapes, {}, &mod);
  const auto got_neg = tr->forward(x, neg, {}, t, shapes, {}, &mod);
  EXPECT_EQ(tr->modulation_computations() - before, 1);
  EXPECT_EQ(mod.blocks.size(), size_t(tr->config().num_layers));
  EXPECT_TRUE(torch::equal(got_pos, ref_pos));
  EXPECT_TRUE(torch::equal(got_neg, ref_neg));

  // Another timestep tensor, even with equal values, is never served from the cache.
  const auto same_values = t.clone();
  tr->forward(x, pos, {}, same_values, shapes, {}, &mod);
  EXPECT_EQ(tr->modulation_computations() - before, 2);
  const auto t2 = torch::full({B}, 0.3f);
  const auto got2 = tr->forward(x, pos, {}, t2, shapes, {}, &mod);
  EXPECT_EQ(tr->modulation_computations() - before, 3);
  EXPECT_TRUE(torch::equal(got2, tr->forward(x, pos, {}, t2, shapes)));
  EXPECT_TRUE(mod.timestep.is_same(t2));
}

}  // namespace

TEST(TimestepModulation, SharedBetweenPassesExactly) { check_shared_modulation(false); }

TEST(TimestepModulation, SharedBetweenPassesExactlyWithZeroCondT) { check_shared_modulation(true); }
