// Qwen-Image-2.1's Qwen3-VL text encoder vs transformers (Qwen3VLForConditionalGeneration /
// Qwen3VLProcessor) and diffusers (QwenImage21Pipeline.encode_prompt) on a fresh random tiny
// configuration every run (gen_qwen21_text_encoder.py: hidden size, layers, heads / KV heads, an
// explicit head_dim, interleaved M-RoPE sections and theta, vision depth / width, learned position
// grid, deepstack indexes, storage dtype, rope config layout):
// * a left-padded batch of text prompts: the tokens, positions, every decoder layer's input, the
//   hidden state before the final norm and after it, and encode_prompt's embeddings / mask;
// * 1-3 reference images (RGB / RGBA, sizes the pipeline gives or not) with 1-2 prompts: the
//   processor's pixel_values and grids from the PNGs, the vision tower's merged and DeepStack
//   features, positions, hidden states and encode_prompt's embeddings / mask / image_pad_mask.
// And a ComfyUI-layout single file (`model.*` + `visual.*` + lm_head at the top or as comfy's
// `model.lm_head`, no config.json; plain, or fp8 scaled in the legacy or comfy_quant scheme) of a
// random model with the released encoder's shape-invisible settings (head_dim 128, interleaved
// M-RoPE [24, 20, 20]), and the folder with the same weights: the configuration derived from the
// shapes, hidden states, vision features and encode_prompt with two references, plus a sensitivity
// check against non-interleaved sections. And the language model alone as a llama.cpp GGUF
// (arch qwen3vl, quantised): a padded text batch.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <array>
#include <iostream>

#include "common/fixtures.h"
#include "image/png.h"
#include "image/vision_processor.h"
#include "models/qwen3vl_text_encoder.h"
#include "pipelines/prompt_encoding_qwen21.h"
#include "reference_case.h"
#include "tokenizer/qwen2_tokenizer.h"

namespace {

namespace q3 = qwen::models::qwen3vl;
namespace q21 = qwen::pipelines::qwen21;
using qwen::test::AllClose;

std::vector<std::string> strings(const nlohmann::json& j) {
  std::vector<std::string> out;
  for (const auto& s : j) out.push_back(s.get<std::string>());
  return out;
}

// Hidden states [n, B, L, H] at the valid (mask 1) tokens.
void expect_hidden(const std::vector<torch::Tensor>& got, const torch::Tensor& expected,
                   const torch::Tensor& mask, const std::string& where) {
  const auto valid = mask.to(torch::kBool);
  ASSERT_EQ(static_cast<int64_t>(got.size()), expected.size(0)) << where;
  for (int64_t i = 0; i < expected.size(0); ++i) {
    ASSERT_EQ(got[i].sizes(), expected[i].sizes()) << where;
    EXPECT_TRUE(AllClose(got[i].index({valid}), expected[i].index({valid}),
                         qwen::reftest::kComponentAtol, qwen::reftest::kComponentRtol))
        << "input of decoder layer " << i << " (" << expected.size(0) - 1
        << " = before the final norm), " << where;
  }
}

void expect_encoding(const q21::PromptEncoding& got, const std::map<std::string, torch::Tensor>& t,
                     const std::string& prefix, const std::string& where) {
  const auto& pe = t.at(prefix + "prompt_embeds");
  ASSERT_EQ(got.embeds.sizes(), pe.sizes()) << where;
  EXPECT_TRUE(
      AllClose(got.embeds, pe, qwen::reftest::kComponentAtol, qwen::reftest::kComponentRtol))
      << "prompt_embeds, " << where;
  if (t.at(prefix + "prompt_embeds_mask_none").item<int64_t>())
    EXPECT_FALSE(got.mask.defined()) << "the reference's mask is None, " << where;
  else
    EXPECT_TRUE(got.mask.defined() && torch::equal(got.mask, t.at(prefix + "prompt_embeds_mask")))
        << where;
  EXPECT_TRUE(torch::equal(got.image_pad_mask.to(torch::kInt64), t.at(prefix + "image_pad_mask")))
      << "image_pad_mask, " << where;
}

TEST(ReferenceDifferential, Qwen21TextEncoderMatchesTransformers) {
  torch::set_num_threads(1);
  QWEN_REFERENCE_CASE(ref, "text_encoder", "", "gen_qwen21_text_encoder.py");
  const std::string mdir = ref.model_dir();
  auto te = q3::load_text_encoder(mdir + "/text_encoder", torch::kFloat32, torch::kCPU, true);
  auto tok = qwen::tokenizer::Qwen2Tokenizer::load(mdir + "/processor");
  // preprocessor_config.json, or (drawn at random) only transformers 5's processor_config.json.
  auto proc = q21::processor_config(mdir + "/processor");
  auto t = ref.tensors("qwen21_text_encoder");
  const auto& cj = ref.json();
  const std::string where = "seed " + std::to_string(ref.seed()) + ", config " +
                            cj["config"].dump() + ", rope layout " + cj["te_config"].dump();
  torch::NoGradGuard ng;

  // Text-only batch, left padding.
  const auto prompts = strings(cj["parts"]["text"]["prompts"]);
  auto b = q21::tokenize(tok, prompts);
  EXPECT_TRUE(torch::equal(b.input_ids, t.at("input_ids"))) << b.input_ids << where;
  EXPECT_TRUE(torch::equal(b.attention_mask, t.at("attention_mask"))) << where;
  auto out = te->forward(t.at("input_ids"), t.at("attention_mask"), torch::Tensor(),
                         torch::Tensor(), true);
  EXPECT_TRUE(torch::equal(out.position_ids, t.at("position_ids"))) << where;
  expect_hidden(out.hidden_states, t.at("hidden_states"), t.at("attention_mask"), "text, " + where);
  {
    const auto valid = t.at("attention_mask").to(torch::kBool);
    EXPECT_TRUE(AllClose(out.last_hidden_state.index({valid}),
                         t.at("last_hidden_state").index({valid}), qwen::reftest::kComponentAtol,
                         qwen::reftest::kComponentRtol))
        << "after the final norm, " << where;
  }
  expect_encoding(q21::encode_prompt(te, tok, prompts, {}, proc), t, "", "text, " + where);

  // Reference images.
  const auto& ip = cj["parts"]["images"];
  const auto vprompts = strings(ip["prompts"]);
  std::vector<qwen::ImageU8> images;
  for (const auto& name : ip["images"])
    images.push_back(qwen::read_png(ref.dir() + "/" + name.get<std::string>()));
  auto [pv, grid] = q21::vision_inputs(images, proc);
  const int64_t B = static_cast<int64_t>(vprompts.size());
  EXPECT_TRUE(torch::equal(grid.repeat({B, 1}), t.at("vl_image_grid_thw"))) << grid << where;
  ASSERT_EQ(pv.repeat({B, 1}).sizes(), t.at("vl_pixel_values").sizes()) << where;
  EXPECT_TRUE(torch::equal(pv.repeat({B, 1}), t.at("vl_pixel_values")))
      << "processor: max abs " << (pv.repeat({B, 1}) - t.at("vl_pixel_values")).abs().max() << ", "
      << where;

  auto feats = te->encode_images(t.at("vl_pixel_values"), t.at("vl_image_grid_thw"));
  EXPECT_TRUE(AllClose(feats.embeds, t.at("vl_image_embeds"), qwen::reftest::kComponentAtol,
                       qwen::reftest::kComponentRtol))
      << "vision embeddings, " << where;
  const size_t n_deep = cj["config"]["vision"]["deepstack_visual_indexes"].size();
  ASSERT_EQ(feats.deepstack.size(), n_deep) << where;
  for (size_t i = 0; i < n_deep; ++i)
    EXPECT_TRUE(AllClose(feats.deepstack[i], t.at("vl_deepstack_" + std::to_string(i)),
                         qwen::reftest::kComponentAtol, qwen::reftest::kComponentRtol))
        << "deepstack feature " << i << ", " << where;

  std::vector<int64_t> per_image;
  for (int64_t i = 0; i < grid.size(0); ++i)
    per_image.push_back(grid[i].prod().item<int64_t>() / 4);
  auto vb = q21::tokenize(tok, vprompts, per_image);
  EXPECT_TRUE(torch::equal(vb.input_ids, t.at("vl_input_ids"))) << where;
  EXPECT_TRUE(torch::equal(vb.attention_mask, t.at("vl_attention_mask"))) << where;
  auto vo = te->forward(t.at("vl_input_ids"), t.at("vl_attention_mask"), t.at("vl_pixel_values"),
                        t.at("vl_image_grid_thw"), true);
  EXPECT_TRUE(torch::equal(vo.position_ids, t.at("vl_position_ids"))) << where;
  expect_hidden(vo.hidden_states, t.at("vl_hidden_states"), t.at("vl_attention_mask"),
                "images, " + where);
  expect_encoding(q21::encode_prompt(te, tok, vprompts, images, proc), t, "vl_",
                  "images, " + where);
}

// Largest |a - b| over the valid (mask 1) tokens of [B, L, H] tensors.
double max_diff(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& mask) {
  const auto valid = mask.to(torch::kBool);
  return (a.index({valid}) - b.index({valid})).abs().max().item<double>();
}

// The released encoder's shape-invisible settings (head_dim 128, interleaved M-RoPE [24, 20, 20],
// rope_theta 5e6) on a random tiny model, loaded from the ComfyUI single file and from the folder
// with the same weights: hidden states of a text batch and of an edit batch with two non-square
// references (distinct t / h / w positions), vision and DeepStack features, and encode_prompt's
// embeddings through the 2.1 template, all at float32 noise. The reference's outputs with the
// sections not interleaved / the h, w positions ignored show how far each mistake would move them.
TEST(ReferenceDifferential, Qwen21TextEncoderComfySingleFileMatchesTransformers) {
  torch::set_num_threads(1);
  QWEN_REFERENCE_CASE(ref, "comfy_file", "", "gen_qwen21_text_encoder.py");
  const auto& cj = ref.json();
  const std::string where = "seed " + std::to_string(ref.seed()) + ", " +
                            cj["comfy_format"].get<std::string>() + " file (lm_head as " +
                            cj["comfy_lm_head"].get<std::string>() + "), config " +
                            cj["comfy_config"].dump();
  const std::string file = ref.dir() + "/qwen3vl_comfy.safetensors";
  const std::string mdir = ref.dir() + "/comfy_model";
  auto te = q3::load_text_encoder(file, torch::kFloat32, torch::kCPU, true);
  const auto& c = te->config();
  const auto& tc = cj["comfy_config"]["text"];
  const auto& vc = cj["comfy_config"]["vision"];
  EXPECT_EQ(c.hidden_size, tc["hidden_size"].get<int64_t>()) << where;
  EXPECT_EQ(c.num_attention_heads, tc["num_attention_heads"].get<int64_t>()) << where;
  EXPECT_EQ(c.num_key_value_heads, tc["num_key_value_heads"].get<int64_t>()) << where;
  EXPECT_EQ(c.head_dim, 128) << where;
  EXPECT_EQ(c.mrope_section, (std::array<int64_t, 3>{24, 20, 20})) << where;
  EXPECT_DOUBLE_EQ(c.rope_theta, 5e6) << where;
  EXPECT_EQ(c.vision.depth, vc["depth"].get<int64_t>()) << where;
  EXPECT_EQ(c.vision.deepstack_visual_indexes,
            vc["deepstack_visual_indexes"].get<std::vector<int64_t>>())
      << where;
  EXPECT_EQ(c.vision.num_position_embeddings, vc["num_position_embeddings"].get<int64_t>())
      << where;
  // fp8 scaled files keep their Linear weights quantised (dequantised per forward).
  const bool fp8 = cj["comfy_format"].get<std::string>().rfind("fp8", 0) == 0;
  auto& layer0 = *te->model->language_model->layers[0]->as<q3::DecoderLayerImpl>();
  EXPECT_EQ(layer0.self_attn->q_proj->quantized() != nullptr, fp8) << where;

  auto tok = qwen::tokenizer::Qwen2Tokenizer::load(mdir + "/processor");
  auto proc = q21::processor_config(mdir + "/processor");
  std::vector<qwen::ImageU8> images;
  for (const auto& name : cj["parts"]["comfy_file"]["images"])
    images.push_back(qwen::read_png(ref.dir() + "/" + name.get<std::string>()));
  const auto vprompts = strings(cj["parts"]["comfy_file"]["prompts"]);
  auto t = ref.tensors("comfy_file");
  const auto& vmask = t.at("vl_attention_mask");
  torch::NoGradGuard ng;
  auto folder = q3::load_text_encoder(mdir + "/text_encoder", torch::kFloat32, torch::kCPU, true);
  for (auto* model : {&te, &folder}) {
    const std::string what = std::string(model == &te ? "comfy file" : "folder") + ", ";
    auto& m = *model;
    auto out = m->forward(t.at("input_ids"), t.at("attention_mask"), torch::Tensor(),
                          torch::Tensor(), true);
    expect_hidden(out.hidden_states, t.at("hidden_states"), t.at("attention_mask"),
                  what + "text, " + where);
    auto feats = m->encode_images(t.at("vl_pixel_values"), t.at("vl_image_grid_thw"));
    EXPECT_TRUE(AllClose(feats.embeds, t.at("vl_image_embeds"), qwen::reftest::kComponentAtol,
                         qwen::reftest::kComponentRtol))
        << what << "vision embeddings, " << where;
    ASSERT_EQ(feats.deepstack.size(), 3u) << where;
    for (size_t i = 0; i < 3; ++i)
      EXPECT_TRUE(AllClose(feats.deepstack[i], t.at("vl_deepstack_" + std::to_string(i)),
                           qwen::reftest::kComponentAtol, qwen::reftest::kComponentRtol))
          << what << "deepstack feature " << i << ", " << where;
    auto vo = m->forward(t.at("vl_input_ids"), vmask, t.at("vl_pixel_values"),
                         t.at("vl_image_grid_thw"), true);
    EXPECT_TRUE(torch::equal(vo.position_ids, t.at("vl_position_ids"))) << what << where;
    expect_hidden(vo.hidden_states, t.at("vl_hidden_states"), vmask, what + "images, " + where);
    expect_encoding(q21::encode_prompt(m, tok, vprompts, images, proc), t, "vl_",
                    what + "images, " + where);
  }

  // Sensitivity: the image tokens' positions differ on all three axes (t, h, w) ...
  const auto pos = t.at("vl_position_ids").index({torch::indexing::Slice(), 0});
  EXPECT_FALSE(torch::equal(pos[0], pos[1]) || torch::equal(pos[1], pos[2])) << pos << where;
  // ... and a mistake in how the sections are laid out moves the pipeline's hidden state and
  // prompt_embeds far beyond the tolerance.
  auto vo = te->forward(t.at("vl_input_ids"), vmask, t.at("vl_pixel_values"),
                        t.at("vl_image_grid_thw"), true);
  const auto& ours = vo.hidden_states.back();
  const auto& expected = t.at("vl_hidden_states")[-1];
  const double ok = max_diff(ours, expected, vmask);
  for (const char* mode : {"chunked", "t_only"}) {
    const auto& wrong = t.at(std::string("vl_") + mode + "_last_hidden");
    const double moved = max_diff(wrong, expected, vmask);
    const double embeds_moved =
        (t.at(std::string("vl_") + mode + "_prompt_embeds") - t.at("vl_prompt_embeds"))
            .abs()
            .max()
            .item<double>();
    std::cout << "[sensitivity] M-RoPE " << mode << ": the last hidden state moves by " << moved
              << " (prompt_embeds " << embeds_moved << "); ours is off by " << ok << "\n";
    ::testing::Test::RecordProperty(std::string("moved_") + mode, std::to_string(moved));
    EXPECT_GT(moved, 100 * qwen::reftest::kComponentAtol) << mode << ", " << where;
    EXPECT_GT(embeds_moved, 100 * qwen::reftest::kComponentAtol) << mode << ", " << where;
    EXPECT_FALSE(AllClose(ours.index({vmask.to(torch::kBool)}),
                          wrong.index({vmask.to(torch::kBool)}), qwen::reftest::kComponentAtol,
                          qwen::reftest::kComponentRtol))
        << "the test would not tell " << mode << " M-RoPE apart, " << where;
  }
  ::testing::Test::RecordProperty("max_abs_error", std::to_string(ok));
}

TEST(ReferenceDifferential, Qwen21TextEncoderLlamaCppGgufMatchesTransformers) {
  torch::set_num_threads(1);
  QWEN_REFERENCE_CASE(ref, "gguf_file", "", "gen_qwen21_text_encoder.py");
  const auto& cj = ref.json();
  const std::string where = "seed " + std::to_string(ref.seed()) + ", " +
                            cj["gguf_type"].get<std::string>() + " GGUF " +
                            cj["gguf_types"].dump() + ", config " + cj["gguf_config"].dump();
  // The language model only (llama.cpp keeps the vision tower in an mmproj file): text prompts.
  auto te =
      q3::load_text_encoder(ref.dir() + "/qwen3vl_text.gguf", torch::kFloat32, torch::kCPU, false);
  EXPECT_FALSE(te->config().has_vision) << where;
  EXPECT_EQ(te->config().num_attention_heads,
            cj["gguf_config"]["text"]["num_attention_heads"].get<int64_t>())
      << where;
  auto& layer0 = *te->model->language_model->layers[0]->as<q3::DecoderLayerImpl>();
  EXPECT_NE(layer0.self_attn->o_proj->quantized(), nullptr) << where;
  auto t = ref.tensors("gguf_file");
  torch::NoGradGuard ng;
  auto out = te->forward(t.at("input_ids"), t.at("attention_mask"), torch::Tensor(),
                         torch::Tensor(), true);
  expect_hidden(out.hidden_states, t.at("hidden_states"), t.at("attention_mask"),
                "GGUF, text, " + where);
}

}  // namespace
