// text_encoder/config.json parsing.
#include <gtest/gtest.h>

#include "common/fixtures.h"
#include "models/text_encoder_config.h"

using qwen::models::qwenvl::TextEncoderConfig;

TEST(TextEncoderConfig, TinyFixtureNestedLayout) {
  auto c = TextEncoderConfig::from_file(qwen::test::tiny_model_dir() + "/text_encoder/config.json");
  EXPECT_EQ(c.hidden_size, 32);
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.num_attention_heads, 2);
  EXPECT_EQ(c.num_key_value_heads, 1);
  EXPECT_EQ(c.intermediate_size, 96);
  EXPECT_EQ(c.vocab_size, 152064);
  EXPECT_EQ(c.head_dim(), 16);
  EXPECT_EQ(c.mrope_section, (std::array<int64_t, 3>{2, 3, 3}));
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.image_token_id, 151655);  // top level (text_config holds null)
  EXPECT_EQ(c.vision_start_token_id, 151652);
  ASSERT_TRUE(c.has_vision);
  EXPECT_EQ(c.vision.depth, 4);
  EXPECT_EQ(c.vision.hidden_size, 32);
  EXPECT_EQ(c.vision.num_heads, 2);
  EXPECT_EQ(c.vision.out_hidden_size, 32);
  EXPECT_EQ(c.vision.fullatt_block_indexes, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(c.vision.merger_window(), 4);
  EXPECT_EQ(c.vision.patch_features(), 1176);
}

TEST(TextEncoderConfig, FlatLayoutRealSize) {
  auto c = TextEncoderConfig::from_json_text(R"({
    "hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28,
    "num_key_value_heads": 4, "intermediate_size": 18944, "vocab_size": 152064,
    "rope_scaling": {"mrope_section": [16, 24, 24], "type": "default"},
    "vision_config": {"depth": 32, "hidden_size": 1280, "num_heads": 16,
                      "intermediate_size": 3420, "out_hidden_size": 3584,
                      "fullatt_block_indexes": [7, 15, 23, 31]}})",
                                             "flat");
  EXPECT_EQ(c.head_dim(), 128);
  EXPECT_EQ(c.vision.head_dim(), 80);
  EXPECT_EQ(c.vision.depth, 32);
}

// transformers 5 saves `rope_parameters` (rope_theta inside) instead of rope_scaling + rope_theta.
TEST(TextEncoderConfig, Transformers5RopeParametersLayout) {
  auto c = TextEncoderConfig::from_json_text(R"({
    "text_config": {"hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28,
      "num_key_value_heads": 4, "intermediate_size": 18944, "vocab_size": 152064,
      "rope_parameters": {"mrope_section": [8, 28, 28], "rope_type": "default",
                          "rope_theta": 500000.0}}})",
                                             "v5");
  EXPECT_EQ(c.mrope_section, (std::array<int64_t, 3>{8, 28, 28}));
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  // A top-level rope_theta (the 4.x layout) wins over the default.
  auto d = TextEncoderConfig::from_json_text(R"({
    "hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28,
    "num_key_value_heads": 4, "intermediate_size": 18944, "vocab_size": 152064,
    "rope_theta": 250000.0, "rope_scaling": {"mrope_section": [16, 24, 24], "type": "default"}})",
                                             "v4");
  EXPECT_DOUBLE_EQ(d.rope_theta, 250000.0);
  EXPECT_EQ(d.mrope_section, (std::array<int64_t, 3>{16, 24, 24}));
}

TEST(TextEncoderConfig, BadInputGivesClearErrors) {
  EXPECT_THROW(TextEncoderConfig::from_json_text("{not json", "x"), std::runtime_error);
  EXPECT_THROW(TextEncoderConfig::from_json_text("[1,2]", "x"), std::runtime_error);
  try {
    TextEncoderConfig::from_json_text(
        R"({"hidden_size": 30, "num_attention_heads": 4, "vocab_size": 10})", "cfg.json");
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("cfg.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("num_attention_heads"), std::string::npos) << e.what();
  }
  EXPECT_THROW(TextEncoderConfig::from_json_text(
                   R"({"hidden_size": 32, "num_attention_heads": 2, "num_key_value_heads": 1,
                       "rope_scaling": {"mrope_section": [2, 3, 4]}})",
                   "x"),
               std::invalid_argument);
  EXPECT_THROW(TextEncoderConfig::from_json_text(R"({"hidden_size": "big"})", "x"),
               std::runtime_error);
  EXPECT_THROW(TextEncoderConfig::from_file("/nonexistent/config.json"), std::runtime_error);
}
