// Qwen3-VL (Qwen-Image-2.1) text_encoder/config.json parsing: both rope layouts, and an error that
// names the file and the key for every bad value; the configuration io derives from the shapes of a
// single file (ComfyUI layout) and its errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/checkpoint.h"
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

// ---- configuration derived from the shapes of a single file (ComfyUI's qwen3vl_8b_*.safetensors
// layout: model.* + visual.*) -------------------------------------------------------------------

namespace {

using Shapes = std::map<std::string, std::vector<int64_t>>;

// A float32 safetensors file of zeros with these tensors.
std::string write_file(const std::string& name, const Shapes& shapes) {
  nlohmann::json header = nlohmann::json::object();
  int64_t offset = 0;
  for (const auto& [key, shape] : shapes) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    header[key] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {offset, offset + 4 * n}}};
    offset += 4 * n;
  }
  std::string h = header.dump();
  while (h.size() % 8) h += ' ';
  const auto path = std::filesystem::temp_directory_path() /
                    ("qwen3vl_shapes_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream f(path, std::ios::binary);
  const uint64_t len = h.size();
  f.write(reinterpret_cast<const char*>(&len), 8);
  f.write(h.data(), static_cast<std::streamsize>(h.size()));
  const std::vector<char> zeros(static_cast<size_t>(offset), 0);
  f.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  return path.string();
}

// Tiny Qwen3-VL tensors in ComfyUI's layout: 2 text layers of head size `head`, a vision tower
// of `depth` blocks (width 64) with `deep` DeepStack mergers.
Shapes comfy_shapes(int64_t head, int depth, int deep) {
  Shapes s = {{"model.embed_tokens.weight", {16, 8}}, {"model.norm.weight", {8}}};
  for (int i = 0; i < 2; ++i) {
    const std::string l = "model.layers." + std::to_string(i) + ".";
    s[l + "self_attn.q_proj.weight"] = {2 * head, 8};
    s[l + "self_attn.k_proj.weight"] = {head, 8};
    s[l + "self_attn.q_norm.weight"] = {head};
    s[l + "mlp.gate_proj.weight"] = {12, 8};
  }
  s["visual.patch_embed.proj.weight"] = {64, 3, 2, 16, 16};
  s["visual.pos_embed.weight"] = {16, 64};
  for (int i = 0; i < depth; ++i) s["visual.blocks." + std::to_string(i) + ".norm1.weight"] = {64};
  s["visual.blocks.0.mlp.linear_fc1.weight"] = {32, 64};
  s["visual.merger.linear_fc1.weight"] = {256, 256};
  s["visual.merger.linear_fc2.weight"] = {8, 256};
  for (int i = 0; i < deep; ++i)
    s["visual.deepstack_merger_list." + std::to_string(i) + ".norm.weight"] = {256};
  s["lm_head.weight"] = {16, 8};
  return s;
}

std::string open_error(const std::string& path) {
  try {
    qwen::io::open_component(path, qwen::io::ComponentKind::TextEncoder);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Qwen3VLConfig, DerivedFromAComfySingleFile) {
  const auto path = write_file("ok.safetensors", comfy_shapes(128, 24, 3));
  auto w = qwen::io::open_component(path, qwen::io::ComponentKind::TextEncoder);
  auto c = TextEncoderConfig::from_json_text(w.config.dump(), path);
  EXPECT_EQ(c.vocab_size, 16);
  EXPECT_EQ(c.hidden_size, 8);
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.num_attention_heads, 2);
  EXPECT_EQ(c.num_key_value_heads, 1);
  EXPECT_EQ(c.intermediate_size, 12);
  EXPECT_DOUBLE_EQ(c.rope_theta, 5e6);
  EXPECT_EQ(c.mrope_section, (std::array<int64_t, 3>{24, 20, 20}));
  ASSERT_TRUE(c.has_vision);
  EXPECT_EQ(c.vision.depth, 24);
  EXPECT_EQ(c.vision.hidden_size, 64);
  EXPECT_EQ(c.vision.num_heads, 16);
  EXPECT_EQ(c.vision.spatial_merge_size, 2);
  EXPECT_EQ(c.vision.num_position_embeddings, 16);
  EXPECT_EQ(c.vision.intermediate_size, 32);
  EXPECT_EQ(c.vision.out_hidden_size, 8);
  EXPECT_EQ(c.vision.deepstack_visual_indexes, (std::vector<int64_t>{5, 11, 17}));
  // Canonical names: the language model and the tower under model.language_model / model.visual.
  EXPECT_NE(w.format.find("model.language_model.layers.1.self_attn.q_norm.weight"), nullptr);
  EXPECT_NE(w.format.find("model.visual.deepstack_merger_list.2.norm.weight"), nullptr);
  std::filesystem::remove(path);
}

TEST(Qwen3VLConfig, UnknowableSettingsOfASingleFileAskForTheFolder) {
  const auto head64 = write_file("head64.safetensors", comfy_shapes(64, 24, 3));
  std::string e = open_error(head64);
  EXPECT_NE(e.find(head64), std::string::npos) << e;
  EXPECT_NE(e.find("head size of 64"), std::string::npos) << e;
  EXPECT_NE(e.find("config.json"), std::string::npos) << e;
  std::filesystem::remove(head64);
  const auto depth5 = write_file("depth5.safetensors", comfy_shapes(128, 5, 3));
  e = open_error(depth5);
  EXPECT_NE(e.find(depth5), std::string::npos) << e;
  EXPECT_NE(e.find("DeepStack"), std::string::npos) << e;
  EXPECT_NE(e.find("config.json"), std::string::npos) << e;
  std::filesystem::remove(depth5);
}
