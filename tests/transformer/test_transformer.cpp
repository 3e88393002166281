// QwenImageTransformer2DModel: forward against the reference on the tiny checkpoint, plus the
// numerically delicate pieces (sinusoid, RoPE positions, modulation, masks) on their own.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/fixtures.h"
#include "common/real_checkpoints.h"
#include "common/tiny_transformer.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "models/transformer.h"
#include "models/weights.h"

using qwen::models::ImageShape;
using qwen::models::QwenImageTransformer2DModel;
using qwen::models::TransformerConfig;
using qwen::test::AllClose;
using qwen::test::fixture_path;

namespace {

std::string transformer_dir() { return qwen::test::tiny_model_dir() + "/transformer"; }

// img_shapes of the first sample from a case's inputs.json.
std::vector<ImageShape> img_shapes_of(const std::string& case_name) {
  auto j = nlohmann::json::parse(
      qwen::test::read_text(fixture_path("cases/" + case_name + "/inputs.json")));
  std::vector<ImageShape> out;
  for (const auto& s : j.at("img_shapes").at(0))
    out.push_back({s.at(0).get<int64_t>(), s.at(1).get<int64_t>(), s.at(2).get<int64_t>()});
  return out;
}

}  // namespace

TEST(TransformerConfig, ReadsTinyConfig) {
  auto cfg = TransformerConfig::from_json_file(transformer_dir() + "/config.json");
  EXPECT_EQ(cfg.num_layers, 2);
  EXPECT_EQ(cfg.num_attention_heads, 2);
  EXPECT_EQ(cfg.attention_head_dim, 32);
  EXPECT_EQ(cfg.joint_attention_dim, 32);
  EXPECT_EQ(cfg.axes_dims_rope, (std::array<int64_t, 3>{8, 12, 12}));
  EXPECT_FALSE(cfg.zero_cond_t);
}

TEST(TransformerConfig, RealModelParameterCount) {
  TransformerConfig real;  // diffusers defaults = the released 20B configuration
  EXPECT_EQ(real.parameter_count(), 20430401088LL);
}

// Resident memory of this process in bytes (/proc/self/statm).
static int64_t resident_bytes() {
  std::ifstream f("/proc/self/statm");
  int64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

// The engine builds the module before loading: with the real 20.4B configuration that must not
// allocate (let alone randomly initialise) 82 GB of float32 parameters that the loader replaces.
TEST(Transformer, BuildingTheRealConfigurationTouchesNoMemory) {
  TransformerConfig real;
  const int64_t before = resident_bytes();
  std::optional<QwenImageTransformer2DModel> model;
  try {
    model.emplace(real);
  } catch (const c10::Error& e) {  // address space refused (strict overcommit): not our failure
    GTEST_SKIP() << "cannot reserve the address space of 20.4B uninitialized floats: "
                 << e.what_without_backtrace();
  }
  const int64_t grown = resident_bytes() - before;
  int64_t n = 0;
  for (const auto& p : (*model)->parameters()) n += p.numel();
  EXPECT_EQ(n, 20430401088LL);
  EXPECT_LT(grown, int64_t(256) << 20)
      << "building the module made " << (grown >> 20) << " MiB resident";
}

// The real 20.4B layout as a ComfyUI single file (keys from the spec, data a sparse hole): the
// configuration derived from the shapes is the released one, and the module built from it takes
// every tensor by name and shape, mapped without a copy (BF16 on the CPU). Two of the 60 blocks
// are loaded (the others are dropped from the store) so that a regression to copying cannot
// exhaust the test machine's memory.
TEST(Transformer, LoadsTheRealSizeComfyUiFileWithoutCopying) {
  qwen::test::TempDir tmp;
  const auto path = tmp.path() / "qwen_image_bf16.safetensors";
  qwen::test::write_sparse_bf16(path,
                                qwen::test::real_transformer_shapes("model.diffusion_model."));
  auto w = qwen::io::open_component(path.string(), qwen::io::ComponentKind::Transformer);
  auto cfg = TransformerConfig::from_json_text(w.config.dump(), path.string());
  EXPECT_EQ(cfg.num_layers, 60);
  EXPECT_EQ(cfg.parameter_count(), 20430401088LL);
  EXPECT_FALSE(w.zero_cond_t);

  const int64_t kept = 2;
  for (const auto& name : w.store.names())
    if (name.rfind("transformer_blocks.", 0) == 0 &&
        std::stoll(name.substr(std::string("transformer_blocks.").size())) >= kept)
      w.store.erase(name);
  cfg.num_layers = kept;
  const int64_t before = resident_bytes();
  QwenImageTransformer2DModel model(cfg);
  auto report =
      qwen::models::load_module(*model, w.store, "transformer", torch::kBFloat16, torch::kCPU);
  EXPECT_TRUE(report.missing.empty());
  int64_t n = 0, mapped = 0;
  for (const auto& p : model->named_parameters()) {
    EXPECT_EQ(p.value().scalar_type(), torch::kBFloat16) << p.key();
    const auto* ref = w.store.find(p.key());
    ASSERT_NE(ref, nullptr) << p.key();
    if (p.value().data_ptr() == ref->file->data(*ref->info)) ++mapped;
    n += p.value().numel();
  }
  EXPECT_EQ(n, cfg.parameter_count());
  EXPECT_EQ(mapped, int64_t(model->parameters().size())) << "parameters copied instead of mapped";
  const int64_t grown = resident_bytes() - before;
  EXPECT_LT(grown, int64_t(256) << 20) << "loading made " << (grown >> 20) << " MiB resident";
}

TEST(TransformerConfig, RejectsBadConfigs) {
  EXPECT_THROW(TransformerConfig::from_json_text("{", "x.json"), std::runtime_error);
  EXPECT_THROW(TransformerConfig::from_json_text("[]", "x.json"), std::runtime_error);
  EXPECT_THROW(TransformerConfig::from_json_text(R"({"num_layers": "two"})", "x.json"),
               std::runtime_error);
  EXPECT_THROW(TransformerConfig::from_json_text(R"({"axes_dims_rope": [16, 56, 50]})", "x.json"),
               std::runtime_error);
  EXPECT_THROW(TransformerConfig::from_json_text(R"({"guidance_embeds": true})", "x.json"),
               std::runtime_error);
  try {
    TransformerConfig::from_json_text(R"({"num_attention_heads": 0})", "cfg.json");
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cfg.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("num_attention_heads"), std::string::npos) << e.what();
  }
}

TEST(TransformerLayers, TimestepSinusoidMatchesReferenceValues) {
  // Spec §2.4.2 sanity values for t = 0.99609375 (fp32, before the cast to the model dtype).
  auto emb = qwen::models::dit::timestep_sinusoid(torch::tensor({0.99609375f}));
  ASSERT_EQ(emb.sizes(), (std::vector<int64_t>{1, 256}));
  auto head = torch::tensor({-0.978264f, -0.986058f, -0.212781f, 0.017412f});
  auto mid = torch::tensor({-0.207363f, -0.166401f, 0.977100f, -0.999848f});
  EXPECT_TRUE(AllClose(emb[0].slice(0, 0, 4), head, 2e-6));
  EXPECT_TRUE(AllClose(emb[0].slice(0, 128, 132), mid, 2e-6));
  // t = 0: 128 cosines of 0 then 128 sines of 0.
  auto zero = qwen::models::dit::timestep_sinusoid(torch::zeros({1}));
  EXPECT_TRUE(torch::equal(zero[0].slice(0, 0, 128), torch::ones({128})));
  EXPECT_TRUE(torch::equal(zero[0].slice(0, 128), torch::zeros({128})));
}

TEST(TransformerRope, CentredGridsAndTextOffset) {
  using qwen::models::dit::MultiAxisRope;
  // 1328x1328: h = w = 83 -> rows/cols -42..40, text starts at 41 (spec §5.8).
  auto pos = MultiAxisRope::image_positions({{1, 83, 83}});
  EXPECT_EQ(pos.size(0), 83 * 83);
  EXPECT_EQ(pos[0][1].item<int64_t>(), -42);
  EXPECT_EQ(pos[83 * 83 - 1][1].item<int64_t>(), 40);
  EXPECT_EQ(pos[82][2].item<int64_t>(), 40);
  EXPECT_EQ(MultiAxisRope::text_offset({{1, 83, 83}}), 41);
  // Even sizes: -32..31. Edit layout: frame index = segment index; M over all segments.
  auto multi = MultiAxisRope::image_positions({{1, 4, 6}, {1, 3, 5}, {1, 64, 2}});
  EXPECT_EQ(multi[0][0].item<int64_t>(), 0);
  EXPECT_EQ(multi[0][1].item<int64_t>(), -2);
  EXPECT_EQ(multi[0][2].item<int64_t>(), -3);
  EXPECT_EQ(multi[24][0].item<int64_t>(), 1);
  EXPECT_EQ(multi[24][1].item<int64_t>(), -2);  // h = 3: rows -2..0
  EXPECT_EQ(multi[24 + 15][0].item<int64_t>(), 2);
  EXPECT_EQ(multi[24 + 15][1].item<int64_t>(), -32);
  EXPECT_EQ(MultiAxisRope::text_offset({{1, 4, 6}, {1, 3, 5}, {1, 64, 2}}), 32);
}

TEST(TransformerRope, Layer3dFramesAndTextOffset) {
  using qwen::models::dit::MultiAxisRope;
  // QwenEmbedLayer3DRope: generated frame i -> frame index i, the last segment (the condition) ->
  // -1; rows / columns centred as usual; text after max(largest half-size, segments - 1).
  const std::vector<qwen::models::ImageShape> shapes = {{1, 2, 3}, {1, 2, 3}, {1, 2, 3}, {1, 4, 2}};
  auto pos = MultiAxisRope::image_positions(shapes, /*layer3d=*/true);
  auto plain = MultiAxisRope::image_positions(shapes);
  ASSERT_EQ(pos.size(0), 3 * 6 + 8);
  for (int64_t f = 0; f < 3; ++f) EXPECT_EQ(pos[f * 6][0].item<int64_t>(), f);
  EXPECT_EQ(pos[18][0].item<int64_t>(), -1);
  EXPECT_EQ(pos[25][0].item<int64_t>(), -1);
  EXPECT_EQ(plain[18][0].item<int64_t>(), 3);
  // Only the condition's frame index differs from the plain layout.
  EXPECT_TRUE(torch::equal(pos.slice(0, 0, 18), plain.slice(0, 0, 18)));
  EXPECT_TRUE(torch::equal(pos.slice(0, 18).select(1, 1), plain.slice(0, 18).select(1, 1)));
  EXPECT_EQ(pos[18][1].item<int64_t>(), -2);  // h = 4: rows -2..1
  // Small grids: the segment count wins (layer_num = 3 > half-sizes 1, 2).
  EXPECT_EQ(MultiAxisRope::text_offset(shapes), 2);
  EXPECT_EQ(MultiAxisRope::text_offset(shapes, true), 3);
  EXPECT_EQ(MultiAxisRope::text_offset({{1, 40, 40}, {1, 40, 40}, {1, 40, 40}}, true), 20);
  // A multi-frame condition segment cannot be placed at -1.
  EXPECT_THROW(MultiAxisRope::image_positions({{1, 2, 2}, {2, 2, 2}}, true), std::invalid_argument);
  // The tables: frame -1 rotates the frame pairs by -theta (conjugate of frame 1).
  MultiAxisRope rope({2, 2, 4}, 10000.0, true);
  auto [img, txt] = rope.tables({{1, 1, 1}, {1, 1, 1}, {1, 1, 1}}, 2, torch::kCPU);
  EXPECT_TRUE(torch::allclose(torch::view_as_real(img[2].slice(0, 0, 1)),
                              torch::view_as_real(img[1].slice(0, 0, 1).conj().resolve_conj())));
  EXPECT_EQ(txt.size(0), 2);
}

TEST(TransformerRope, RotatesInterleavedPairs) {
  // Head dim 8 = one pair per axis... use axes (2, 2, 4): pairs 0 -> frame, 1 -> height, 2-3 ->
  // width.
  qwen::models::dit::MultiAxisRope rope({2, 2, 4});
  auto [img, txt] = rope.tables({{1, 2, 2}}, 3, torch::kCPU);
  ASSERT_EQ(img.sizes(), (std::vector<int64_t>{4, 4}));
  ASSERT_EQ(txt.sizes(), (std::vector<int64_t>{3, 4}));
  // Token 0 of a 2x2 grid sits at (frame 0, row -1, col -1): pair 1 angle = -1 * 1, pair 2 = -1.
  auto ang = torch::angle(img[0]);
  EXPECT_NEAR(ang[0].item<float>(), 0.0f, 1e-7);
  EXPECT_NEAR(ang[1].item<float>(), -1.0f, 1e-6);
  EXPECT_NEAR(ang[2].item<float>(), -1.0f, 1e-6);
  EXPECT_NEAR(ang[3].item<float>(), -0.01f, 1e-7);  // 1 / 10000^(2/4)
  // Text token 0 at position M = 1 on all axes.
  auto tang = torch::angle(txt[0]);
  EXPECT_NEAR(tang[0].item<float>(), 1.0f, 1e-6);
  EXPECT_NEAR(tang[1].item<float>(), 1.0f, 1e-6);
  // Rotation acts on (x[2i], x[2i+1]) pairs.
  auto x = torch::zeros({1, 4, 1, 8});
  x.index_put_({0, 0, 0, 2}, 1.0f);  // pair 1 of token 0: (1, 0) rotated by -1 rad
  auto y = qwen::models::dit::apply_rope(x, img);
  EXPECT_NEAR(y[0][0][0][2].item<float>(), std::cos(-1.0f), 1e-6);
  EXPECT_NEAR(y[0][0][0][3].item<float>(), std::sin(-1.0f), 1e-6);
  EXPECT_EQ(y[0][0][0][0].item<float>(), 0.0f);
}

TEST(TransformerBlock, ModulationPicksRowsPerToken) {
  auto z = torch::randn({1, 3, 4});
  auto params = torch::randn({2, 12});  // rows: real t, t = 0
  auto index = torch::tensor({{0, 1, 1}}, torch::kInt32);
  auto [m, gate] = qwen::models::dit::modulate(z, params, index);
  auto [m0, g0] = qwen::models::dit::modulate(z, params.slice(0, 0, 1), {});
  auto [m1, g1] = qwen::models::dit::modulate(z, params.slice(0, 1, 2), {});
  EXPECT_TRUE(torch::equal(m.select(1, 0), m0.select(1, 0)));
  EXPECT_TRUE(torch::equal(m.select(1, 2), m1.select(1, 2)));
  EXPECT_TRUE(torch::equal(gate.select(1, 1), g1.select(1, 0)));
  // (z * (1 + scale)) + shift with the (shift, scale, gate) order.
  auto expect = z * (1 + params[0].slice(0, 4, 8)) + params[0].slice(0, 0, 4);
  EXPECT_TRUE(AllClose(m0, expect, 0));
}

TEST(Transformer, RegisteredNamesAreTheCheckpointKeys) {
  auto cfg = TransformerConfig::from_json_file(transformer_dir() + "/config.json");
  QwenImageTransformer2DModel model(cfg);
  auto store = qwen::io::TensorStore::open(transformer_dir());
  std::vector<std::string> ours;
  for (const auto& p : model->named_parameters()) ours.push_back(p.key());
  std::sort(ours.begin(), ours.end());
  EXPECT_EQ(ours, store.names());
  int64_t n = 0;
  for (const auto& p : model->parameters()) n += p.numel();
  EXPECT_EQ(n, cfg.parameter_count());
}

TEST(Transformer, MatchesReferenceT2I) {
  auto model = qwen::test::load_transformer(qwen::test::tiny_model_dir());
  auto t = qwen::test::load_tensors(fixture_path("cases/transformer_t2i/tensors.safetensors"));
  torch::NoGradGuard ng;
  auto out = model->forward(t.at("hidden_states"), t.at("encoder_hidden_states"),
                            t.at("encoder_hidden_states_mask"), t.at("timestep"),
                            img_shapes_of("transformer_t2i"));
  EXPECT_TRUE(AllClose(out, t.at("output"), 1e-4, 1e-4));
}

TEST(Transformer, PaddedTextIsMaskedOut) {
  // Sample 0 of transformer_t2i has 7 valid tokens padded to 12: running it alone with only the 7
  // valid tokens and no mask must give the same output (text positions do not depend on padding).
  auto model = qwen::test::load_transformer(qwen::test::tiny_model_dir());
  auto t = qwen::test::load_tensors(fixture_path("cases/transformer_t2i/tensors.safetensors"));
  torch::NoGradGuard ng;
  auto out = model->forward(t.at("hidden_states").slice(0, 0, 1),
                            t.at("encoder_hidden_states").slice(0, 0, 1).slice(1, 0, 7), {},
                            t.at("timestep").slice(0, 0, 1), img_shapes_of("transformer_t2i"));
  EXPECT_TRUE(AllClose(out, t.at("output").slice(0, 0, 1), 1e-4, 1e-4));
}

TEST(Transformer, MatchesReferenceEditMulti) {
  auto model = qwen::test::load_transformer(qwen::test::tiny_model_dir());
  auto t =
      qwen::test::load_tensors(fixture_path("cases/transformer_edit_multi/tensors.safetensors"));
  torch::NoGradGuard ng;
  // The reference passed mask None (all valid); passing the all-ones mask must not change it.
  auto shapes = img_shapes_of("transformer_edit_multi");
  ASSERT_EQ(shapes.size(), 3u);
  auto out = model->forward(t.at("hidden_states"), t.at("encoder_hidden_states"), {},
                            t.at("timestep"), shapes);
  EXPECT_TRUE(AllClose(out, t.at("output"), 1e-4, 1e-4));
  auto masked = model->forward(t.at("hidden_states"), t.at("encoder_hidden_states"),
                               t.at("encoder_hidden_states_mask"), t.at("timestep"), shapes);
  EXPECT_TRUE(AllClose(masked, t.at("output"), 1e-4, 1e-4));
}

TEST(Transformer, ZeroCondTimestep) {
  auto plain = qwen::test::load_transformer(qwen::test::tiny_model_dir(), false);
  auto zero = qwen::test::load_transformer(qwen::test::tiny_model_dir(), true);
  auto t =
      qwen::test::load_tensors(fixture_path("cases/transformer_edit_multi/tensors.safetensors"));
  torch::NoGradGuard ng;
  auto shapes = img_shapes_of("transformer_edit_multi");
  // One segment: every token uses the real timestep -> identical to the plain model.
  const int64_t first = shapes[0][1] * shapes[0][2];
  auto x1 = t.at("hidden_states").slice(1, 0, first);
  auto a = plain->forward(x1, t.at("encoder_hidden_states"), {}, t.at("timestep"), {shapes[0]});
  auto b = zero->forward(x1, t.at("encoder_hidden_states"), {}, t.at("timestep"), {shapes[0]});
  EXPECT_TRUE(AllClose(b, a, 1e-5));  // a [2, D] modulation GEMM rounds differently
  // With condition segments, the condition tokens are modulated with t = 0, the result differs...
  auto full = zero->forward(t.at("hidden_states"), t.at("encoder_hidden_states"), {},
                            t.at("timestep"), shapes);
  EXPECT_FALSE(AllClose(full, t.at("output"), 1e-3));
  // ...and at timestep 0 the zero_cond model equals the plain one everywhere.
  auto t0 = torch::zeros({1});
  auto p0 = plain->forward(t.at("hidden_states"), t.at("encoder_hidden_states"), {}, t0, shapes);
  auto z0 = zero->forward(t.at("hidden_states"), t.at("encoder_hidden_states"), {}, t0, shapes);
  EXPECT_TRUE(AllClose(z0, p0, 1e-6));
}

TEST(Transformer, RejectsMismatchedInputs) {
  auto model = qwen::test::load_transformer(qwen::test::tiny_model_dir());
  torch::NoGradGuard ng;
  auto x = torch::randn({1, 24, 64});
  auto c = torch::randn({1, 5, 32});
  auto ts = torch::ones({1});
  EXPECT_THROW(model->forward(x, c, {}, ts, {{1, 4, 5}}), c10::Error);  // 20 != 24 tokens
  EXPECT_THROW(model->forward(torch::randn({1, 24, 60}), c, {}, ts, {{1, 4, 6}}), c10::Error);
  EXPECT_THROW(model->forward(x, torch::randn({1, 5, 31}), {}, ts, {{1, 4, 6}}), c10::Error);
  EXPECT_THROW(model->forward(x, c, torch::ones({1, 4}), ts, {{1, 4, 6}}), c10::Error);
}
