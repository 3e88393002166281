// Qwen2.5-VL language model against `text_encoder_t2i` (every hidden state) and loading errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/fixtures.h"
#include "models/text_encoder.h"

namespace qt = qwen::test;
namespace vl = qwen::models::qwenvl;

class TextEncoderT2I : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    torch::set_num_threads(2);
    te_ = new vl::TextEncoder(vl::load_text_encoder(qt::tiny_model_dir() + "/text_encoder",
                                                    torch::kFloat32, torch::kCPU, false));
    t_ = new std::map<std::string, torch::Tensor>(
        qt::load_tensors(qt::fixture_path("cases/text_encoder_t2i/tensors.safetensors")));
  }
  static void TearDownTestSuite() {
    delete te_;
    delete t_;
  }
  static vl::TextEncoder* te_;
  static std::map<std::string, torch::Tensor>* t_;
};
vl::TextEncoder* TextEncoderT2I::te_ = nullptr;
std::map<std::string, torch::Tensor>* TextEncoderT2I::t_ = nullptr;

TEST_F(TextEncoderT2I, AllHiddenStatesMatchFixture) {
  auto& t = *t_;
  auto out = (*te_)->forward(t["input_ids"], t["attention_mask"], {}, {}, true);
  EXPECT_TRUE(torch::equal(out.position_ids, t["position_ids"]));
  auto ref = t["hidden_states"];
  ASSERT_EQ(static_cast<int64_t>(out.hidden_states.size()), ref.size(0));
  for (int64_t i = 0; i < ref.size(0); ++i) {
    SCOPED_TRACE("hidden_states[" + std::to_string(i) + "]");
    EXPECT_TRUE(qt::AllClose(out.hidden_states[i], ref[i], 1e-4, 1e-4));
    RecordProperty("max_abs_diff_hidden_" + std::to_string(i),
                   std::to_string((out.hidden_states[i] - ref[i]).abs().max().item<double>()));
  }
  // The last entry is the final-norm output (not layer 1's raw output).
  EXPECT_TRUE(torch::equal(out.hidden_states.back(), out.last_hidden_state));
  // Embeddings are exact copies of the table rows.
  EXPECT_TRUE(torch::equal(out.hidden_states[0], ref[0]));
}

TEST_F(TextEncoderT2I, ValidRowsDoNotDependOnPadding) {
  auto& t = *t_;
  auto mask = t["attention_mask"];
  const int64_t n = mask[1].sum().item<int64_t>();
  auto alone = (*te_)->forward(t["input_ids"].narrow(0, 1, 1).narrow(1, 0, n), {});
  auto batched = (*te_)->forward(t["input_ids"], mask);
  EXPECT_TRUE(qt::AllClose(alone.last_hidden_state[0], batched.last_hidden_state[1].narrow(0, 0, n),
                           1e-5, 1e-5));
}

TEST_F(TextEncoderT2I, LeftPaddingGivesNoNaN) {
  auto& t = *t_;
  auto mask = t["attention_mask"];
  const int64_t L = mask.size(1), n = mask[1].sum().item<int64_t>();
  // Move sequence 1 to the right end (left padding).
  auto ids = torch::full({1, L}, 151643, torch::kInt64);
  ids.narrow(1, L - n, n).copy_(t["input_ids"][1].narrow(0, 0, n));
  auto m = torch::zeros({1, L}, torch::kInt64);
  m.narrow(1, L - n, n).fill_(1);
  auto out = (*te_)->forward(ids, m);
  EXPECT_FALSE(out.last_hidden_state.isnan().any().item<bool>());
  auto right = (*te_)->forward(t["input_ids"], mask);
  EXPECT_TRUE(qt::AllClose(out.last_hidden_state[0].narrow(0, L - n, n),
                           right.last_hidden_state[1].narrow(0, 0, n), 1e-5, 1e-5));
}

TEST_F(TextEncoderT2I, BadInputsGiveClearErrors) {
  EXPECT_THROW((*te_)->forward(torch::tensor({{1, 2, 152064}}, torch::kInt64), {}),
               std::invalid_argument);
  EXPECT_THROW((*te_)->forward(torch::tensor({{1, -1}}, torch::kInt64), {}), std::invalid_argument);
  EXPECT_THROW((*te_)->forward(torch::tensor({1, 2}, torch::kInt64), {}), std::invalid_argument);
  EXPECT_THROW((*te_)->forward(torch::tensor({{1, 2}}, torch::kInt64), torch::ones({1, 3})),
               std::invalid_argument);
  // No vision tower loaded: image inputs are refused with a message.
  try {
    (*te_)->forward(torch::tensor({{151652, 151655, 151653}}, torch::kInt64), {},
                    torch::zeros({4, 1176}), torch::tensor({{1, 2, 2}}, torch::kInt64));
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("vision tower"), std::string::npos) << e.what();
  }
}

TEST(TextEncoderLoad, MissingFolderAndParameterNames) {
  EXPECT_ANY_THROW(
      vl::load_text_encoder("/nonexistent/text_encoder", torch::kFloat32, torch::kCPU, false));
  // Registered names are the canonical checkpoint keys.
  auto cfg = vl::TextEncoderConfig::from_file(qt::tiny_model_dir() + "/text_encoder/config.json");
  vl::TextEncoder te(cfg, true);
  auto params = te->named_parameters();
  EXPECT_NE(params.find("model.language_model.embed_tokens.weight"), nullptr);
  EXPECT_NE(params.find("model.language_model.layers.1.self_attn.k_proj.bias"), nullptr);
  EXPECT_NE(params.find("model.visual.patch_embed.proj.weight"), nullptr);
  EXPECT_NE(params.find("model.visual.merger.mlp.2.weight"), nullptr);
  EXPECT_EQ(params.find("lm_head.weight"), nullptr);
}

TEST(TextEncoderLoad, LegacyKeyNamesAreMapped) {
  // Rewrite the tiny checkpoint with the legacy (transformers < 4.52) names: model.layers.*,
  // model.embed_tokens.*, model.norm.*, visual.* — same data section, new header.
  namespace fs = std::filesystem;
  const std::string src = qt::tiny_model_dir() + "/text_encoder";
  const std::string bytes = qt::read_text(src + "/model.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  auto header = nlohmann::json::parse(bytes.substr(8, n));
  nlohmann::json legacy;
  for (auto& [k, v] : header.items()) {
    std::string name = k;
    if (name.rfind("model.language_model.", 0) == 0)
      name = "model." + name.substr(21);
    else if (name.rfind("model.visual.", 0) == 0)
      name = name.substr(6);
    legacy[name] = v;
  }
  ASSERT_TRUE(legacy.contains("model.layers.0.self_attn.q_proj.weight"));
  ASSERT_TRUE(legacy.contains("visual.merger.ln_q.weight"));
  std::string h = legacy.dump();
  while ((8 + h.size()) % 8 != 0) h += ' ';
  const fs::path dir = fs::path(QWEN_BINARY_DIR) / "tests" / "te_legacy_keys";
  fs::create_directories(dir);
  {
    std::ofstream f(dir / "model.safetensors", std::ios::binary);
    const uint64_t len = h.size();
    f.write(reinterpret_cast<const char*>(&len), 8);
    f.write(h.data(), static_cast<std::streamsize>(h.size()));
    f.write(bytes.data() + 8 + n, static_cast<std::streamsize>(bytes.size() - 8 - n));
  }
  fs::copy_file(src + "/config.json", dir / "config.json", fs::copy_options::overwrite_existing);
  auto te = vl::load_text_encoder(dir.string(), torch::kFloat32, torch::kCPU, true);
  auto ref = vl::load_text_encoder(src, torch::kFloat32, torch::kCPU, true);
  auto ids = torch::tensor({{151644, 872, 198, 9707, 1879}}, torch::kInt64);
  EXPECT_TRUE(torch::equal(te->forward(ids, {}).last_hidden_state,
                           ref->forward(ids, {}).last_hidden_state));
}

TEST(TextEncoderLoad, ShapeMismatchNamesTheTensor) {
  // A config that disagrees with the checkpoint (wider MLP) must fail with the tensor's name.
  namespace fs = std::filesystem;
  const std::string src = qt::tiny_model_dir() + "/text_encoder";
  auto cfg = nlohmann::json::parse(qt::read_text(src + "/config.json"));
  cfg["text_config"]["intermediate_size"] = 128;
  const fs::path dir = fs::path(QWEN_BINARY_DIR) / "tests" / "te_bad_config";
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << cfg.dump();
  fs::copy_file(src + "/model.safetensors", dir / "model.safetensors",
                fs::copy_options::overwrite_existing);
  try {
    vl::load_text_encoder(dir.string(), torch::kFloat32, torch::kCPU, false);
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("mlp.gate_proj.weight"), std::string::npos) << e.what();
  }
}
