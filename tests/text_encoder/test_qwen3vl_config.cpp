// Qwen3-VL (Qwen-Image-2.1) text_encoder/config.json parsing: both rope layouts, and an error that
// names the file and the key for every bad value.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "models/qwen3vl_config.h"

using qwen::models::qwen3vl::TextEncoderConfig;

namespace {

// Qwen/Qwen3-VL-8B-Instruct's config.json as the released checkpoint has it (transformers 4.57:
// rope_scaling + rope_theta in text_config).
const char* kReleased = R"({
  "architectures": ["Qwen3VLForConditionalGeneration"], "model_type": "qwen3_vl",
  "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
  "vision_end_token_id": 151653, "tie_word_embeddings": false,
  "text_config": {"attention_bias": false, "head_dim": 128, "hidden_act": "silu",
    "hidden_size": 4096, "intermediate_size": 12288, "model_type": "qwen3_vl_text",
    "num_attention_heads": 32, "num_hidden_layers": 36, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06, "vocab_size": 151936, "rope_theta": 5000000,
    "rope_scaling": {"mrope_interleaved": true, "mrope_section": [24, 20, 20],
                     "rope_type": "default"}},
  "vision_config": {"deepstack_visual_indexes": [8, 16, 24], "depth": 27,
    "hidden_act": "gelu_pytorch_tanh", "hidden_size": 1152, "in_channels": 3,
    "intermediate_size": 4304, "model_type": "qwen3_vl", "num_heads": 16,
    "num_position_embeddings": 2304, "out_hidden_size": 4096, "patch_size": 16,
    "spatial_merge_size": 2, "temporal_patch_size": 2}})";

std::string replaced(std::string s, const std::string& from, const std::string& to) {
  const auto at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return s.replace(at, from.size(), to);
}

// The error of parsing `text` under the label "te/config.json"; "" when it parses.
std::string error_of(const std::string& text) {
  try {
    TextEncoderConfig::from_json_text(text, "te/config.json");
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

void expect_error(const std::string& text, const std::string& key) {
  const std::string e = error_of(text);
  EXPECT_NE(e.find("te/config.json"), std::string::npos) << e;
  EXPECT_NE(e.find(key), std::string::npos) << "expected the key '" << key << "' in: " << e;
}

}  // namespace

TEST(Qwen3VLConfig, ReleasedCheckpointLayout) {
  auto c = TextEncoderConfig::from_json_text(kReleased, "released");
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.num_hidden_layers, 36);
  EXPECT_EQ(c.num_attention_heads, 32);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.intermediate_size, 12288);
  EXPECT_EQ(c.vocab_size, 151936);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_DOUBLE_EQ(c.rope_theta, 5e6);
  EXPECT_EQ(c.mrope_section, (std::array<int64_t, 3>{24, 20, 20}));
  EXPECT_EQ(c.image_token_id, 151655);
  ASSERT_TRUE(c.has_vision);
  EXPECT_EQ(c.vision.depth, 27);
  EXPECT_EQ(c.vision.hidden_size, 1152);
  EXPECT_EQ(c.vision.head_dim(), 72);
  EXPECT_EQ(c.vision.grid_side(), 48);
  EXPECT_EQ(c.vision.patch_features(), 1536);
  EXPECT_EQ(c.vision.deepstack_visual_indexes, (std::vector<int64_t>{8, 16, 24}));
  EXPECT_DOUBLE_EQ(c.vision.rope_theta, 10000.0);
  EXPECT_TRUE(c.vision.gelu_tanh);
}

TEST(Qwen3VLConfig, Transformers5RopeParametersLayout) {
  // transformers 5 writes rope_parameters (rope_theta inside) and no rope_theta beside it.
  std::string t = replaced(kReleased, R"("rope_theta": 5000000,)", "");
  t = replaced(t, R"("rope_scaling": {"mrope_interleaved": true, "mrope_section": [24, 20, 20],)",
               R"("rope_parameters": {"rope_theta": 1234.5, "mrope_section": [32, 16, 16],)");
  t = replaced(
      t, R"("num_heads": 16,)",
      R"("num_heads": 16, "rope_parameters": {"rope_theta": 500.0, "rope_type": "axial"},)");
  auto c = TextEncoderConfig::from_json_text(t, "native");
  EXPECT_DOUBLE_EQ(c.rope_theta, 1234.5);
  EXPECT_EQ(c.mrope_section, (std::array<int64_t, 3>{32, 16, 16}));
  EXPECT_DOUBLE_EQ(c.vision.rope_theta, 500.0);
}

TEST(Qwen3VLConfig, DefaultsWithoutRopeKeysAndWithoutVision) {
  auto c = TextEncoderConfig::from_json_text(
      R"({"model_type": "qwen3_vl", "text_config": {"hidden_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 4, "head_dim": 128, "intermediate_size": 96}})",
      "minimal");
  EXPECT_EQ(c.num_key_value_heads, 4);       // None -> num_attention_heads
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);  // Qwen3VLTextConfig.default_theta
  EXPECT_FALSE(c.has_vision);
  // mrope_section defaults to [24, 20, 20], which a head_dim of 32 cannot take.
  expect_error(R"({"text_config": {"head_dim": 32}, "vision_config": null})", "mrope_section");
}

TEST(Qwen3VLConfig, ErrorsNameTheFileAndTheKey) {
  expect_error("{not json", "not valid JSON");
  expect_error(
      replaced(kReleased, R"("model_type": "qwen3_vl",)", R"("model_type": "qwen2_5_vl",)"),
      "model_type");
  expect_error(replaced(kReleased, R"("head_dim": 128)", R"("head_dim": "128")"),
               "text_config.head_dim");
  expect_error(replaced(kReleased, R"("head_dim": 128)", R"("head_dim": 127)"),
               "text_config.head_dim");
  expect_error(replaced(kReleased, R"("num_key_value_heads": 8)", R"("num_key_value_heads": 5)"),
               "text_config.num_key_value_heads");
  expect_error(replaced(kReleased, R"("hidden_size": 4096)", R"("hidden_size": 0)"),
               "text_config.hidden_size");
  expect_error(replaced(kReleased, R"("hidden_act": "silu")", R"("hidden_act": "relu")"),
               "text_config.hidden_act");
  expect_error(replaced(kReleased, "[24, 20, 20]", "[24, 20]"),
               "text_config.rope_scaling.mrope_section");
  expect_error(replaced(kReleased, "[24, 20, 20]", "[24, 20, 21]"), "mrope_section");
  expect_error(replaced(kReleased, R"("rope_type": "default")", R"("rope_type": "yarn")"),
               "text_config.rope_scaling.rope_type");
  expect_error(replaced(kReleased, R"("rope_theta": 5000000)", R"("rope_theta": "big")"),
               "text_config.rope_theta");
  expect_error(replaced(kReleased, R"("num_position_embeddings": 2304)",
                        R"("num_position_embeddings": 2300)"),
               "vision_config.num_position_embeddings");
  expect_error(replaced(kReleased, "[8, 16, 24]", "[8, 16, 27]"),
               "vision_config.deepstack_visual_indexes");
  expect_error(replaced(kReleased, "[8, 16, 24]", "[8, 8]"),
               "vision_config.deepstack_visual_indexes");
  expect_error(replaced(kReleased, "[8, 16, 24]", "8"), "vision_config.deepstack_visual_indexes");
  expect_error(replaced(kReleased, R"("out_hidden_size": 4096)", R"("out_hidden_size": 2048)"),
               "vision_config.out_hidden_size");
  expect_error(replaced(kReleased, R"("num_heads": 16)", R"("num_heads": 7)"),
               "vision_config.hidden_size");
  expect_error(
      replaced(kReleased, R"("hidden_act": "gelu_pytorch_tanh")", R"("hidden_act": "swish")"),
      "vision_config.hidden_act");
  expect_error(replaced(kReleased, R"("text_config": {)", R"("text_config": 3, "x": {)"),
               "text_config");
}

TEST(Qwen3VLConfig, MissingFileNamesThePath) {
  try {
    TextEncoderConfig::from_file("/nonexistent/text_encoder/config.json");
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/text_encoder/config.json"),
              std::string::npos);
  }
}
