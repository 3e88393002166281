// Vision tower: window layout, 2-D rotary table and the tower output against `vision_processor`.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>

#include "common/fixtures.h"
#include "models/text_encoder.h"
#include "models/vision_layout.h"

namespace qt = qwen::test;
namespace vl = qwen::models::qwenvl;

namespace {
vl::VisionConfig tiny_vision() {
  return vl::TextEncoderConfig::from_file(qt::tiny_edit_model_dir() + "/text_encoder/config.json")
      .vision;
}
std::vector<int64_t> to_vec(const torch::Tensor& t) {
  auto c = t.to(torch::kInt64).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}
// Window sizes in merged tokens for one image of merged grid H x W.
std::vector<int64_t> window_sizes(int64_t H, int64_t W) {
  auto grid = torch::tensor(std::vector<int64_t>{1, 2 * H, 2 * W}).view({1, 3});
  auto lay = vl::vision_layout(grid, tiny_vision());
  std::vector<int64_t> s;
  for (size_t i = 1; i < lay.cu_window_seqlens.size(); ++i)
    s.push_back((lay.cu_window_seqlens[i] - lay.cu_window_seqlens[i - 1]) / 4);
  return s;
}
}  // namespace

TEST(VisionLayout, MatchesFixture) {
  auto t = qt::load_tensors(qt::fixture_path("cases/vision_processor/tensors.safetensors"));
  auto lay = vl::vision_layout(t["image_grid_thw"], tiny_vision());
  EXPECT_EQ(lay.num_patches, t["pixel_values"].size(0));
  EXPECT_TRUE(torch::equal(lay.window_index, t["window_index"]));
  EXPECT_EQ(lay.cu_window_seqlens, to_vec(t["cu_window_seqlens"]));
  EXPECT_EQ(lay.cu_seqlens, to_vec(t["cu_seqlens"]));
  auto rot = vl::vision_rotary_pos_emb(lay.pos_ids, tiny_vision().head_dim());
  EXPECT_TRUE(qt::AllClose(rot, t["rotary_pos_emb"], 1e-6, 1e-6));
}

TEST(VisionLayout, SpecWindowTables) {
  // 37x37 merged (1024^2 input): 10x10 windows, first row 9 x 16 then 4.
  auto a = window_sizes(37, 37);
  ASSERT_EQ(a.size(), 100u);
  for (int i = 0; i < 9; ++i) EXPECT_EQ(a[i], 16);
  EXPECT_EQ(a[9], 4);
  EXPECT_EQ(a[99], 1);
  // 14x14: 4x4 windows, counts per row 16,16,16,8; last row 8,8,8,4.
  auto b = window_sizes(14, 14);
  ASSERT_EQ(b.size(), 16u);
  EXPECT_EQ(std::vector<int64_t>(b.begin(), b.begin() + 4), (std::vector<int64_t>{16, 16, 16, 8}));
  EXPECT_EQ(std::vector<int64_t>(b.end() - 4, b.end()), (std::vector<int64_t>{8, 8, 8, 4}));
  // 4x4: one full window, the three empty padded ones are dropped.
  EXPECT_EQ(window_sizes(4, 4), (std::vector<int64_t>{16}));
  // 27x49: 7 x 13 windows.
  EXPECT_EQ(window_sizes(27, 49).size(), 91u);
}

TEST(VisionLayout, WindowIndexIsAPermutationWithinEachImage) {
  auto grid = torch::tensor({1, 10, 6, 1, 4, 12}, torch::kInt64).view({2, 3});
  auto lay = vl::vision_layout(grid, tiny_vision());
  auto w = to_vec(lay.window_index);
  ASSERT_EQ(w.size(), 15u + 12u);
  std::vector<int64_t> first(w.begin(), w.begin() + 15), second(w.begin() + 15, w.end());
  std::sort(first.begin(), first.end());
  std::sort(second.begin(), second.end());
  for (int64_t i = 0; i < 15; ++i) EXPECT_EQ(first[i], i);
  for (int64_t i = 0; i < 12; ++i) EXPECT_EQ(second[i], 15 + i);
  EXPECT_EQ(lay.cu_seqlens, (std::vector<int64_t>{0, 60, 108}));
}

TEST(VisionLayout, RejectsBadGrids) {
  auto cfg = tiny_vision();
  EXPECT_THROW(vl::vision_layout(torch::tensor({1, 3, 4}, torch::kInt64).view({1, 3}), cfg),
               std::invalid_argument);
  EXPECT_THROW(vl::vision_layout(torch::tensor({0, 4, 4}, torch::kInt64).view({1, 3}), cfg),
               std::invalid_argument);
  EXPECT_THROW(vl::vision_layout(torch::tensor({1, 4}, torch::kInt64), cfg), std::invalid_argument);
}

class VisionTower : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    torch::set_num_threads(2);
    te_ = new vl::TextEncoder(vl::load_text_encoder(qt::tiny_edit_model_dir() + "/text_encoder",
                                                    torch::kFloat32, torch::kCPU, true));
  }
  static void TearDownTestSuite() {
    delete te_;
    te_ = nullptr;
  }
  static vl::TextEncoder* te_;
};
vl::TextEncoder* VisionTower::te_ = nullptr;

TEST_F(VisionTower, ImageEmbedsMatchFixture) {
  auto t = qt::load_tensors(qt::fixture_path("cases/vision_processor/tensors.safetensors"));
  torch::NoGradGuard g;
  auto out = (*te_)->encode_images(t["pixel_values"], t["image_grid_thw"]);
  EXPECT_TRUE(qt::AllClose(out, t["image_embeds"], 1e-4, 1e-4));
  RecordProperty("max_abs_diff",
                 std::to_string((out - t["image_embeds"]).abs().max().item<double>()));
}

TEST_F(VisionTower, EachImageAloneGivesTheSameRows) {
  // Attention is restricted per image: encoding image 1 alone must give its rows of the joint call.
  auto t = qt::load_tensors(qt::fixture_path("cases/vision_processor/tensors.safetensors"));
  torch::NoGradGuard g;
  auto grid = t["image_grid_thw"];
  const int64_t n0 = grid[0].prod().item<int64_t>();
  auto joint = (*te_)->encode_images(t["pixel_values"], grid);
  auto second = (*te_)->encode_images(
      t["pixel_values"].narrow(0, n0, t["pixel_values"].size(0) - n0), grid.narrow(0, 1, 1));
  EXPECT_TRUE(qt::AllClose(second, joint.narrow(0, n0 / 4, second.size(0)), 1e-5, 1e-5));
}

TEST_F(VisionTower, RejectsMismatchedPixelValues) {
  auto grid = torch::tensor({1, 4, 4}, torch::kInt64).view({1, 3});
  EXPECT_THROW((*te_)->encode_images(torch::zeros({15, 1176}), grid), std::invalid_argument);
  EXPECT_THROW((*te_)->encode_images(torch::zeros({16, 1000}), grid), std::invalid_argument);
}

TEST(TextEncoderBF16, RunsEndToEndCloseToFloat32) {
  // The CUDA dtype on CPU: bf16 weights and activations (RMSNorm in float32, text RoPE tables in
  // bf16, vision RoPE in float32). Only bf16-level agreement with the float32 goldens is expected.
  torch::set_num_threads(2);
  auto te = vl::load_text_encoder(qt::tiny_edit_model_dir() + "/text_encoder", torch::kBFloat16,
                                  torch::kCPU, true);
  EXPECT_EQ(te->dtype(), torch::kBFloat16);
  auto v = qt::load_tensors(qt::fixture_path("cases/vision_processor/tensors.safetensors"));
  auto img = te->encode_images(v["pixel_values"], v["image_grid_thw"]);
  EXPECT_EQ(img.scalar_type(), torch::kBFloat16);
  const double img_diff = (img.to(torch::kFloat32) - v["image_embeds"]).abs().max().item<double>();
  RecordProperty("bf16_max_abs_diff_image_embeds", std::to_string(img_diff));
  EXPECT_LT(img_diff, 0.1);
  auto t = qt::load_tensors(qt::fixture_path("cases/text_encoder_t2i/tensors.safetensors"));
  auto out = te->forward(t["input_ids"], t["attention_mask"]);
  auto ref = t["hidden_states"][-1];
  const double txt_diff =
      (out.last_hidden_state.to(torch::kFloat32) - ref).abs().max().item<double>();
  RecordProperty("bf16_max_abs_diff_last_hidden", std::to_string(txt_diff));
  EXPECT_LT(txt_diff, 0.1);
}
