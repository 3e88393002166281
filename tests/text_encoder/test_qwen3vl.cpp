// Qwen3-VL text encoder pieces of Qwen-Image-2.1 that do not need the live reference: the
// interleaved M-RoPE layout, position ids, the 2.1 prompt template and its 14-token system prefix
// (project tokenizer), PIL's paste-over-white, left padding, and a random tiny model's invariances
// (padding does not change a prompt's embeddings; deepstack only touches image rows).
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/fixtures.h"
#include "models/qwen3vl_text_encoder.h"
#include "pipelines/prompt_encoding_qwen21.h"
#include "tokenizer/qwen2_tokenizer.h"

namespace q3 = qwen::models::qwen3vl;
namespace q21 = qwen::pipelines::qwen21;

namespace {

q3::TextEncoderConfig tiny_config() {
  q3::TextEncoderConfig c;
  c.vocab_size = 151936;
  c.hidden_size = 32;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.intermediate_size = 48;
  c.mrope_section = {4, 2, 2};
  c.rope_theta = 10000;
  c.vision.depth = 2;
  c.vision.hidden_size = 16;
  c.vision.num_heads = 2;
  c.vision.intermediate_size = 32;
  c.vision.out_hidden_size = 32;
  c.vision.num_position_embeddings = 16;
  c.vision.deepstack_visual_indexes = {1, 0};
  c.validate("tiny");
  return c;
}

q3::TextEncoder random_encoder(bool vision) {
  torch::manual_seed(7);
  q3::TextEncoder te(tiny_config(), vision);
  torch::NoGradGuard ng;
  for (auto& p : te->named_parameters()) {
    if (p.key().find("norm") != std::string::npos)
      p.value().copy_(1 + 0.1 * torch::randn(p.value().sizes()));
    else
      p.value().copy_(torch::randn(p.value().sizes()) /
                      std::sqrt(double(p.value().dim() > 1 ? p.value()[0].numel() : 16)));
  }
  te->eval();
  return te;
}

qwen::tokenizer::Qwen2Tokenizer tokenizer() {
  return qwen::tokenizer::Qwen2Tokenizer::load(qwen::test::tiny_model_dir() + "/tokenizer");
}

}  // namespace

TEST(Qwen3VLRope, InterleavedSectionsPickAxesLikeTransformers) {
  // head_dim 16 -> 8 frequencies; sections [4, 2, 2]: h at j = 1, 4; w at j = 2, 5; t elsewhere.
  auto pos = torch::tensor({3, 5, 7}, torch::kInt64).view({3, 1, 1});
  auto [cos, sin] = q3::interleaved_mrope_cos_sin(pos, 16, 10000.0, {4, 2, 2}, torch::kFloat32);
  ASSERT_EQ(cos.sizes(), torch::IntArrayRef({1, 1, 16}));
  auto inv = torch::pow(10000.0, -torch::arange(0, 16, 2, torch::kFloat64) / 16.0);
  const int axis_pos[8] = {3, 5, 7, 3, 5, 7, 3, 3};
  for (int j = 0; j < 8; ++j)
    for (int half = 0; half < 2; ++half) {
      const double angle = axis_pos[j] * inv[j].item<double>();
      EXPECT_NEAR(cos[0][0][j + 8 * half].item<double>(), std::cos(angle), 1e-5) << j;
      EXPECT_NEAR(sin[0][0][j + 8 * half].item<double>(), std::sin(angle), 1e-5) << j;
    }
  // Sections wider than their slots are cut at head_dim / 2 as transformers' slices are.
  auto [c2, s2] = q3::interleaved_mrope_cos_sin(pos, 8, 10000.0, {1, 2, 1}, torch::kFloat32);
  auto inv4 = torch::pow(10000.0, -torch::arange(0, 8, 2, torch::kFloat64) / 8.0);
  const int ax2[4] = {3, 5, 7, 3};  // j=1 h (1 < 6), j=2 w (2 < 3), j=3 t
  for (int j = 0; j < 4; ++j)
    EXPECT_NEAR(c2[0][0][j].item<double>(), std::cos(ax2[j] * inv4[j].item<double>()), 1e-5);
}

TEST(Qwen3VLRope, TextPositionsIgnorePaddingImagePositionsFollowTheGrid) {
  auto cfg = tiny_config();
  auto ids = torch::tensor({{0, 0, 5, 6}, {5, 6, 7, 8}}, torch::kInt64);
  auto mask = torch::tensor({{0, 0, 1, 1}, {1, 1, 1, 1}}, torch::kInt64);
  auto p = q3::rope_position_ids(ids, mask, {}, cfg);
  EXPECT_TRUE(torch::equal(p, torch::arange(4).view({1, 1, 4}).expand({3, 2, 4})));
  // <|vision_start|> + 2x3 merged image (grid 1 x 4 x 6) + text, left-padded by one.
  const int64_t vs = cfg.vision_start_token_id, im = cfg.image_token_id;
  std::vector<int64_t> row = {0, 9, vs};
  for (int i = 0; i < 6; ++i) row.push_back(im);
  row.push_back(cfg.vision_end_token_id);
  row.push_back(11);
  auto ids2 = torch::tensor(row, torch::kInt64).view({1, -1});
  auto mask2 = torch::ones_like(ids2);
  mask2[0][0] = 0;
  auto p2 = q3::rope_position_ids(ids2, mask2, torch::tensor({{1, 4, 6}}, torch::kInt64), cfg);
  // t / h / w per slot: pad 0; text 0, 1; image (2, 2 + r, 2 + c); then 2 + max(2, 3) = 5, 6.
  auto expect = torch::tensor({{0, 0, 1, 2, 2, 2, 2, 2, 2, 5, 6},
                               {0, 0, 1, 2, 2, 2, 3, 3, 3, 5, 6},
                               {0, 0, 1, 2, 3, 4, 2, 3, 4, 5, 6}},
                              torch::kInt64)
                    .view({3, 1, 11});
  EXPECT_TRUE(torch::equal(p2, expect)) << p2;
  EXPECT_THROW(q3::rope_position_ids(ids2, mask2, torch::tensor({{2, 4, 6}}), cfg),
               std::invalid_argument);
}

TEST(Qwen21Prompt, TemplateAndSystemPrefixTokens) {
  EXPECT_EQ(q21::prompt_text("a cat"),
            "<|im_start|>system\nComprehend and analyze the provided prompt.<|im_end|>\n"
            "<|im_start|>user\na cat<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(q21::prompt_text(""), q21::prompt_text(" "));
  EXPECT_EQ(q21::prompt_text("x", 2),
            "<|im_start|>system\nComprehend and analyze the provided prompt.<|im_end|>\n"
            "<|im_start|>user\n<image1><|vision_start|><|image_pad|><|vision_end|> "
            "<image2><|vision_start|><|image_pad|><|vision_end|>x<|im_end|>\n"
            "<|im_start|>assistant\n");
  auto tok = tokenizer();
  auto ids = tok.encode(q21::prompt_text("a cat"));
  const std::vector<int32_t> sys = {151644, 8948, 198,  1092, 30782, 408,    323,
                                    23643,  279,  3897, 9934, 13,    151645, 198};
  ASSERT_GE(ids.size(), sys.size());
  EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + q21::kDropIdx), sys);
  // `<image1>` is plain text; the special tokens the template needs are single ids.
  for (const char* t :
       {"<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"})
    EXPECT_TRUE(tok.token_to_id(t).has_value()) << t;
  auto b = q21::tokenize(tok, {"a", "a much longer prompt about cats"}, {});
  ASSERT_EQ(b.input_ids.size(0), 2);
  EXPECT_EQ(b.attention_mask[0][0].item<int64_t>(), 0);  // left padding
  EXPECT_EQ(b.attention_mask[1].sum().item<int64_t>(), b.input_ids.size(1));
  EXPECT_EQ(b.input_ids[0][0].item<int64_t>(), tok.pad_token_id());
  auto bi = q21::tokenize(tok, {"x"}, {6, 4});
  EXPECT_EQ((bi.input_ids == 151655).sum().item<int64_t>(), 10);
}

TEST(Qwen21Prompt, ProcessorSettingsFromEitherFile) {
  namespace fs = std::filesystem;
  const fs::path dir =
      fs::temp_directory_path() / ("qwen21_processor_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name) << text;
  };
  // Neither file: an error naming the folder.
  try {
    q21::processor_config(dir.string());
    ADD_FAILURE() << "no error";
  } catch (const qwen::ImageError& e) {
    EXPECT_NE(std::string(e.what()).find(dir.string()), std::string::npos) << e.what();
  }
  // transformers 5's processor_config.json: the nested image_processor, `size` read.
  write("processor_config.json",
        R"({"image_processor": {"patch_size": 16, "merge_size": 2, "temporal_patch_size": 2,
            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
            "size": {"shortest_edge": 65536, "longest_edge": 16777216}},
            "processor_class": "Qwen3VLProcessor"})");
  auto c = q21::processor_config(dir.string());
  auto d = q21::default_processor_config();
  EXPECT_EQ(c.patch_size, 16);
  EXPECT_EQ(c.min_pixels, 65536);
  EXPECT_EQ(c.max_pixels, 16777216);
  EXPECT_EQ(c.image_mean, d.image_mean);
  EXPECT_EQ(c.row_width(), 1536);
  EXPECT_EQ(d.patch_size, 16);
  EXPECT_EQ(d.min_pixels, 65536);
  write("processor_config.json", R"({"image_processor": {"patch_size": 16, "resample": 2}})");
  try {
    q21::processor_config(dir.string());
    ADD_FAILURE() << "no error";
  } catch (const qwen::ImageError& e) {
    EXPECT_NE(std::string(e.what()).find("processor_config.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("resample"), std::string::npos) << e.what();
  }
  // preprocessor_config.json wins (min_pixels overrides size, as transformers).
  write("preprocessor_config.json",
        R"({"patch_size": 14, "size": {"shortest_edge": 100, "longest_edge": 1000},
            "min_pixels": 200})");
  c = q21::processor_config(dir.string());
  EXPECT_EQ(c.patch_size, 14);
  EXPECT_EQ(c.min_pixels, 200);
  EXPECT_EQ(c.max_pixels, 1000);
  fs::remove_all(dir);
}

TEST(Qwen21Prompt, PasteOnWhiteIsPilsBlend) {
  qwen::ImageU8 rgba(3, 1, 4);
  const uint8_t px[12] = {10, 20, 30, 0, 10, 20, 30, 255, 0, 100, 200, 128};
  std::copy(px, px + 12, rgba.pixels.begin());
  auto out = q21::paste_on_white(rgba);
  ASSERT_EQ(out.channels, 3);
  const uint8_t expect[9] = {255, 255, 255, 10, 20, 30, 127, 177, 227};
  for (int i = 0; i < 9; ++i) EXPECT_EQ(out.pixels[i], expect[i]) << i;
  qwen::ImageU8 rgb(2, 2, 3, 9);
  EXPECT_EQ(q21::paste_on_white(rgb).pixels, rgb.pixels);
}

TEST(Qwen3VLTextEncoder, LeftPaddingLeavesEachPromptsEmbeddingsAlone) {
  auto te = random_encoder(false);
  auto tok = tokenizer();
  const std::vector<std::string> prompts = {"short", "a much longer prompt with more tokens"};
  qwen::VisionProcessorConfig proc;
  auto batch = q21::encode_prompt(te, tok, prompts, {}, proc);
  ASSERT_TRUE(batch.mask.defined());
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto one = q21::encode_prompt(te, tok, {prompts[i]}, {}, proc);
    EXPECT_FALSE(one.mask.defined());  // all ones -> None
    const int64_t n = one.embeds.size(1);
    EXPECT_EQ(batch.mask[i].sum().item<int64_t>(), n);
    EXPECT_TRUE(torch::allclose(batch.embeds[i].narrow(0, 0, n), one.embeds[0], 1e-5, 1e-5)) << i;
    EXPECT_EQ(batch.embeds[i].narrow(0, n, batch.embeds.size(1) - n).abs().sum().item<double>(),
              0.0);
  }
  EXPECT_FALSE(batch.image_pad_mask.any().item<bool>());
  auto rep = q21::encode_prompt(te, tok, prompts, {}, proc, 2);
  EXPECT_EQ(rep.embeds.size(0), 4);
  EXPECT_TRUE(torch::equal(rep.embeds[1], batch.embeds[0]));
  EXPECT_TRUE(torch::equal(rep.mask[2], batch.mask[1]));
  EXPECT_EQ(rep.image_pad_mask.size(0), 2);  // not repeated, as the reference
}

TEST(Qwen3VLTextEncoder, ImagesFillPadSlotsAndDeepstackTouchesOnlyThem) {
  auto te = random_encoder(true);
  auto tok = tokenizer();
  // One 64 x 32 image (grid 1 x 4 x 2 -> 2 merged tokens), in pixel_values form.
  torch::manual_seed(3);
  auto pv = torch::randn({8, te->config().vision.patch_features()});
  auto grid = torch::tensor({{1, 4, 2}}, torch::kInt64);
  auto feats = te->encode_images(pv, grid);
  ASSERT_EQ(feats.embeds.sizes(), torch::IntArrayRef({2, 32}));
  ASSERT_EQ(feats.deepstack.size(), 2u);
  auto enc = q21::encode_prompt(te, tok, {"a", "bb cc dd"}, pv, grid);
  EXPECT_EQ(enc.image_pad_mask.sum().item<int64_t>(), 4);  // 2 tokens x 2 prompts
  // Rows before the image are causal-only: equal to the text-only run of the same prefix.
  auto b = q21::tokenize(tok, {"a"}, {2});
  auto out = te->forward(b.input_ids, b.attention_mask, pv, grid, true);
  EXPECT_EQ(out.hidden_states.size(), 4u);
  EXPECT_TRUE(torch::equal(out.hidden_states.back(), out.hidden));
  const int64_t first = (b.input_ids[0] == 151655).nonzero()[0][0].item<int64_t>();
  auto plain =
      te->forward(b.input_ids.narrow(1, 0, first), {}, torch::Tensor(), torch::Tensor(), false);
  EXPECT_TRUE(torch::allclose(out.hidden[0].narrow(0, 0, first), plain.hidden[0], 1e-5, 1e-5));
  EXPECT_THROW(te->forward(b.input_ids, b.attention_mask, pv.narrow(0, 0, 4),
                           torch::tensor({{1, 2, 2}}, torch::kInt64)),
               std::invalid_argument);
  // Precomputed tower output: the same as from pixel_values; repeated for a batch of prompts.
  auto pre = te->forward(b.input_ids, b.attention_mask, feats, grid, false);
  EXPECT_TRUE(torch::equal(pre.hidden, out.hidden));
  auto twice = q3::repeat_features(feats, 2);
  EXPECT_EQ(twice.embeds.size(0), 4);
  EXPECT_TRUE(torch::equal(twice.deepstack[1].narrow(0, 2, 2), feats.deepstack[1]));
  auto enc2 = q21::encode_prompt(te, tok, {"a", "bb cc dd"}, feats, grid);
  EXPECT_TRUE(torch::allclose(enc2.embeds, enc.embeds, 1e-5, 1e-5));
  EXPECT_TRUE(torch::equal(enc2.image_pad_mask, enc.image_pad_mask));
  EXPECT_THROW(random_encoder(false)->encode_images(pv, grid), std::invalid_argument);
}
