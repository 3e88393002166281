// The pipeline parts of gen_random.py (t2i, img2img, inpaint, edit, edit_plus, edit_inpaint):
// runs qwen::Engine on the parameters and input images of one part and compares its 8-bit image
// with round(reference image * 255) within kPngMaxLevels.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <iostream>
#include <string>

#include "image/png.h"
#include "pipelines/engine.h"
#include "reference_case.h"

namespace qwen::reftest {

// The RunParams of part `part` of `ref` (case.json "parts"/<part>, input PNGs from the case
// folder). Reference geometry: the resize-and-stretch path of diffusers.
inline RunParams pipeline_params(const ReferenceCase& ref, const std::string& part,
                                 PipelineKind kind) {
  const auto& p = ref.json()["parts"][part];
  RunParams rp;
  rp.pipeline = kind;
  rp.geometry = GeometryMode::Reference;
  rp.prompts = {p["prompt"].get<std::string>()};
  if (!p["negative_prompt"].is_null())
    rp.negative_prompts = {p["negative_prompt"].get<std::string>()};
  rp.true_cfg_scale = p["true_cfg_scale"].get<float>();
  // null: the pipeline's default size (edit: ~1024x1024 of the input's aspect ratio).
  if (!p["width"].is_null()) rp.width = p["width"].get<int>();
  if (!p["height"].is_null()) rp.height = p["height"].get<int>();
  rp.steps = p["steps"].get<int>();
  rp.seed = p["seed"].get<int64_t>();
  if (p.contains("strength")) rp.strength = p["strength"].get<float>();
  if (p.contains("images"))
    for (const auto& f : p["images"])
      rp.images.push_back(read_png(ref.dir() + "/" + f.get<std::string>()));
  if (p.contains("mask")) rp.mask = read_png(ref.dir() + "/" + p["mask"].get<std::string>());
  return rp;
}

// Runs part `part` (its job parameters) on an engine opened with `opt` (CPU, float32, one thread
// are set here) and compares its 8-bit image with round(OUT/<image>.safetensors "image" * 255)
// within kPngMaxLevels; `image` defaults to `part`. Returns the max level difference (-1 when the
// image could not be compared).
inline int expect_engine_matches(const ReferenceCase& ref, const std::string& part,
                                 PipelineKind kind, EngineOptions opt, std::string image = "") {
  if (image.empty()) image = part;
  const auto& p = ref.json()["parts"][part];
  const std::string where = "seed " + std::to_string(ref.seed()) + ", " + image + " job " +
                            p.dump() + ", config " + ref.json()["config"].dump();
  opt.device = "cpu";
  opt.dtype = "float32";
  opt.threads = 1;
  const auto t0 = std::chrono::steady_clock::now();
  auto engine = Engine::open(opt);
  const RunParams rp = pipeline_params(ref, part, kind);
  auto images = engine->run(rp);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "[reference] " << image << ": engine " << secs << " s, reference "
            << p.value("seconds", 0.0) << " s" << std::endl;
  EXPECT_EQ(images.size(), 1u) << where;
  if (images.size() != 1) return -1;
  const auto& img = images[0];
  auto expected = (ref.tensors(image).at("image") * 255).round().clamp(0, 255).to(torch::kInt32);
  EXPECT_EQ(img.height, expected.size(0)) << where;
  EXPECT_EQ(img.width, expected.size(1)) << where;
  EXPECT_EQ(img.channels, 3) << where;
  if (img.height != expected.size(0) || img.width != expected.size(1) || img.channels != 3)
    return -1;
  auto actual = torch::from_blob(const_cast<uint8_t*>(img.pixels.data()),
                                 {img.height, img.width, 3}, torch::kUInt8)
                    .to(torch::kInt32);
  auto diff = (actual - expected).abs();
  const int max_diff = diff.max().item<int>();
  const double frac = (diff > 0).to(torch::kDouble).mean().item<double>();
  std::cout << "[reference] " << image << ": inputs "
            << p.value("image_sizes", nlohmann::json()).dump() << ", output " << img.width << "x"
            << img.height << ", steps " << rp.steps
            << (p.contains("strength") ? ", strength " + p["strength"].dump() : "")
            << (rp.negative_prompts.empty() ? ", no CFG" : ", CFG " + p["true_cfg_scale"].dump())
            << ", zero_cond_t " << ref.json()["config"]["transformer"]["zero_cond_t"]
            << ", qk_gain " << ref.json()["config"]["qk_gain"] << ": max level difference "
            << max_diff << ", " << frac * 100 << " % of values differ" << std::endl;
  ::testing::Test::RecordProperty("max_level_diff_" + image, std::to_string(max_diff));
  EXPECT_LE(max_diff, kPngMaxLevels) << "max level difference " << max_diff << ", " << frac * 100
                                     << " % of values differ; " << where;
  return max_diff;
}

// Opens `model_dir` (EngineOptions::vision_processor `vision_processor`, "" = the default), runs
// part `part` and compares with the reference (expect_engine_matches).
inline void expect_pipeline_matches(const ReferenceCase& ref, const std::string& part,
                                    PipelineKind kind, const std::string& model_dir,
                                    const std::string& vision_processor = "") {
  EngineOptions opt;
  opt.model_dir = model_dir;
  opt.vision_processor = vision_processor;
  expect_engine_matches(ref, part, kind, opt);
}

}  // namespace qwen::reftest
