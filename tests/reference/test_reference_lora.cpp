// LoRAs and Lightning (issue #14) through qwen::Engine vs diffusers' load_lora_weights + peft on a
// fresh random tiny model and fresh random LoRA files of every key style each run (gen_lora.py):
// one LoRA per style, two stacked LoRAs (one negative), a Lightning LoRA with diffusers' Lightning
// scheduler (the engine picks CFG 1 and shift 3 by itself), and two LoRAs on an Edit-Plus job. One
// engine serves all text-to-image cases in turn, so the LoRA set changes between jobs without
// reloading the model. The 8-bit images must be within kPngMaxLevels of the reference.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "image/png.h"
#include "pipelines/engine.h"
#include "reference_case.h"

namespace {

using qwen::reftest::ReferenceCase;

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Runs gen_lora.py on the case folder; returns lora_case.json (null on failure, with `error` set).
nlohmann::json gen_lora(const ReferenceCase& ref, const std::string& cases, std::string* error) {
  std::string why;
  const std::string py = qwen::reftest::reference_python(&why);
  const std::string log = ref.dir() + "/gen_lora.log";
  std::string cmd = "'" + py + "' '" + std::string(QWEN_REFERENCE_DIR) + "/gen_lora.py' '" +
                    ref.dir() + "' --seed " + std::to_string(ref.seed()) + " --cases " + cases +
                    " --threads 1 >'" + log + "' 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    *error = "command: " + cmd + "\n" + slurp(log);
    return nullptr;
  }
  return nlohmann::json::parse(slurp(ref.dir() + "/lora_case.json"));
}

void expect_case_matches(qwen::Engine& engine, const ReferenceCase& ref, const std::string& name,
                         const nlohmann::json& p, qwen::PipelineKind kind) {
  const std::string where =
      "seed " + std::to_string(ref.seed()) + ", case " + name + " " + p.dump();
  qwen::RunParams rp;
  rp.pipeline = kind;
  rp.prompts = {p["prompt"].get<std::string>()};
  if (!p["negative_prompt"].is_null())
    rp.negative_prompts = {p["negative_prompt"].get<std::string>()};
  if (!p["true_cfg_scale"].is_null()) rp.true_cfg_scale = p["true_cfg_scale"].get<float>();
  rp.width = p["width"].get<int>();
  rp.height = p["height"].get<int>();
  rp.steps = p["steps"].get<int>();
  rp.seed = p["seed"].get<int64_t>();
  if (p.contains("images"))
    for (const auto& f : p["images"])
      rp.images.push_back(qwen::read_png(ref.dir() + "/" + f.get<std::string>()));
  for (const auto& l : p["loras"])
    rp.loras.push_back(
        {ref.dir() + "/" + l["file"].get<std::string>(), l["strength"].get<double>()});
  auto images = engine.run(rp);
  ASSERT_EQ(images.size(), 1u) << where;
  const auto& img = images[0];
  auto expected =
      (ref.tensors("lora_" + name).at("image") * 255).round().clamp(0, 255).to(torch::kInt32);
  ASSERT_EQ(img.height, expected.size(0)) << where;
  ASSERT_EQ(img.width, expected.size(1)) << where;
  auto actual = torch::from_blob(const_cast<uint8_t*>(img.pixels.data()),
                                 {img.height, img.width, 3}, torch::kUInt8)
                    .to(torch::kInt32);
  const int max_diff = (actual - expected).abs().max().item<int>();
  std::cout << "[reference] lora " << name << ": " << p["loras"].dump() << ", "
            << p["levels_vs_no_lora"]
            << " levels from the image without LoRA; max level difference " << max_diff
            << std::endl;
  EXPECT_LE(max_diff, qwen::reftest::kPngMaxLevels) << where;
}

qwen::EngineOptions cpu(const std::string& dir) {
  qwen::EngineOptions o;
  o.model_dir = dir;
  o.device = "cpu";
  o.dtype = "float32";
  o.threads = 1;
  return o;
}

}  // namespace

TEST(ReferenceDifferential, LorasOfEveryStyleStackedAndLightningMatchDiffusers) {
  QWEN_REFERENCE_CASE(ref, "", "--model-only");
  std::string error;
  const auto cases = gen_lora(ref, "styles,stacked,lightning", &error);
  ASSERT_FALSE(cases.is_null()) << error;
  auto engine = qwen::Engine::open(cpu(ref.model_dir()));
  for (const std::string name : {"diffusers_peft", "diffusers_peft_meta", "aitoolkit", "diffsynth",
                                 "kohya", "lightx2v", "stacked", "lightning"}) {
    ASSERT_TRUE(cases["cases"].contains(name)) << name;
    expect_case_matches(*engine, ref, name, cases["cases"][name], qwen::PipelineKind::Generate);
  }
}

TEST(ReferenceDifferential, LorasOnEditPlusMatchDiffusers) {
  QWEN_REFERENCE_CASE(ref, "", "--model-only");
  std::string error;
  const auto cases = gen_lora(ref, "edit_plus", &error);
  ASSERT_FALSE(cases.is_null()) << error;
  auto engine = qwen::Engine::open(cpu(ref.dir() + "/edit_model"));
  expect_case_matches(*engine, ref, "edit_plus", cases["cases"]["edit_plus"],
                      qwen::PipelineKind::EditPlus);
}
