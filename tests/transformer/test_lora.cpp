// LoRA files (models/lora.h) on the five key-style samples of tests/fixtures/lora-samples and on
// files written here, and their application to the tiny transformer: side branch, merged copy,
// stacked strengths, quantised bases, exact restore.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "common/fixtures.h"
#include "common/st_writer.h"
#include "common/tiny_transformer.h"
#include "models/linear.h"
#include "models/lora.h"
#include "models/quant.h"

using qwen::models::LoraError;
using qwen::models::LoraStyle;

namespace {

std::string samples(const std::string& f = "") { return std::string(QWEN_LORA_SAMPLES) + "/" + f; }

qwen::models::QwenImageTransformer2DModel& tiny() {
  static auto t = qwen::test::load_transformer(qwen::test::tiny_model_dir());
  return t;
}

std::vector<std::string> names() { return qwen::models::linear_module_names(*tiny()); }

// Bytes of a float32 tensor (for st_writer).
qwen::test::StTensor f32(const std::string& name, const torch::Tensor& t) {
  auto c = t.to(torch::kFloat32).contiguous();
  std::vector<float> v(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  return {name, "F32", c.sizes().vec(), qwen::test::f32_bytes(v)};
}

std::string write(const qwen::test::TempDir& d, const std::string& name,
                  const std::vector<qwen::test::StTensor>& ts,
                  const std::map<std::string, std::string>& meta = {{"format", "pt"}}) {
  qwen::test::write_file(d.path() / name, qwen::test::st_serialize(ts, meta));
  return d.str(name);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const LoraError& e) {
    return e.what();
  }
  return "";
}

// A fixed input for the tiny transformer and its output.
torch::Tensor run_tiny() {
  torch::manual_seed(3);
  auto x = torch::randn({1, 16, 64});
  auto ctx = torch::randn({1, 5, 32});
  auto t = torch::tensor({0.7f});
  return tiny()->forward(x, ctx, {}, t, {{1, 4, 4}});
}

}  // namespace

// Every sample: its style, the modules files.json lists, and the effective delta
// scaling * B @ A equal to (alpha / r) * B @ A of the raw file (README: what diffusers computes).
TEST(Lora, ReadsEveryStyleSample) {
  auto files = nlohmann::json::parse(qwen::test::read_text(samples("files.json")))["files"];
  const std::map<std::string, LoraStyle> styles = {{"diffusers_peft", LoraStyle::DiffusersPeft},
                                                   {"aitoolkit", LoraStyle::AiToolkit},
                                                   {"diffsynth", LoraStyle::DiffSynth},
                                                   {"kohya", LoraStyle::Kohya},
                                                   {"lightx2v", LoraStyle::Lightx2v}};
  ASSERT_EQ(files.size(), 7u);
  for (auto it = files.begin(); it != files.end(); ++it) {
    SCOPED_TRACE(it.key());
    const auto& j = it.value();
    auto lora = qwen::models::read_lora(samples(it.key()), names(),
                                        qwen::models::linear_module_shapes(*tiny()));
    EXPECT_EQ(lora.style, styles.at(j["style"].get<std::string>()));
    std::set<std::string> expected, got;
    for (const auto& m : j["modules"]) expected.insert(m.get<std::string>());
    for (const auto& m : lora.modules) got.insert(m.module);
    EXPECT_EQ(got, expected);
    EXPECT_EQ(lora.max_rank(), j["rank"].get<int64_t>());
    const double ratio = j["alpha_over_rank"].get<double>();
    // The raw pairs, through the safetensors reader and torch.
    auto st = qwen::io::SafetensorsFile::open(samples(it.key()));
    for (const auto& m : lora.modules) {
      const auto delta =
          (m.up.to(torch::kFloat64).matmul(m.down.to(torch::kFloat64))) * m.scaling(1.0);
      torch::Tensor raw_up, raw_down;
      for (const auto& t : st->tensors()) {
        std::string n = t.name;
        std::string flat = m.module;
        std::replace(flat.begin(), flat.end(), '.', '_');
        const bool mine = n.find(m.module + ".") != std::string::npos ||
                          n.rfind("lora_unet_" + flat + ".", 0) == 0;
        if (!mine) continue;
        auto tensor = qwen::models::to_tensor(qwen::io::TensorRef{st, &t}, torch::kFloat64);
        if (n.find("lora_B") != std::string::npos || n.find("lora_up") != std::string::npos)
          raw_up = tensor;
        else if (n.find("lora_A") != std::string::npos || n.find("lora_down") != std::string::npos)
          raw_down = tensor;
      }
      ASSERT_TRUE(raw_up.defined() && raw_down.defined()) << m.module;
      EXPECT_TRUE(qwen::test::AllClose(delta, raw_up.matmul(raw_down) * ratio, 1e-6, 1e-6))
          << m.module;
    }
  }
}

// lora_down / lora_up without ".weight", a bare file without alpha (factor 1), fp32.
TEST(Lora, ReadsKeysWithoutWeightSuffix) {
  qwen::test::TempDir d;
  auto a = torch::randn({2, 64}), b = torch::randn({64, 2});
  auto path =
      write(d, "bare.safetensors",
            {f32("transformer_blocks.0.attn.to_q.lora_down", a),
             f32("transformer_blocks.0.attn.to_q.lora_up", b),
             f32("lora_unet_transformer_blocks_1_img_mod_1.lora_down", torch::randn({2, 64})),
             f32("lora_unet_transformer_blocks_1_img_mod_1.lora_up", torch::randn({384, 2}))});
  // Mixed prefixes are one file: kohya (lora_unet_ present), names resolved against the model.
  auto lora = qwen::models::read_lora(path, names());
  ASSERT_EQ(lora.modules.size(), 2u);
  EXPECT_EQ(lora.modules[0].module, "transformer_blocks.0.attn.to_q");
  EXPECT_EQ(lora.modules[1].module, "transformer_blocks.1.img_mod.1");
  EXPECT_EQ(lora.modules[0].scaling(1.0), 1.0);
  EXPECT_TRUE(torch::equal(lora.modules[0].down, a));
}

// kohya names are resolved against the model's own Linear names, top-level ones included.
TEST(Lora, KohyaNamesResolveAgainstTheModel) {
  auto lora = qwen::models::read_lora(samples("kohya_musubi.safetensors"), names());
  std::set<std::string> got;
  for (const auto& m : lora.modules) got.insert(m.module);
  for (const char* m :
       {"norm_out.linear", "time_text_embed.timestep_embedder.linear_1",
        "transformer_blocks.0.attn.to_out.0", "transformer_blocks.1.txt_mlp.net.0.proj"})
    EXPECT_TRUE(got.count(m)) << m;
}

TEST(Lora, ModulesTheModelLacksAreListed) {
  auto some = names();
  some.erase(
      std::remove_if(some.begin(), some.end(),
                     [](const std::string& n) { return n.find("img_mod") != std::string::npos; }),
      some.end());
  auto msg = error_of([&] { qwen::models::read_lora(samples("lightx2v.safetensors"), some); });
  EXPECT_NE(msg.find("lightx2v.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("transformer_blocks.0.img_mod.1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("transformer_blocks.1.img_mod.1"), std::string::npos) << msg;
  // Shapes of another model.
  qwen::test::TempDir d;
  auto path = write(d, "wide.safetensors",
                    {f32("transformer.img_in.lora_A.weight", torch::randn({2, 128})),
                     f32("transformer.img_in.lora_B.weight", torch::randn({64, 2}))});
  msg = error_of(
      [&] { qwen::models::read_lora(path, names(), qwen::models::linear_module_shapes(*tiny())); });
  EXPECT_NE(msg.find("another model"), std::string::npos) << msg;
}

TEST(Lora, LokrLohaDoraAreNotSupported) {
  qwen::test::TempDir d;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"lokr.safetensors", "lora_unet_img_in.lokr_w1"},
      {"loha.safetensors", "lora_unet_img_in.hada_w1_a"},
      {"dora.safetensors", "transformer.img_in.lora_magnitude_vector"}};
  for (const auto& [file, key] : cases) {
    auto path = write(d, file, {f32(key, torch::randn({4, 4}))});
    auto msg = error_of([&] { qwen::models::read_lora(path, names()); });
    EXPECT_NE(msg.find(file), std::string::npos) << msg;
    EXPECT_NE(msg.find("not supported"), std::string::npos) << msg;
  }
  auto path = write(d, "half.safetensors",
                    {f32("transformer.img_in.lora_A.weight", torch::randn({2, 64}))});
  EXPECT_NE(error_of([&] { qwen::models::read_lora(path, names()); }).find("incomplete"),
            std::string::npos);
  auto other = write(d, "other.safetensors", {f32("img_in.weight", torch::randn({2, 64}))});
  EXPECT_NE(error_of([&] { qwen::models::read_lora(other, names()); }).find("img_in.weight"),
            std::string::npos);
}

// PEFT metadata: rank_pattern / alpha_pattern / use_rslora per module.
TEST(Lora, AdapterMetadataPatterns) {
  qwen::test::TempDir d;
  nlohmann::json meta = {{"transformer.r", 2},
                         {"transformer.lora_alpha", 4},
                         {"transformer.use_rslora", false},
                         {"transformer.rank_pattern", {{"img_in", 3}}},
                         {"transformer.alpha_pattern", {{"to_q", 6}}}};
  auto path = write(
      d, "peft.safetensors",
      {f32("transformer.img_in.lora_A.weight", torch::randn({3, 64})),
       f32("transformer.img_in.lora_B.weight", torch::randn({64, 3})),
       f32("transformer.transformer_blocks.0.attn.to_q.lora_A.weight", torch::randn({2, 64})),
       f32("transformer.transformer_blocks.0.attn.to_q.lora_B.weight", torch::randn({64, 2}))},
      {{"format", "pt"}, {"lora_adapter_metadata", meta.dump()}});
  auto lora = qwen::models::read_lora(path, names());
  ASSERT_EQ(lora.modules.size(), 2u);
  EXPECT_DOUBLE_EQ(lora.modules[0].scaling(1.0), 4.0 / 3.0);  // img_in: r 3, alpha 4
  EXPECT_DOUBLE_EQ(lora.modules[1].scaling(0.5), 0.5 * 6.0 / 2.0);
  meta["transformer.use_rslora"] = true;
  auto path2 = write(d, "rs.safetensors",
                     {f32("transformer.img_in.lora_A.weight", torch::randn({3, 64})),
                      f32("transformer.img_in.lora_B.weight", torch::randn({64, 3}))},
                     {{"lora_adapter_metadata", meta.dump()}});
  EXPECT_DOUBLE_EQ(qwen::models::read_lora(path2, names()).modules[0].scaling(1.0),
                   4.0 / std::sqrt(3.0));
}

// Side branch and merged copy give the same model (to float32 rounding); clearing gives back the
// loaded model bit for bit; stacked strengths (negative included) add.
TEST(Lora, ApplyStackAndRestoreExactly) {
  const auto base = run_tiny();
  auto a = std::make_shared<const qwen::models::LoraFile>(qwen::models::read_lora(
      samples("kohya_musubi.safetensors"), names(), qwen::models::linear_module_shapes(*tiny())));
  auto b = std::make_shared<const qwen::models::LoraFile>(
      qwen::models::read_lora(samples("lightx2v.safetensors"), names()));
  const int64_t n = qwen::models::apply_loras(*tiny(), {{a, 0.8}, {b, -0.5}});
  EXPECT_GT(n, 20);
  const auto side = run_tiny();
  EXPECT_FALSE(torch::allclose(side, base, 1e-3, 1e-3));
  qwen::models::apply_loras(*tiny(), {{a, 0.8}, {b, -0.5}}, /*merge=*/true);
  const auto merged = run_tiny();
  EXPECT_TRUE(qwen::test::AllClose(merged, side, 1e-4, 1e-4));
  // Strength 0 on both: the branch adds exactly 0.
  qwen::models::apply_loras(*tiny(), {{a, 0.0}, {b, 0.0}});
  EXPECT_TRUE(torch::equal(run_tiny(), base));
  // A manual delta on one layer: y = W x + b + s1 f1 B1 A1 x + s2 f2 B2 A2 x.
  auto& q =
      *tiny()->transformer_blocks[0]->as<qwen::models::dit::TransformerBlockImpl>()->attn->to_q;
  qwen::models::apply_loras(*tiny(), {{a, 0.8}, {b, -0.5}});
  ASSERT_EQ(q.lora().size(), 2u);
  torch::manual_seed(1);
  auto x = torch::randn({3, q.weight.size(1)});
  const qwen::models::LoraModule* ma = nullptr;
  const qwen::models::LoraModule* mb = nullptr;
  for (const auto& m : a->modules)
    if (m.module == "transformer_blocks.0.attn.to_q") ma = &m;
  for (const auto& m : b->modules)
    if (m.module == "transformer_blocks.0.attn.to_q") mb = &m;
  ASSERT_TRUE(ma && mb);
  auto expect =
      at::linear(x, q.weight, q.bias) +
      at::linear(at::linear(x, ma->down.to(torch::kFloat32)), ma->up.to(torch::kFloat32)) *
          ma->scaling(0.8) +
      at::linear(at::linear(x, mb->down.to(torch::kFloat32)), mb->up.to(torch::kFloat32)) *
          mb->scaling(-0.5);
  EXPECT_TRUE(torch::equal(q.forward(x), expect));
  qwen::models::clear_loras(*tiny());
  EXPECT_TRUE(torch::equal(run_tiny(), base));
}

// A quantised (fp8) base keeps its storage untouched: the LoRA is a side branch on the
// dequantised product (or a merged copy beside it), never added into the fp8 bytes.
TEST(Lora, QuantisedBaseUsesTheSideBranch) {
  qwen::models::Linear l(8, 6);
  torch::manual_seed(2);
  auto w8 = (torch::randn({6, 8}) * 0.5).to(torch::kFloat8_e4m3fn);
  l->set_quantized(qwen::models::QuantizedWeight::fp8(w8, torch::tensor({0.5f})));
  l->bias.set_data(torch::randn({6}));
  const auto before = l->quantized()->storage().clone();
  auto x = torch::randn({2, 8});
  const auto y0 = l->forward(x);
  auto down = torch::randn({2, 8}), up = torch::randn({6, 2});
  l->set_lora({{down, up, -0.3}}, false);
  auto expect = y0 + at::linear(at::linear(x, down), up) * -0.3;
  EXPECT_TRUE(torch::equal(l->forward(x), expect));
  l->set_lora({{down, up, -0.3}}, true);
  EXPECT_TRUE(qwen::test::AllClose(l->forward(x), expect, 1e-5, 1e-5));
  EXPECT_TRUE(
      torch::equal(l->quantized()->storage().view(torch::kUInt8), before.view(torch::kUInt8)));
  l->clear_lora();
  EXPECT_TRUE(torch::equal(l->forward(x), y0));
}

TEST(Lora, StrengthArgument) {
  using qwen::models::parse_lora_argument;
  EXPECT_EQ(parse_lora_argument("a.safetensors"),
            std::make_pair(std::string("a.safetensors"), 1.0));
  EXPECT_EQ(parse_lora_argument("/x/a.safetensors:0.8"),
            std::make_pair(std::string("/x/a.safetensors"), 0.8));
  EXPECT_EQ(parse_lora_argument("a.safetensors:-0.3"),
            std::make_pair(std::string("a.safetensors"), -0.3));
  EXPECT_EQ(parse_lora_argument("C:/a:b.safetensors"),
            std::make_pair(std::string("C:/a:b.safetensors"), 1.0));
}

TEST(Lora, LightningIsRecognised) {
  qwen::test::TempDir d;
  auto ts = std::vector<qwen::test::StTensor>{f32("img_in.lora_down.weight", torch::randn({2, 64})),
                                              f32("img_in.lora_up.weight", torch::randn({64, 2}))};
  auto p4 = write(d, "Qwen-Image-Lightning-4steps-V1.0-bf16.safetensors", ts);
  auto info = qwen::models::lightning_info(p4);
  EXPECT_TRUE(info.lightning);
  EXPECT_EQ(info.steps, 4);
  auto pm = write(d, "fast.safetensors", ts, {{"modelspec.title", "Qwen Image Lightning 8-step"}});
  info = qwen::models::lightning_info(pm);
  EXPECT_TRUE(info.lightning);
  EXPECT_EQ(info.steps, 8);
  EXPECT_FALSE(qwen::models::lightning_info(samples("kohya_musubi.safetensors")).lightning);
}

// LoRAs on the timestep-only layers (timestep embedder, img_mod / txt_mod, norm_out.linear) flow
// through models::TimestepModulation: the modulation computed once and shared by two passes (CFG)
// equals computing it per pass, and it carries the LoRA.
TEST(Lora, ModulationLayersGoThroughTheSharedModulation) {
  qwen::test::TempDir d;
  std::vector<qwen::test::StTensor> ts;
  torch::manual_seed(4);
  for (const auto& [name, shape] : qwen::models::linear_module_shapes(*tiny())) {
    if (name.find("_mod.") == std::string::npos &&
        name.find("timestep_embedder") == std::string::npos && name != "norm_out.linear")
      continue;
    ts.push_back(f32(name + ".lora_down.weight", torch::randn({2, shape.second}) * 0.3));
    ts.push_back(f32(name + ".lora_up.weight", torch::randn({shape.first, 2}) * 0.3));
  }
  ASSERT_EQ(ts.size(), 2u * (2 * 2 + 3));  // 2 blocks x (img_mod, txt_mod) + linear_1/2 + norm_out
  auto file = std::make_shared<const qwen::models::LoraFile>(
      qwen::models::read_lora(write(d, "mod.safetensors", ts), names()));
  const auto base = run_tiny();
  qwen::models::apply_loras(*tiny(), {{file, 1.0}});
  torch::manual_seed(3);
  auto x = torch::randn({1, 16, 64});
  auto ctx = torch::randn({1, 5, 32});
  auto t = torch::tensor({0.7f});
  qwen::models::TimestepModulation mod;
  const auto first = tiny()->forward(x, ctx, {}, t, {{1, 4, 4}}, {}, &mod);
  const int64_t computed = tiny()->modulation_computations();
  const auto second = tiny()->forward(x, ctx, {}, t, {{1, 4, 4}}, {}, &mod);
  EXPECT_EQ(tiny()->modulation_computations(), computed);  // shared, not recomputed
  const auto fresh = run_tiny();
  EXPECT_TRUE(torch::equal(first, second));
  EXPECT_TRUE(torch::equal(first, fresh));
  EXPECT_FALSE(torch::allclose(first, base, 1e-3, 1e-3));
  qwen::models::clear_loras(*tiny());
  EXPECT_TRUE(torch::equal(run_tiny(), base));
}
