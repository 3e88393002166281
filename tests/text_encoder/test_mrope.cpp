// M-RoPE position ids (get_rope_index) and cos/sin tables.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/fixtures.h"
#include "models/mrope.h"

namespace qt = qwen::test;
namespace vl = qwen::models::qwenvl;

namespace {
std::map<std::string, torch::Tensor> case_tensors(const std::string& name) {
  return qt::load_tensors(qt::fixture_path("cases/" + name + "/tensors.safetensors"));
}
}  // namespace

TEST(MRope, TextOnlyPositionsMatchFixture) {
  auto t = case_tensors("text_encoder_t2i");
  auto r = vl::get_rope_index(t["input_ids"], t["attention_mask"], {}, {}, 2);
  ASSERT_TRUE(torch::equal(r.position_ids, t["position_ids"]));
  // Padded slots hold 1, valid ones 0..n-1 on all three axes.
  auto m = t["attention_mask"];
  const int64_t n1 = m[1].sum().item<int64_t>();
  ASSERT_LT(n1, m.size(1)) << "fixture should have a padded second prompt";
  EXPECT_EQ(r.position_ids[2][1][n1].item<int64_t>(), 1);
  EXPECT_EQ(r.position_ids[0][1][n1 - 1].item<int64_t>(), n1 - 1);
  EXPECT_EQ(r.rope_deltas[1][0].item<int64_t>(), n1 - m.size(1));
}

TEST(MRope, EditPositionsAndDeltasMatchFixture) {
  for (const char* name : {"text_encoder_edit", "text_encoder_edit_plus"}) {
    SCOPED_TRACE(name);
    auto t = case_tensors(name);
    auto r = vl::get_rope_index(t["input_ids"], t["attention_mask"], t["image_grid_thw"], {}, 2);
    EXPECT_TRUE(torch::equal(r.position_ids, t["position_ids"]));
    EXPECT_TRUE(torch::equal(r.rope_deltas, t["rope_deltas"]))
        << r.rope_deltas << " vs " << t["rope_deltas"];
  }
}

TEST(MRope, SpecWorkedExampleEdit1024) {
  // 64 prefix tokens, <|vision_start|>, 37x37 merged image tokens, <|vision_end|>, 3 prompt tokens.
  std::vector<int64_t> ids(64, 100);
  ids.push_back(151652);
  ids.insert(ids.end(), 37 * 37, 151655);
  ids.push_back(151653);
  ids.insert(ids.end(), {9, 10, 11});
  auto input = torch::tensor(ids, torch::kInt64).unsqueeze(0);
  auto grid = torch::tensor({1, 74, 74}, torch::kInt64).view({1, 3});
  auto r = vl::get_rope_index(input, {}, grid, {}, 2);
  auto P = r.position_ids;
  EXPECT_EQ(P[0][0][63].item<int64_t>(), 63);
  EXPECT_EQ(P[1][0][64].item<int64_t>(), 64);
  // image token (i, j) = (5, 7) -> (65, 70, 72)
  const int64_t k = 65 + 5 * 37 + 7;
  EXPECT_EQ(P[0][0][k].item<int64_t>(), 65);
  EXPECT_EQ(P[1][0][k].item<int64_t>(), 70);
  EXPECT_EQ(P[2][0][k].item<int64_t>(), 72);
  EXPECT_EQ(P[0][0][1434].item<int64_t>(), 102);  // <|vision_end|>
  EXPECT_EQ(P[2][0][1435].item<int64_t>(), 103);
  EXPECT_EQ(r.rope_deltas.item<int64_t>(), 106 - static_cast<int64_t>(ids.size()));
}

TEST(MRope, MismatchedImagesGiveClearErrors) {
  std::vector<int64_t> ids = {1, 151652, 151655, 151655, 151653, 2, 151652, 151655, 151653};
  auto input = torch::tensor(ids, torch::kInt64).unsqueeze(0);
  auto one_grid = torch::tensor({1, 2, 4}, torch::kInt64).view({1, 3});  // 2 merged tokens
  try {
    vl::get_rope_index(input, {}, one_grid, {}, 2);
    FAIL() << "expected an error: two images, one grid";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("image_grid_thw"), std::string::npos) << e.what();
  }
  auto big = torch::tensor({1, 8, 8}, torch::kInt64).view({1, 3});  // 16 tokens, only 2 present
  EXPECT_THROW(vl::get_rope_index(input.narrow(1, 0, 5), {}, big, {}, 2), std::invalid_argument);
  EXPECT_THROW(vl::get_rope_index(torch::zeros({3}, torch::kInt64), {}, {}, {}, 2),
               std::invalid_argument);
}

TEST(MRope, TextOnlyTablesAreStandardRope) {
  const int64_t D = 16;
  auto pos = torch::arange(5, torch::kInt64).view({1, 1, 5}).expand({3, 1, 5});
  auto [cos, sin] = vl::mrope_cos_sin(pos, D, 1e6, {2, 3, 3}, torch::kFloat32);
  ASSERT_EQ(cos.sizes(), (std::vector<int64_t>{1, 5, D}));
  auto inv = vl::rope_inv_freq(D, 1e6);
  auto ang = torch::arange(5, torch::kFloat32).unsqueeze(1) * inv;
  auto emb = torch::cat({ang, ang}, -1);
  EXPECT_TRUE(torch::equal(cos[0], emb.cos()));
  EXPECT_TRUE(torch::equal(sin[0], emb.sin()));
  // inv_freq[j] = 1 / 1e6^(2j/16)
  EXPECT_NEAR(inv[1].item<double>(), std::pow(1e6, -2.0 / 16), 1e-7);  // float32
}

TEST(MRope, SectionsPickAxesPerDimension) {
  // Distinct t/h/w positions: dims [0,2) and [8,10) follow t, [2,5)/[10,13) h, [5,8)/[13,16) w.
  auto pos = torch::tensor({3, 5, 7}, torch::kInt64).view({3, 1, 1});
  auto [cos, sin] = vl::mrope_cos_sin(pos, 16, 1e6, {2, 3, 3}, torch::kFloat32);
  auto inv = vl::rope_inv_freq(16, 1e6);
  for (int64_t d = 0; d < 16; ++d) {
    const int64_t j = d % 8;
    const double p = j < 2 ? 3 : (j < 5 ? 5 : 7);
    const float expect = std::cos(static_cast<float>(p) * inv[j].item<float>());
    EXPECT_FLOAT_EQ(cos[0][0][d].item<float>(), expect) << "dim " << d;
  }
  // bf16 tables are rounded after the float32 cos/sin.
  auto [cb, sb] = vl::mrope_cos_sin(pos, 16, 1e6, {2, 3, 3}, torch::kBFloat16);
  EXPECT_TRUE(torch::equal(cb, cos.to(torch::kBFloat16)));
}

TEST(MRope, ApplyRopeHalfSplit) {
  auto x = torch::arange(8, torch::kFloat32).view({1, 1, 1, 8});
  auto cos = torch::zeros({1, 1, 8});
  auto sin = torch::ones({1, 1, 8});
  auto y = vl::apply_rope(x, cos, sin);  // = rotate_half(x) = (-x[4:], x[:4])
  auto expect = torch::tensor({-4.f, -5.f, -6.f, -7.f, 0.f, 1.f, 2.f, 3.f}).view({1, 1, 1, 8});
  EXPECT_TRUE(torch::equal(y, expect));
}
