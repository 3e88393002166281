// The Qwen-Image-2.1 engine on a fresh random tiny 2.1 model (from the live reference's generator,
// gen_qwen21_pipeline.py --parts model):
// - LoRAs (issue #14 "The same mechanism must serve Qwen-Image-2.1", models/lora.h): a random
//   diffusers/PEFT-style LoRA changes the image, a job without LoRAs after it is bit-identical to
//   the first no-LoRA job (the loaded weights never change), a streamed transformer gives the
//   resident LoRA image, and modules the model lacks are listed;
// - component files (--transformer / --vae with the folder) give the folder's image;
// - steps 0 (no --steps) runs the reference's 40 steps.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "models/lora.h"
#include "pipelines/engine.h"
#include "pipelines/engine_qwen21.h"
#include "reference_case.h"

namespace {

std::unique_ptr<qwen::Engine> open_engine(const std::string& dir, const std::string& memory = "") {
  qwen::EngineOptions o;
  o.model_dir = dir;
  o.device = "cpu";
  o.threads = 1;
  o.memory = memory;
  o.log = [](const std::string&) {};
  return qwen::Engine::open(o);
}

qwen::RunParams job() {
  qwen::RunParams p;
  p.prompts = {"a paper boat on a pond"};
  p.width = p.height = 64;
  p.steps = 2;
  p.seed = 3;
  return p;
}

std::vector<uint8_t> pixels(qwen::Engine& e, const qwen::RunParams& p) {
  auto images = e.run(p);
  EXPECT_EQ(images.size(), 1u);
  return images.at(0).pixels;
}

// A safetensors file of float32 tensors (name -> tensor) and string metadata.
void write_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& ts,
                       const std::map<std::string, std::string>& metadata = {}) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string data;
  for (const auto& [name, t] : ts) {
    const auto c = t.to(torch::kFloat32).contiguous();
    const size_t begin = data.size();
    data.append(static_cast<const char*>(c.data_ptr()), c.numel() * sizeof(float));
    header[name] = {
        {"dtype", "F32"}, {"shape", c.sizes().vec()}, {"data_offsets", {begin, data.size()}}};
  }
  std::string h = header.dump();
  while (h.size() % 8) h += ' ';
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = h.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << h << data;
}

// A random PEFT-style LoRA (transformer.<module>.lora_A.weight / lora_B.weight, rank 4, no alpha:
// scaling 1) on `modules` of the engine's transformer.
std::string random_lora(qwen::pipelines::Qwen21Engine& e, const std::vector<std::string>& modules,
                        const std::string& name, int64_t seed) {
  const auto shapes = qwen::models::linear_module_shapes(*e.transformer());
  torch::manual_seed(seed);
  std::map<std::string, torch::Tensor> ts;
  for (const auto& m : modules) {
    const auto it = shapes.find(m);
    const auto [out, in] = it != shapes.end() ? it->second : std::pair<int64_t, int64_t>{8, 8};
    ts["transformer." + m + ".lora_A.weight"] = torch::randn({4, in}) * 0.5;
    ts["transformer." + m + ".lora_B.weight"] = torch::randn({out, 4}) * 0.5;
  }
  const std::string path = testing::TempDir() + "/" + name + ".safetensors";
  write_safetensors(path, ts);
  return path;
}

}  // namespace

TEST(EngineLora21, LoraChangesTheImageAndNoLoraJobAfterIsBitIdentical) {
  QWEN_REFERENCE_CASE(ref, "model", "", "gen_qwen21_pipeline.py");
  auto engine = open_engine(ref.model_dir());
  auto& qe = dynamic_cast<qwen::pipelines::Qwen21Engine&>(*engine);
  // Block linears, the shared modulation and the top-level ones.
  const std::vector<std::string> modules = {"transformer_blocks.0.attn.to_q",
                                            "transformer_blocks.0.attn.to_v",
                                            "transformer_blocks.0.attn.to_out.0",
                                            "transformer_blocks.0.img_mlp.out",
                                            "img_in",
                                            "modulation.1",
                                            "proj_out"};
  for (const auto& m : modules)
    ASSERT_TRUE(qwen::models::linear_module_shapes(*qe.transformer()).count(m)) << m;
  const std::string lora = random_lora(qe, modules, "q21_lora", 7);
  auto& to_q = *qe.transformer()
                    ->transformer_blocks[0]
                    ->as<qwen::models::dit21::TransformerBlockImpl>()
                    ->attn->to_q;
  const auto weight = to_q.weight.clone();

  const auto base = pixels(*engine, job());
  auto p = job();
  p.loras = {{lora, 1.0}};
  const auto with = pixels(*engine, p);
  EXPECT_NE(with, base);
  EXPECT_EQ(qe.applied_loras().size(), 1u);
  EXPECT_FALSE(to_q.lora().empty());
  // A negative strength differs again; then no LoRA: the loaded model exactly.
  p.loras = {{lora, -0.7}};
  EXPECT_NE(pixels(*engine, p), with);
  EXPECT_EQ(pixels(*engine, job()), base);
  EXPECT_TRUE(qe.applied_loras().empty());
  EXPECT_TRUE(to_q.lora().empty());
  EXPECT_TRUE(torch::equal(to_q.weight, weight));
  // The same LoRA again gives the same image (read once, applied again).
  p.loras = {{lora, 1.0}};
  EXPECT_EQ(pixels(*engine, p), with);

  // Block streaming (memory mode stream; CPU: every block streamed) with the LoRA as side branches:
  // the resident LoRA image bit for bit.
  auto streamed = open_engine(ref.model_dir(), "stream");
  EXPECT_EQ(pixels(*streamed, p), with);
  EXPECT_EQ(pixels(*streamed, job()), base);

  // A LoRA for modules the model does not have names them.
  const std::string bad = random_lora(qe, {"transformer_blocks.0.attn.add_q_proj"}, "q21_bad", 1);
  p.loras = {{bad, 1.0}};
  try {
    engine->run(p);
    FAIL() << "a LoRA for missing modules was accepted";
  } catch (const qwen::EngineError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("add_q_proj"), std::string::npos) << m;
    EXPECT_NE(m.find(bad), std::string::npos) << m;
  }
  // The engine still runs the base model after the failed set.
  EXPECT_EQ(pixels(*engine, job()), base);
}

TEST(EngineQwen21, ComponentFilesReplaceTheFoldersWeights) {
  QWEN_REFERENCE_CASE(ref, "model", "", "gen_qwen21_pipeline.py");
  namespace fs = std::filesystem;
  const std::string dir = ref.model_dir();
  const auto base = pixels(*open_engine(dir), job());
  // Single files outside the folder (what ComfyUI users download), each replacing its component.
  const fs::path files = fs::path(ref.dir()) / "files";
  fs::create_directories(files);
  fs::copy_file(fs::path(dir) / "transformer/diffusion_pytorch_model.safetensors",
                files / "q21_transformer.safetensors");
  fs::copy_file(fs::path(dir) / "vae/diffusion_pytorch_model.safetensors",
                files / "q21_vae.safetensors");
  qwen::EngineOptions o;
  o.model_dir = dir;
  o.device = "cpu";
  o.threads = 1;
  o.log = [](const std::string&) {};
  o.transformer_file = (files / "q21_transformer.safetensors").string();
  o.vae_file = (files / "q21_vae.safetensors").string();
  // (Not the text encoder: a single Qwen3-VL file with this tiny model's 16-wide heads cannot tell
  // its M-RoPE sections, and io refuses it by name; the released 128-wide one can.)
  auto engine = qwen::Engine::open(o);
  EXPECT_EQ(engine->info().family, "qwen-image-2.1");
  EXPECT_EQ(pixels(*engine, job()), base);
  // A missing file is named.
  o.transformer_file = (files / "nope.safetensors").string();
  try {
    qwen::Engine::open(o);
    FAIL() << "a missing transformer file was accepted";
  } catch (const qwen::EngineError& e) {
    EXPECT_NE(std::string(e.what()).find("nope.safetensors"), std::string::npos) << e.what();
  }
}

TEST(EngineQwen21, StepsZeroRunsTheReferencesForty) {
  QWEN_REFERENCE_CASE(ref, "model", "", "gen_qwen21_pipeline.py");
  auto engine = open_engine(ref.model_dir());
  auto p = job();
  p.width = p.height = 32;
  p.steps = 0;
  int total = 0, calls = 0;
  engine->run(p, [&](const qwen::ProgressInfo& info) {
    total = info.total;
    ++calls;
    return true;
  });
  EXPECT_EQ(total, 40);
  EXPECT_EQ(calls, 40);
}

// Previews (EngineOptions.preview, the daemon's live preview): on the steps preview_due() picks, an
// RGB image on the 16x latent grid of the x0 estimate; the result is the one without previews.
TEST(EngineQwen21, PreviewsOnTheDueStepsLeaveTheImageAsItIs) {
  QWEN_REFERENCE_CASE(ref, "model", "", "gen_qwen21_pipeline.py");
  auto p = job();
  p.width = 64;
  p.height = 96;
  p.steps = 3;
  const auto plain = pixels(*open_engine(ref.model_dir()), p);
  qwen::EngineOptions o;
  o.model_dir = ref.model_dir();
  o.device = "cpu";
  o.threads = 1;
  o.preview = true;
  o.preview_every = 2;
  o.log = [](const std::string&) {};
  auto engine = qwen::Engine::open(o);
  std::vector<int> with_preview;
  std::vector<qwen::ImageU8> previews;
  const auto images = engine->run(p, [&](const qwen::ProgressInfo& info) {
    if (!info.preview.pixels.empty()) {
      with_preview.push_back(info.step);
      previews.push_back(info.preview);
    }
    return true;
  });
  ASSERT_EQ(images.size(), 1u);
  EXPECT_EQ(images[0].pixels, plain);
  EXPECT_EQ(with_preview, (std::vector<int>{1, 3}));  // step 1, every 2nd after it, the last
  for (const auto& im : previews) {
    EXPECT_EQ(im.channels, 3);
    EXPECT_EQ(im.width, 64 / 16);
    EXPECT_EQ(im.height, 96 / 16);
  }
}
