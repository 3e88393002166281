// Qwen-Image-2.1 transformer pieces on their own: the joint token layout (block ids, RoPE
// positions, prefix segments, the block-causal mask rule), config.json parsing and its errors, the
// registered checkpoint names and the fused SwiGLU layout. The whole model is compared with
// diffusers in tests/reference/test_reference_qwen21_transformer.cpp.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <set>
#include <string>

#include "io/checkpoint.h"
#include "io/transformer21_keys.h"
#include "models/lora.h"
#include "models/transformer21.h"
#include "models/transformer21_config.h"
#include "models/transformer21_layout.h"

namespace {

using qwen::models::Transformer21Config;
using qwen::models::qwen21::make_token_layout;
using qwen::models::qwen21::may_attend;
using qwen::models::qwen21::Segment;
using qwen::models::qwen21::TokenLayout;

// slots: 't' text, 'i' image slot (4 tokens).
std::vector<bool> slots(const std::string& s) {
  std::vector<bool> v;
  for (char c : s) v.push_back(c == 'i');
  return v;
}

TEST(Transformer21Layout, TextThenTargetPositionsAndIds) {
  // 3 text slots, then a 2x4 target (8 tokens = 2 slots).
  const auto L = make_token_layout(slots("tttii"), {{1, 2, 4}});
  EXPECT_EQ(L.seq_len, 11);
  EXPECT_EQ(L.prefix_len, 3);
  EXPECT_EQ(L.target_len, 8);
  // Text advances one position on all axes; the image takes frame 3 and centred grids
  // h in [-1, 0], w in [-2, 1].
  EXPECT_EQ(L.positions[0], (std::array<int64_t, 3>{0, 0, 0}));
  EXPECT_EQ(L.positions[2], (std::array<int64_t, 3>{2, 2, 2}));
  EXPECT_EQ(L.positions[3], (std::array<int64_t, 3>{3, -1, -2}));
  EXPECT_EQ(L.positions[6], (std::array<int64_t, 3>{3, -1, 1}));
  EXPECT_EQ(L.positions[7], (std::array<int64_t, 3>{3, 0, -2}));
  EXPECT_EQ(L.positions[10], (std::array<int64_t, 3>{3, 0, 1}));
  EXPECT_EQ(L.image_ids[2], -1);
  EXPECT_EQ(L.image_ids[3], 0);
  EXPECT_EQ(L.text_joint, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(L.segments, (std::vector<Segment>{{0, 3, true}}));
}

TEST(Transformer21Layout, ConditionBlocksAdvanceThePositionByTheirLongerSide) {
  // text, a 2x6 condition (3 slots), text x2, a 4x2 target.
  const auto L = make_token_layout(slots("tiiittii"), {{1, 2, 6}, {1, 4, 2}});
  ASSERT_EQ(L.seq_len, 1 + 12 + 2 + 8);
  EXPECT_EQ(L.prefix_len, 15);
  EXPECT_EQ(L.positions[1], (std::array<int64_t, 3>{1, -1, -3}));
  // After the condition block the position is 1 + max(2, 6) = 7.
  EXPECT_EQ(L.positions[13], (std::array<int64_t, 3>{7, 7, 7}));
  EXPECT_EQ(L.positions[14], (std::array<int64_t, 3>{8, 8, 8}));
  EXPECT_EQ(L.positions[15], (std::array<int64_t, 3>{9, -2, -1}));
  EXPECT_EQ(L.text_joint, (std::vector<int64_t>{0, 13, 14}));
  EXPECT_EQ(L.text_slot, (std::vector<int64_t>{0, 4, 5}));
  EXPECT_EQ(L.condition_joint.size(), 12u);
  EXPECT_EQ(L.condition_joint.front(), 1);
  EXPECT_EQ(L.segments, (std::vector<Segment>{{0, 1, true}, {1, 13, false}, {13, 15, true}}));
}

TEST(Transformer21Layout, AdjacentConditionImagesStaySeparateBlocks) {
  // Two 2x2 condition images with no text between them: one run of slots, two blocks.
  const auto L = make_token_layout(slots("tiittii"), {{1, 2, 2}, {1, 2, 2}, {1, 2, 4}});
  EXPECT_EQ(L.image_ids[1], 0);
  EXPECT_EQ(L.image_ids[5], 1);
  EXPECT_EQ(L.segments,
            (std::vector<Segment>{{0, 1, true}, {1, 5, false}, {5, 9, false}, {9, 11, true}}));
  EXPECT_FALSE(may_attend(L, 2, 6));  // first block never sees the second
  EXPECT_TRUE(may_attend(L, 6, 2));
  EXPECT_TRUE(may_attend(L, 5, 8));  // inside a block: bidirectional
  EXPECT_EQ(L.positions[5][0], 3);   // the second block's frame: 1 + max(2, 2)
}

TEST(Transformer21Layout, BlockCausalMaskRule) {
  const auto L = make_token_layout(slots("ttittii"), {{1, 2, 2}, {1, 2, 4}});
  const int64_t P = L.prefix_len, S = L.seq_len;
  for (int64_t q = 0; q < S; ++q)
    for (int64_t k = 0; k < S; ++k) {
      const bool a = may_attend(L, q, k);
      if (q >= P) {
        EXPECT_TRUE(a) << q << " " << k;  // the target sees everything
      } else if (k >= P) {
        EXPECT_FALSE(a) << q << " " << k;  // the prefix never sees the target
      } else if (L.image_ids[q] < 0) {
        EXPECT_EQ(a, k <= q) << q << " " << k;  // text is causal
      } else if (L.image_ids[q] == L.image_ids[k]) {
        EXPECT_TRUE(a) << q << " " << k;  // an image block is bidirectional inside
      } else {
        EXPECT_EQ(a, k < q) << q << " " << k;  // and causal to the rest
      }
    }
  // The segments the model attends with reproduce the rule on the prefix: segment rows see keys
  // [0, end), text rows only up to themselves.
  for (const auto& s : L.segments)
    for (int64_t q = s.start; q < s.end; ++q)
      for (int64_t k = 0; k < P; ++k) {
        const bool seg = k < s.end && (!s.text || k <= q);
        EXPECT_EQ(seg, may_attend(L, q, k)) << q << " " << k;
      }
}

TEST(Transformer21Layout, RejectsLayoutsTheReferenceCannotRun) {
  // 2 image slots = 8 tokens, but the shape says 2x2 = 4.
  EXPECT_THROW(make_token_layout(slots("tii"), {{1, 2, 2}}), std::invalid_argument);
  // Text after the target.
  EXPECT_THROW(make_token_layout(slots("tiit"), {{1, 2, 4}}), std::invalid_argument);
  // More than one frame.
  EXPECT_THROW(make_token_layout(slots("tii"), {{2, 2, 2}}), std::invalid_argument);
  EXPECT_THROW(make_token_layout(slots("t"), {}), std::invalid_argument);
  // A 2x4 block whose slots are split by text.
  EXPECT_THROW(make_token_layout(slots("titiii"), {{1, 2, 4}, {1, 2, 4}}), std::invalid_argument);
  try {
    make_token_layout(slots("tii"), {{1, 2, 2}});
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("img_shapes account for 4"), std::string::npos)
        << e.what();
  }
}

TEST(Transformer21Config, DefaultsAreTheReleasedModel) {
  const Transformer21Config c;
  EXPECT_EQ(c.inner_dim(), 4096);
  EXPECT_EQ(c.mlp_hidden(), 12288);
  // 7.1B parameters (issue #15).
  EXPECT_NEAR(double(c.parameter_count()) / 1e9, 7.1, 0.1);
  EXPECT_NO_THROW(Transformer21Config::from_json_text("{}", "x").validate());
}

TEST(Transformer21Config, ParsesAndNamesTheFileAndKeyOnErrors) {
  auto c = Transformer21Config::from_json_text(
      R"({"_class_name": "QwenImage21Transformer2DModel", "num_layers": 2, "attention_head_dim": 16,
          "num_attention_heads": 3, "axes_dims_rope": [4, 6, 6], "out_channels": null,
          "in_channels": 8, "context_in_dim": 12, "mlp_ratio": 2, "causal_condition": false})",
      "cfg.json");
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.out_channels, 8);  // null -> in_channels
  EXPECT_FALSE(c.causal_condition);
  auto fails_with = [](const std::string& json, const std::string& needle) {
    try {
      Transformer21Config::from_json_text(json, "/m/transformer/config.json");
      ADD_FAILURE() << "no error for " << json;
    } catch (const std::runtime_error& e) {
      const std::string w = e.what();
      EXPECT_NE(w.find("/m/transformer/config.json"), std::string::npos) << w;
      EXPECT_NE(w.find(needle), std::string::npos) << w;
    }
  };
  fails_with(R"({"num_layers": "many"})", "num_layers");
  fails_with(R"({"num_layers": 0})", "num_layers");
  fails_with(R"({"axes_dims_rope": [16, 56]})", "axes_dims_rope");
  fails_with(R"({"axes_dims_rope": [16, 56, 50]})", "axes_dims_rope");
  fails_with(R"({"_class_name": "QwenImageTransformer2DModel"})", "_class_name");
  fails_with("[1]", "JSON object");
  EXPECT_THROW(Transformer21Config::from_json_file("/nonexistent/config.json"), std::runtime_error);
}

Transformer21Config tiny(bool fused) {
  Transformer21Config c;
  c.num_layers = 2;
  c.attention_head_dim = 8;
  c.num_attention_heads = 2;
  c.axes_dims_rope = {2, 2, 4};
  c.in_channels = 4;
  c.out_channels = 4;
  c.context_in_dim = 6;
  c.mlp_ratio = 2;
  c.fused_mlp = fused;
  return c;
}

TEST(Transformer21Model, RegistersTheDiffusersCheckpointNames) {
  qwen::models::QwenImage21Transformer2DModel m(tiny(false));
  std::set<std::string> names;
  for (const auto& p : m->named_parameters()) names.insert(p.key());
  const std::set<std::string> top = {"img_in.weight",
                                     "txt_in.text_norm.weight",
                                     "txt_in.in_layer.weight",
                                     "txt_in.out_layer.weight",
                                     "time_text_embed.timestep_embedder.linear_1.weight",
                                     "time_text_embed.timestep_embedder.linear_2.weight",
                                     "modulation.1.weight",
                                     "norm_out.linear.weight",
                                     "proj_out.weight"};
  std::set<std::string> expected = top;
  for (int b = 0; b < 2; ++b)
    for (const char* s : {"attn.to_q.weight", "attn.to_k.weight", "attn.to_v.weight",
                          "attn.to_out.0.weight", "attn.norm_q.weight", "attn.norm_k.weight",
                          "img_mlp.proj.weight", "img_mlp.gate_layer.weight", "img_mlp.out.weight"})
      expected.insert("transformer_blocks." + std::to_string(b) + "." + s);
  EXPECT_EQ(names, expected);
  EXPECT_EQ(int64_t(names.size()), int64_t(expected.size()));
  int64_t n = 0;
  for (const auto& p : m->parameters()) n += p.numel();
  EXPECT_EQ(n, tiny(false).parameter_count());
  qwen::models::QwenImage21Transformer2DModel f(tiny(true));
  EXPECT_EQ(f->named_parameters().contains("transformer_blocks.1.img_mlp.gate_up.weight"), true);
  EXPECT_EQ(f->named_parameters().contains("transformer_blocks.1.img_mlp.proj.weight"), false);
}

TEST(Transformer21Model, FusedGateUpEqualsSeparateProjections) {
  torch::manual_seed(3);
  torch::NoGradGuard ng;
  qwen::models::dit21::SwiGLU a(6, 12, false), b(6, 12, true);
  for (auto& p : a->parameters()) p.normal_();
  b->gate_up->weight.copy_(torch::cat({a->gate_layer->weight, a->proj->weight}, 0));
  b->out->weight.copy_(a->out->weight);
  auto x = torch::randn({2, 5, 6});
  EXPECT_TRUE(torch::allclose(a(x), b(x), 1e-5, 1e-6));
}

TEST(Transformer21Model, KVCacheGivesTheUncachedResultAndNeedsTheSameLayout) {
  torch::manual_seed(5);
  torch::NoGradGuard ng;
  qwen::models::QwenImage21Transformer2DModel m(tiny(false));
  for (auto& p : m->parameters()) p.normal_(0.0, 0.3);
  const auto mask = slots("ttitti");  // 2x2 condition (1 slot), 2x2 target (1 slot)
  const std::vector<qwen::models::qwen21::Shape> shapes{{1, 2, 2}, {1, 2, 2}};
  auto ehs = torch::randn({1, 5, 6});
  auto key_mask = torch::tensor({{1, 1, 1, 1, 0}}, torch::kInt64);  // last prompt slot padded
  qwen::models::Transformer21KVCache cache;
  auto cond = torch::randn({1, 4, 4});  // the condition latents: the same every step
  for (int step = 0; step < 3; ++step) {
    auto hs = torch::cat({cond, torch::randn({1, 4, 4})}, 1);
    auto t = torch::full({1}, 0.9 - 0.3 * step);
    auto ref = m->forward(hs, ehs, key_mask, t, shapes, mask);
    auto got = m->forward(hs, ehs, key_mask, t, shapes, mask, &cache);
    EXPECT_TRUE(cache.filled());
    EXPECT_EQ(got.sizes(), (std::vector<int64_t>{1, 4, 4}));
    EXPECT_TRUE(torch::allclose(got, ref, 1e-5, 1e-5)) << "step " << step;
  }
  // The padded key is masked: changing its row leaves the output unchanged.
  auto hs = torch::randn({1, 8, 4});
  auto t = torch::full({1}, 0.5);
  auto ehs2 = ehs.clone();
  ehs2.select(1, 4).normal_();
  EXPECT_TRUE(torch::allclose(m->forward(hs, ehs, key_mask, t, shapes, mask),
                              m->forward(hs, ehs2, key_mask, t, shapes, mask), 1e-6, 1e-6));
  // ...and without the mask it is attended to.
  EXPECT_FALSE(torch::allclose(m->forward(hs, ehs, {}, t, shapes, mask),
                               m->forward(hs, ehs2, {}, t, shapes, mask), 1e-6, 1e-6));
  EXPECT_THROW(m->forward(hs, ehs, key_mask, t, {{1, 2, 2}, {1, 2, 2}}, slots("tttiitti"), &cache),
               std::invalid_argument);
  cache.clear();
  EXPECT_FALSE(cache.filled());
}

TEST(Transformer21Model, LorasAdaptTheLayersTheyNameByDiffusersModuleNames) {
  // The 2.1 model's Linears are models::Linear, so models/lora.h adapts them by their checkpoint
  // names: a LoRA equals its merged weight W + scale * up @ down, and clearing it restores the
  // model.
  torch::manual_seed(11);
  torch::NoGradGuard ng;
  qwen::models::QwenImage21Transformer2DModel m(tiny(false)), merged(tiny(false));
  auto params = m->named_parameters();
  for (auto& p : params) p.value().normal_(0.0, 0.3);
  for (auto& p : merged->named_parameters()) p.value().copy_(params[p.key()]);
  auto file = std::make_shared<qwen::models::LoraFile>();
  const auto shapes = qwen::models::linear_module_shapes(*m);
  for (const char* name : {"modulation.1", "transformer_blocks.0.attn.to_q",
                           "transformer_blocks.1.img_mlp.gate_layer", "txt_in.in_layer"}) {
    ASSERT_TRUE(shapes.count(name)) << name;
    const auto [out, in] = shapes.at(name);
    qwen::models::LoraModule lm;
    lm.module = name;
    lm.down = torch::randn({2, in});
    lm.up = 0.2 * torch::randn({out, 2});
    lm.alpha = 4;
    lm.r = 2;
    merged->named_parameters()[std::string(name) + ".weight"].add_(torch::matmul(lm.up, lm.down) *
                                                                   lm.scaling(0.5));
    file->modules.push_back(lm);
  }
  std::sort(file->modules.begin(), file->modules.end(),
            [](const auto& a, const auto& b) { return a.module < b.module; });
  const auto mask = slots("ttitti");
  const std::vector<qwen::models::qwen21::Shape> img{{1, 2, 2}, {1, 2, 2}};
  auto hs = torch::randn({1, 8, 4});
  auto ehs = torch::randn({1, 5, 6});
  auto t = torch::full({1}, 0.7);
  const auto before = m->forward(hs, ehs, {}, t, img, mask);
  EXPECT_EQ(qwen::models::apply_loras(*m, {{file, 0.5}}), 4);
  const auto with_lora = m->forward(hs, ehs, {}, t, img, mask);
  EXPECT_TRUE(torch::allclose(with_lora, merged->forward(hs, ehs, {}, t, img, mask), 1e-4, 1e-4));
  EXPECT_FALSE(torch::allclose(with_lora, before, 1e-3, 1e-3));
  qwen::models::clear_loras(*m);
  EXPECT_TRUE(torch::equal(m->forward(hs, ehs, {}, t, img, mask), before));
}

// A file format holding only tensor names and logical shapes (what the configuration reads).
qwen::io::FileFormat shapes_only(
    const std::vector<std::pair<std::string, std::vector<int64_t>>>& t) {
  qwen::io::FileFormat f;
  f.source = "/models/qwen_image_2.1_bf16.safetensors";
  for (const auto& [name, shape] : t) {
    qwen::io::TensorFormat tf;
    tf.key = name;
    tf.shape = shape;
    f.tensors.emplace(name, tf);
  }
  return f;
}

TEST(Transformer21Keys, ConfigurationFromTheShapesOfAComfyFile) {
  // 2 blocks, inner 96 = 3 heads x 32, context 40, fused SwiGLU of 2 x 192 rows (mlp_ratio 2).
  std::vector<std::pair<std::string, std::vector<int64_t>>> t = {
      {"img_in.weight", {96, 64}},
      {"proj_out.weight", {64, 96}},
      {"txt_in.in_layer.weight", {96, 40}},
      {"txt_in.text_norm.weight", {40}},
      {"modulation.1.weight", {384, 96}}};
  for (int b = 0; b < 2; ++b) {
    const std::string p = "transformer_blocks." + std::to_string(b) + ".";
    t.push_back({p + "attn.norm_q.weight", {32}});
    t.push_back({p + "img_mlp.gate_up.weight", {384, 96}});
  }
  const auto f = shapes_only(t);
  EXPECT_TRUE(qwen::io::is_transformer21_format(f));
  const auto j = qwen::io::transformer21_config_from_shapes(f);
  EXPECT_EQ(j.at("num_layers"), 2);
  EXPECT_EQ(j.at("attention_head_dim"), 32);
  EXPECT_EQ(j.at("num_attention_heads"), 3);
  EXPECT_EQ(j.at("context_in_dim"), 40);
  EXPECT_EQ(j.at("mlp_ratio"), 2);
  EXPECT_EQ(j.at("in_channels"), 64);
  EXPECT_FALSE(j.contains("out_channels"));  // = in_channels, like diffusers' null
  const auto c = Transformer21Config::from_json_text(j.dump(), "derived");
  EXPECT_EQ(c.axes_dims_rope[0] + c.axes_dims_rope[1] + c.axes_dims_rope[2], 32);
  // The released shapes give the released configuration.
  t[0].second = {4096, 64};
  t[1].second = {64, 4096};
  t[2].second = {4096, 4096};
  for (auto& [name, shape] : t) {
    if (name.ends_with("norm_q.weight")) shape = {128};
    if (name.ends_with("gate_up.weight")) shape = {2 * 12288, 4096};
  }
  const auto r = Transformer21Config::from_json_text(
      qwen::io::transformer21_config_from_shapes(shapes_only(t)).dump(), "released");
  EXPECT_EQ(r.num_attention_heads, 32);
  EXPECT_EQ(r.mlp_ratio, 3);
  EXPECT_EQ(r.axes_dims_rope, (std::array<int64_t, 3>{16, 56, 56}));
  // A missing tensor is named with the file.
  t.erase(t.begin() + 2);  // txt_in.in_layer.weight
  try {
    qwen::io::transformer21_config_from_shapes(shapes_only(t));
    ADD_FAILURE() << "no error without txt_in.in_layer.weight";
  } catch (const qwen::io::CheckpointError& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("qwen_image_2.1_bf16.safetensors"), std::string::npos) << w;
    EXPECT_NE(w.find("txt_in.in_layer.weight"), std::string::npos) << w;
  }
}

}  // namespace
