// `qwen-image generate` / `edit` with a Qwen-Image-2.1 model folder (issue #15): a fresh random
// tiny QwenImage21Pipeline folder and the diffusers results from gen_qwen21_pipeline.py; the CLI's
// PNGs are RGBA and within 1 level of the reference's, with the KV cache and with --no-kv-cache;
// more than 10 references and a 2.1-incapable pipeline are refused by name.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "cli_harness.h"
#include "harness.h"  // tests/daemon: a qwen-imaged for the --daemon run
#include "image/png.h"
#include "reference_case.h"

namespace fs = std::filesystem;

namespace {

using qwen::test::cli::Result;
using qwen::test::cli::run;

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string tmp(const std::string& name) {
  return qwen::test::cli::out_path("qwen21_cli_out", name);
}

// The largest level difference of a PNG and the reference's [1, H, W, 4] levels; 256 on a shape
// mismatch.
int diff_to(const std::string& png, const torch::Tensor& expected) {
  const auto im = qwen::read_png(png);
  if (im.channels != 4 || expected.size(1) != im.height || expected.size(2) != im.width) return 256;
  auto got = torch::from_blob(const_cast<uint8_t*>(im.pixels.data()), {1, im.height, im.width, 4},
                              torch::kUInt8)
                 .to(torch::kFloat32);
  return static_cast<int>((got - expected).abs().max().item<float>());
}

TEST(CliQwen21, GenerateAndEditWriteTheReferencesRgbaPngs) {
  QWEN_REFERENCE_CASE(ref, "pipeline", "", "gen_qwen21_pipeline.py");
  const auto t = ref.tensors("qwen21_pipeline");
  const auto& cases = ref.json()["cases"];
  const std::string model = "--model " + ref.model_dir() + " --device cpu --threads 1 -q";
  for (bool kv : {true, false}) {
    const std::string suffix = kv ? "_kv" : "_nokv";
    const std::string flag = kv ? "" : " --no-kv-cache";
    {
      // Text to image at the reference's output size (width / height given: output_resolution
      // plays no part).
      const auto& c = cases["t2i"];
      const auto out = tmp("t2i" + suffix + ".png");
      fs::remove(out);
      Result r = run("generate " + model + flag + " --prompt " + quote(c["prompt"]) + " --width " +
                     std::to_string(c["size"][0].get<int>()) + " --height " +
                     std::to_string(c["size"][1].get<int>()) + " --steps " +
                     std::to_string(c["num_inference_steps"].get<int>()) + " --seed " +
                     std::to_string(c["seed"].get<int64_t>()) + " --output " + out);
      ASSERT_EQ(r.code, 0) << r.output;
      EXPECT_LE(diff_to(out, t.at("t2i" + suffix + "_image")), 1) << c.dump();
    }
    {
      // Edit with 2 references (the first RGBA), the size from the last one.
      const auto& c = cases["edit"];
      const auto out = tmp("edit" + suffix + ".png");
      fs::remove(out);
      Result r = run("edit " + model + flag + " --prompt " + quote(c["prompt"]) + " --image " +
                     ref.dir() + "/ref_0.png --image " + ref.dir() + "/ref_1.png" +
                     " --output-resolution " + std::to_string(c["output_resolution"].get<int>()) +
                     " --steps " + std::to_string(c["num_inference_steps"].get<int>()) +
                     " --seed " + std::to_string(c["seed"].get<int64_t>()) + " --output " + out);
      ASSERT_EQ(r.code, 0) << r.output;
      EXPECT_LE(diff_to(out, t.at("edit" + suffix + "_image")), 1) << c.dump();
    }
  }
  // 11 references.
  std::string eleven;
  for (int i = 0; i < 11; ++i) eleven += " --image " + ref.dir() + "/ref_1.png";
  Result r = run("edit " + model + " --prompt x --steps 1 --output-resolution 64" + eleven +
                 " --output " + tmp("eleven.png"));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("1 to 10"), std::string::npos) << r.output;
  // img2img is not a 2.1 pipeline.
  r = run("img2img " + model + " --prompt x --steps 1 --image " + ref.dir() +
          "/ref_1.png --output " + tmp("i2i.png"));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("Qwen-Image-2.1"), std::string::npos) << r.output;
  // Through qwen-imaged (protocol version 4 carries kv_cache and output_resolution): the same
  // RGBA PNG as in-process, with and without the cache.
  {
    qwen::test::Daemon d(QWEN_IMAGED, qwen::test::unique_instance("q21"),
                         {"--model", ref.model_dir(), "--device", "cpu", "--dtype", "float32",
                          "--threads", "1", "--lazy"});
    const auto& c = cases["t2i"];
    for (bool kv : {true, false}) {
      const std::string flag = kv ? "" : " --no-kv-cache";
      const auto out = tmp(std::string("t2i_daemon") + (kv ? "_kv" : "_nokv") + ".png");
      fs::remove(out);
      Result rd = run("generate --daemon --instance " + d.instance() + flag + " -q --prompt " +
                      quote(c["prompt"]) + " --width " + std::to_string(c["size"][0].get<int>()) +
                      " --height " + std::to_string(c["size"][1].get<int>()) + " --steps " +
                      std::to_string(c["num_inference_steps"].get<int>()) + " --seed " +
                      std::to_string(c["seed"].get<int64_t>()) + " --output " + out);
      ASSERT_EQ(rd.code, 0) << rd.output;
      const auto via = qwen::read_png(out);
      const auto local = qwen::read_png(tmp(std::string("t2i") + (kv ? "_kv" : "_nokv") + ".png"));
      EXPECT_EQ(via.channels, 4);
      EXPECT_EQ(via.width, local.width);
      EXPECT_EQ(via.height, local.height);
      EXPECT_EQ(via.pixels, local.pixels) << (kv ? "with" : "without") << " the KV cache";
    }
  }
}

}  // namespace
