// `qwen-image generate` / `edit` with a Qwen-Image-2.1 model folder (issue #15): a fresh random
// tiny QwenImage21Pipeline folder and the diffusers results from gen_qwen21_pipeline.py; the CLI's
// PNGs are RGBA and within 1 level of the reference's, with the KV cache and with --no-kv-cache;
// more than 10 references and a 2.1-incapable pipeline are refused by name.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

#include "cli_harness.h"
#include "harness.h"  // tests/daemon: a qwen-imaged for the --daemon run
#include "image/png.h"
#include "qwen_image/client.h"
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

// Without --steps the job leaves its steps to the model (protocol version 5), in-process and
// through qwen-imaged alike: the reference's 40 steps, and a Turbo folder's sample_sigmas count
// (model_index.json); the daemon's progress reports that total and the PNG is the in-process
// one; --steps stays what it says.
TEST(CliQwen21, DaemonRunsTheModelsDefaultStepsWhenNoneAreGiven) {
  QWEN_REFERENCE_CASE(ref, "model", "", "gen_qwen21_pipeline.py");
  // A Turbo twin: the same components, three sample_sigmas.
  const fs::path turbo = fs::path(tmp("turbo_model"));
  fs::remove_all(turbo);
  fs::create_directories(turbo);
  for (const auto& e : fs::directory_iterator(ref.model_dir()))
    if (e.path().filename() != "model_index.json")
      fs::create_symlink(e.path(), turbo / e.path().filename());
  nlohmann::json index;
  std::ifstream(ref.model_dir() + "/model_index.json") >> index;
  index["sample_sigmas"] = {1.0, 0.95418, 0.704534};
  std::ofstream(turbo / "model_index.json") << index.dump();

  qwen::test::Daemon d(QWEN_IMAGED, qwen::test::unique_instance("q21-steps"),
                       {"--model", "base=" + ref.model_dir(), "--model", "turbo=" + turbo.string(),
                        "--device", "cpu", "--dtype", "float32", "--threads", "1", "--lazy"});
  const std::string job = " --threads 1 --prompt 'a paper boat' --width 32 --height 32 --seed 3";
  struct Case {
    std::string name, dir, steps_arg;
    int steps;
  };
  const Case cases[] = {{"base", ref.model_dir(), "", 40},
                        {"turbo", turbo.string(), "", 3},
                        {"base", ref.model_dir(), " --steps 2", 2}};
  for (const auto& c : cases) {
    const std::string total = "/" + std::to_string(c.steps) + "  ";  // "step k/N  0.1 s/step"
    const auto in = tmp("steps_" + c.name + std::to_string(c.steps) + "_in.png");
    const auto via = tmp("steps_" + c.name + std::to_string(c.steps) + "_via.png");
    Result r = run("generate --model " + c.dir + " --device cpu --dtype float32" + job +
                   c.steps_arg + " --output " + in);
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("step " + std::to_string(c.steps) + total), std::string::npos)
        << r.output;
    r = run("generate --daemon --instance " + d.instance() + " --model " + c.name + job +
            c.steps_arg + " --output " + via);
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find(total), std::string::npos) << c.name << ": " << r.output;
    const auto a = qwen::read_png(in), b = qwen::read_png(via);
    EXPECT_EQ(a.channels, 4);
    EXPECT_EQ(b.channels, 4);
    EXPECT_EQ(a.pixels, b.pixels) << c.name << c.steps_arg;
  }
  // Through the client library: steps kModelDefaultSteps, CFG kModelDefaultTrueCfgScale.
  qwen::ipc::Client client = qwen::ipc::Client::connect(d.instance());
  for (const auto& [model, steps] : {std::pair<std::string, int>{"base", 40}, {"turbo", 3}}) {
    qwen::ipc::JobRequest req;
    req.model = model;
    req.prompts = {"a paper boat"};
    req.width = req.height = 32;
    req.steps = qwen::ipc::kModelDefaultSteps;
    req.true_cfg_scale = qwen::ipc::kModelDefaultTrueCfgScale;
    int seen = 0;
    client.run(req, [&](const qwen::ipc::JobProgress& p) {
      if (p.phase == qwen::ipc::JobPhase::Denoising || p.phase == qwen::ipc::JobPhase::Decoding)
        seen = std::max(seen, p.total);
      return true;
    });
    EXPECT_EQ(seen, steps) << model;
  }
  fs::remove_all(turbo);
}

}  // namespace
