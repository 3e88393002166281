// Pipelines' prompt encoding against text_encoder_t2i / text_encoder_edit(_plus).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "common/fixtures.h"
#include "image/png.h"
#include "pipelines/prompt_encoding.h"

namespace qt = qwen::test;
namespace vl = qwen::models::qwenvl;
namespace qp = qwen::pipelines;
using qwen::tokenizer::Qwen2Tokenizer;

namespace {

std::map<std::string, torch::Tensor> case_tensors(const std::string& name) {
  return qt::load_tensors(qt::fixture_path("cases/" + name + "/tensors.safetensors"));
}
nlohmann::json case_inputs(const std::string& name) {
  return nlohmann::json::parse(qt::read_text(qt::fixture_path("cases/" + name + "/inputs.json")));
}
std::vector<int64_t> row_ids(const torch::Tensor& ids, const torch::Tensor& mask, int64_t b) {
  std::vector<int64_t> out;
  for (int64_t l = 0; l < ids.size(1); ++l)
    if (mask[b][l].item<int64_t>() == 1) out.push_back(ids[b][l].item<int64_t>());
  return out;
}
std::vector<int64_t> widen(const std::vector<int32_t>& v) { return {v.begin(), v.end()}; }

}  // namespace

class PromptEncoding : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    torch::set_num_threads(2);
    const auto dir = qt::tiny_edit_model_dir();
    tok_ = new Qwen2Tokenizer(Qwen2Tokenizer::load(Qwen2Tokenizer::resolve_folder(dir)));
    te_ = new vl::TextEncoder(
        vl::load_text_encoder(dir + "/text_encoder", torch::kFloat32, torch::kCPU, true));
    proc_ = new qwen::VisionProcessorConfig(
        qwen::VisionProcessorConfig::from_json_file(dir + "/processor/preprocessor_config.json"));
    // The fixtures were made with the PIL processor and Pillow 11.3: its resize pass order
    // (image/resample.h).
    proc_->backend = qwen::VisionBackend::Pil;
    proc_->pillow_order = qwen::PillowOrder::Pillow12;
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete te_;
    delete proc_;
  }
  static Qwen2Tokenizer* tok_;
  static vl::TextEncoder* te_;
  static qwen::VisionProcessorConfig* proc_;
};
Qwen2Tokenizer* PromptEncoding::tok_ = nullptr;
vl::TextEncoder* PromptEncoding::te_ = nullptr;
qwen::VisionProcessorConfig* PromptEncoding::proc_ = nullptr;

TEST_F(PromptEncoding, TemplatesTokenizeLikeTheFixtures) {
  auto in = case_inputs("text_encoder_t2i");
  auto t = case_tensors("text_encoder_t2i");
  for (int64_t b = 0; b < 2; ++b) {
    const auto prompt = in["prompts"][b].get<std::string>();
    std::string expected = in["template"].get<std::string>();
    expected.replace(expected.find("{}"), 2, prompt);
    EXPECT_EQ(qp::t2i_prompt_text(prompt), expected);
    EXPECT_EQ(widen(tok_->encode(qp::t2i_prompt_text(prompt))),
              row_ids(t["input_ids"], t["attention_mask"], b));
  }
  for (const char* name : {"text_encoder_edit", "text_encoder_edit_plus"}) {
    SCOPED_TRACE(name);
    auto ein = case_inputs(name);
    auto et = case_tensors(name);
    const auto prompt = ein["prompt"].get<std::string>();
    const bool plus = std::string(name) == "text_encoder_edit_plus";
    const auto text = plus ? qp::edit_plus_prompt_text(prompt, 2) : qp::edit_prompt_text(prompt);
    EXPECT_EQ(text, ein["text"].get<std::string>());
    auto grid = et["image_grid_thw"];
    std::vector<int64_t> per_image;
    for (int64_t i = 0; i < grid.size(0); ++i)
      per_image.push_back(grid[i].prod().item<int64_t>() / 4);
    EXPECT_EQ(widen(qp::expand_image_pads(tok_->encode(text), per_image)),
              row_ids(et["input_ids"], et["attention_mask"], 0));
  }
}

TEST_F(PromptEncoding, ExtractFromFixtureHiddenStatesIsExact) {
  auto t = case_tensors("text_encoder_t2i");
  auto hidden = t["hidden_states"][-1];
  auto pe = qp::extract_prompt_embeds(hidden, t["attention_mask"], qp::kT2IDropIdx);
  EXPECT_TRUE(torch::equal(pe.embeds, t["prompt_embeds"]));
  EXPECT_TRUE(torch::equal(pe.mask, t["prompt_embeds_mask"]));
  auto fin = qp::finalize_prompt_embeds(pe, 512, 1);
  EXPECT_TRUE(torch::equal(fin.embeds, t["encode_prompt_embeds"]));
  ASSERT_TRUE(fin.mask.defined());  // inputs.json: encode_prompt_mask_is_none = false
  EXPECT_TRUE(torch::equal(fin.mask, t["encode_prompt_mask"]));
}

TEST_F(PromptEncoding, FinalizeSlicesRepeatsAndDropsAllOnesMask) {
  auto t = case_tensors("text_encoder_t2i");
  qp::PromptEmbeds pe{t["prompt_embeds"], t["prompt_embeds_mask"]};
  auto rep = qp::finalize_prompt_embeds(pe, 512, 2);
  ASSERT_EQ(rep.embeds.size(0), 4);
  EXPECT_TRUE(torch::equal(rep.embeds[0], pe.embeds[0]));
  EXPECT_TRUE(torch::equal(rep.embeds[1], pe.embeds[0]));
  EXPECT_TRUE(torch::equal(rep.embeds[2], pe.embeds[1]));
  EXPECT_TRUE(torch::equal(rep.mask[3], pe.mask[1]));
  // Sliced to the shorter valid length, every kept position is valid -> mask None.
  const int64_t shortest = pe.mask.sum(1).min().item<int64_t>();
  auto cut = qp::finalize_prompt_embeds(pe, shortest, 1);
  EXPECT_EQ(cut.embeds.size(1), shortest);
  EXPECT_FALSE(cut.mask.defined());
  EXPECT_THROW(qp::finalize_prompt_embeds(pe, 512, 0), std::invalid_argument);
}

TEST_F(PromptEncoding, T2IEndToEndMatchesFixture) {
  auto in = case_inputs("text_encoder_t2i");
  auto t = case_tensors("text_encoder_t2i");
  std::vector<std::string> prompts = in["prompts"].get<std::vector<std::string>>();
  auto pe = qp::encode_prompt_t2i(*te_, *tok_, prompts, 512, 1);
  EXPECT_TRUE(qt::AllClose(pe.embeds, t["encode_prompt_embeds"], 1e-4, 1e-4));
  RecordProperty(
      "max_abs_diff_prompt_embeds",
      std::to_string((pe.embeds - t["encode_prompt_embeds"]).abs().max().item<double>()));
  ASSERT_TRUE(pe.mask.defined());
  EXPECT_TRUE(torch::equal(pe.mask, t["encode_prompt_mask"]));
  // A single prompt: all rows valid -> mask None.
  auto one = qp::encode_prompt_t2i(*te_, *tok_, {prompts[0]}, 512, 1);
  EXPECT_FALSE(one.mask.defined());
  EXPECT_TRUE(qt::AllClose(one.embeds[0], t["encode_prompt_embeds"][0], 1e-4, 1e-4));
}

TEST_F(PromptEncoding, EditEndToEndMatchesFixtures) {
  for (const char* name : {"text_encoder_edit", "text_encoder_edit_plus"}) {
    SCOPED_TRACE(name);
    auto in = case_inputs(name);
    auto t = case_tensors(name);
    std::vector<qwen::ImageU8> images;
    for (const auto& f : in["condition_images"])
      images.push_back(qwen::read_png(
          qt::fixture_path(std::string("cases/") + name + "/" + f.get<std::string>())));
    auto [pv, grid] = qp::vision_inputs(images, *proc_);
    ASSERT_TRUE(torch::equal(grid, t["image_grid_thw"]));
    ASSERT_EQ(pv.size(0), t["pixel_values_row_sum"].size(0));
    EXPECT_TRUE(qt::AllClose(pv.narrow(0, 0, 64), t["pixel_values_head"], 1e-6, 0));
    EXPECT_TRUE(qt::AllClose(pv.to(torch::kFloat64).sum(1).to(torch::kFloat32),
                             t["pixel_values_row_sum"], 1e-3, 1e-6));
    // Whole-sequence output of the encoder (image features scattered into the pads, M-RoPE).
    auto out = (*te_)->forward(t["input_ids"], t["attention_mask"], pv, grid);
    EXPECT_TRUE(torch::equal(out.position_ids, t["position_ids"]));
    EXPECT_TRUE(qt::AllClose(out.last_hidden_state, t["last_hidden_state"], 1e-4, 1e-4));
    RecordProperty(
        std::string("max_abs_diff_last_hidden_") + name,
        std::to_string(
            (out.last_hidden_state - t["last_hidden_state"]).abs().max().item<double>()));
    // The pipeline entry point: template, expansion, drop 64, mask None (single prompt).
    const bool plus = std::string(name) == "text_encoder_edit_plus";
    auto pe = qp::encode_prompt_edit(*te_, *tok_, in["prompt"].get<std::string>(), images, *proc_,
                                     plus ? qp::EditTemplate::EditPlus : qp::EditTemplate::Edit);
    EXPECT_TRUE(qt::AllClose(pe.embeds, t["prompt_embeds"], 1e-4, 1e-4));
    EXPECT_FALSE(pe.mask.defined());
    EXPECT_TRUE(t["prompt_embeds_mask"].all().item<bool>());
  }
}

// The engine's default, the torchvision processor (what diffusers' from_pretrained gives), on the
// same condition images as the PIL fixtures: same grid, pixel_values a little different (torch's
// antialiased bicubic on uint8 and the fused float32 normalisation), prompt embeddings close.
// Bit-exactness of this path against transformers: ReferenceDifferential.VisionProcessor*.
TEST_F(PromptEncoding, EditTorchvisionProcessorIsCloseToThePilFixtures) {
  qwen::VisionProcessorConfig tv = *proc_;
  tv.backend = qwen::VisionBackend::Torchvision;
  for (const char* name : {"text_encoder_edit", "text_encoder_edit_plus"}) {
    SCOPED_TRACE(name);
    auto in = case_inputs(name);
    auto t = case_tensors(name);
    std::vector<qwen::ImageU8> images;
    for (const auto& f : in["condition_images"])
      images.push_back(qwen::read_png(
          qt::fixture_path(std::string("cases/") + name + "/" + f.get<std::string>())));
    auto [pv_pil, grid_pil] = qp::vision_inputs(images, *proc_);
    auto [pv, grid] = qp::vision_inputs(images, tv);
    ASSERT_TRUE(torch::equal(grid, grid_pil));
    const double pv_diff = (pv - pv_pil).abs().max().item<double>();
    EXPECT_GT(pv_diff, 0.0);
    EXPECT_LT(pv_diff, 0.1);
    const bool plus = std::string(name) == "text_encoder_edit_plus";
    auto pe = qp::encode_prompt_edit(*te_, *tok_, in["prompt"].get<std::string>(), images, tv,
                                     plus ? qp::EditTemplate::EditPlus : qp::EditTemplate::Edit);
    ASSERT_EQ(pe.embeds.sizes(), t["prompt_embeds"].sizes());
    const double pe_diff = (pe.embeds - t["prompt_embeds"]).abs().max().item<double>();
    std::cout << "[torchvision vs PIL processor] " << name << ": pixel_values max abs " << pv_diff
              << ", prompt_embeds max abs " << pe_diff << std::endl;
    RecordProperty(std::string("torchvision_vs_pil_prompt_embeds_") + name,
                   std::to_string(pe_diff));
    EXPECT_LT(pe_diff, 5e-2);
  }
}

TEST_F(PromptEncoding, BadInputsGiveClearErrors) {
  EXPECT_THROW(qp::encode_prompt_t2i(*te_, *tok_, {}, 512, 1), std::invalid_argument);
  EXPECT_THROW(qp::encode_prompt_t2i(*te_, *tok_, {"a"}, 0, 1), std::invalid_argument);
  EXPECT_THROW(qp::encode_prompt_t2i(*te_, *tok_, {"a"}, 1025, 1), std::invalid_argument);
  auto grid2 = torch::tensor({1, 4, 4, 1, 4, 4}, torch::kInt64).view({2, 3});
  try {
    qp::encode_prompt_edit(*te_, *tok_, "x", torch::zeros({32, 1176}), grid2,
                           qp::EditTemplate::Edit);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("exactly one image"), std::string::npos) << e.what();
  }
  auto grid1 = torch::tensor({1, 4, 4}, torch::kInt64).view({1, 3});
  try {
    qp::encode_prompt_edit(*te_, *tok_, "see <|image_pad|>", torch::zeros({16, 1176}), grid1,
                           qp::EditTemplate::Edit);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("<|image_pad|>"), std::string::npos) << e.what();
  }
  EXPECT_THROW(qp::vision_inputs({}, *proc_), std::invalid_argument);
}
