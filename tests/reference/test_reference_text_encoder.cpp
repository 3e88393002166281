// Qwen2.5-VL text encoder (+ vision tower) vs transformers on a fresh random configuration (hidden
// size, layers, heads / KV heads, M-RoPE sections, vision depth / width / full-attention blocks,
// storage dtype) every run: a padded batch of random prompts in the T2I template (all hidden
// states and position ids of the unpadded tokens), and an Edit-Plus style prompt with 1-2 random
// images of random sizes (the engine's pixel_values and grid from the images, bit-exact with the
// processor gen_random.py used: by default the torchvision one, the engine's default; position
// ids, rope deltas, vision embeddings, last hidden state).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/fixtures.h"
#include "image/png.h"
#include "image/vision_processor.h"
#include "models/text_encoder.h"
#include "pipelines/prompt_encoding.h"
#include "reference_case.h"

namespace {

TEST(ReferenceDifferential, TextEncoderMatchesTransformers) {
  torch::set_num_threads(1);
  QWEN_REFERENCE_CASE(ref, "text_encoder");
  auto te = qwen::models::qwenvl::load_text_encoder(ref.model_dir() + "/text_encoder",
                                                    torch::kFloat32, torch::kCPU, true);
  te->eval();
  auto t = ref.tensors("text_encoder");
  const double atol = qwen::reftest::kComponentAtol, rtol = qwen::reftest::kComponentRtol;
  const std::string where = "seed " + std::to_string(ref.seed()) + ", config " +
                            ref.json()["config"]["text"].dump() + " vision " +
                            ref.json()["config"]["vision"].dump();
  torch::NoGradGuard ng;

  // Unpadded tokens only: the padded ones (right padding) get position 1 in transformers 4 and the
  // continued arange in transformers 5, and no pipeline reads their hidden states
  // (tests/reference/README.md, "Old vs new reference").
  const auto valid = t.at("attention_mask").to(torch::kBool);
  using torch::indexing::Slice;
  auto out = te->forward(t.at("input_ids"), t.at("attention_mask"), {}, {}, true);
  ASSERT_EQ(out.position_ids.sizes(), t.at("position_ids").sizes()) << where;
  EXPECT_TRUE(torch::equal(out.position_ids.index({Slice(), valid}),
                           t.at("position_ids").index({Slice(), valid})))
      << where;
  auto expected = t.at("hidden_states");
  ASSERT_EQ(static_cast<int64_t>(out.hidden_states.size()), expected.size(0)) << where;
  for (int64_t i = 0; i < expected.size(0); ++i) {
    ASSERT_EQ(out.hidden_states[i].sizes(), expected[i].sizes()) << where;
    EXPECT_TRUE(qwen::test::AllClose(out.hidden_states[i].index({valid}),
                                     expected[i].index({valid}), atol, rtol))
        << "hidden_states[" << i << "], " << where;
  }

  // The processor step from the saved images (gen_random.py --edit-processor: default / pil).
  {
    const bool pil = ref.json()["options"]["edit_processor"] == "pil";
    auto proc = qwen::VisionProcessorConfig::from_json_file(qwen::test::tiny_edit_model_dir() +
                                                            "/processor/preprocessor_config.json");
    proc.backend = pil ? qwen::VisionBackend::Pil : qwen::VisionBackend::Torchvision;
    const std::string pillow = ref.json()["versions"]["pillow"].get<std::string>();
    if (std::stoi(pillow.substr(0, pillow.find('.'))) < 13)
      proc.pillow_order = qwen::PillowOrder::Pillow12;
    std::vector<qwen::ImageU8> images;
    for (int i = 0; i < ref.json()["parts"]["text_encoder"]["images"].get<int>(); ++i)
      images.push_back(
          qwen::read_png(ref.dir() + "/text_encoder_image_" + std::to_string(i) + ".png"));
    auto [pv, grid] = qwen::pipelines::vision_inputs(images, proc);
    EXPECT_TRUE(torch::equal(grid, t.at("vl_image_grid_thw"))) << where;
    ASSERT_EQ(pv.sizes(), t.at("vl_pixel_values").sizes()) << where;
    EXPECT_TRUE(torch::equal(pv, t.at("vl_pixel_values")))
        << (pil ? "pil" : "torchvision") << " processor: max abs "
        << (pv - t.at("vl_pixel_values")).abs().max().item<double>() << ", " << where;
  }

  auto emb = te->encode_images(t.at("vl_pixel_values"), t.at("vl_image_grid_thw"));
  EXPECT_TRUE(qwen::test::AllClose(emb, t.at("vl_image_embeds"), atol, rtol)) << where;
  auto vl = te->forward(t.at("vl_input_ids"), t.at("vl_attention_mask"), t.at("vl_pixel_values"),
                        t.at("vl_image_grid_thw"), false);
  EXPECT_TRUE(torch::equal(vl.position_ids, t.at("vl_position_ids"))) << where;
  EXPECT_TRUE(torch::equal(vl.rope_deltas, t.at("vl_rope_deltas"))) << where;
  EXPECT_TRUE(qwen::test::AllClose(vl.last_hidden_state, t.at("vl_last_hidden_state"), atol, rtol))
      << where;
}

}  // namespace
