// `qwen-image generate|img2img|inpaint|edit --lora FILE[:STRENGTH] --shift S --lightning` on the
// tiny models (issue #14), run as a program.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "cli_harness.h"
#include "common/fixtures.h"
#include "image/png.h"

namespace fs = std::filesystem;

namespace {

using qwen::test::cli::run;

std::string tmp(const std::string& name) { return qwen::test::cli::out_path("cli_lora_out", name); }

// Appended piecewise: GCC 12 gives a false -Warray-bounds for the chained operator+.
std::string lora(const std::string& f) {
  std::string s = QWEN_LORA_SAMPLES;
  s += '/';
  s += f;
  return s;
}

std::string t2i() {
  return "generate --model " + qwen::test::tiny_model_dir() +
         " --threads 2 --prompt 'a fox' --negative-prompt ' ' --width 32 --height 32 --seed 3";
}

std::vector<uint8_t> pixels(const std::string& path) { return qwen::read_png(path).pixels; }

}  // namespace

TEST(CliLora, LorasChangeTheImageAndStack) {
  auto r = run(t2i() + " --steps 2 --output " + tmp("base.png"));
  ASSERT_EQ(r.code, 0) << r.output;
  r = run(t2i() + " --steps 2 --lora " + lora("kohya_musubi.safetensors") + ":3 --output " +
          tmp("one.png"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("kohya/musubi"), std::string::npos) << r.output;
  EXPECT_NE(pixels(tmp("one.png")), pixels(tmp("base.png")));
  r = run(t2i() + " --steps 2 --lora " + lora("kohya_musubi.safetensors") + ":3 --lora " +
          lora("diffsynth.safetensors") + ":-2 --lora-mode merge --output " + tmp("two.png"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(pixels(tmp("two.png")), pixels(tmp("one.png")));
  // Strength 0: the image without LoRA.
  r = run(t2i() + " --steps 2 --lora " + lora("lightx2v.safetensors") + ":0 --output " +
          tmp("zero.png"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(pixels(tmp("zero.png")), pixels(tmp("base.png")));
}

TEST(CliLora, EveryImageCommandTakesLoras) {
  const std::string in = qwen::test::fixture_path("cases/pipeline_img2img/image_0.png");
  ASSERT_TRUE(fs::exists(in)) << in;
  auto r = run("img2img --model " + qwen::test::tiny_model_dir() + " --threads 2 --image " + in +
               " --prompt x --width 32 --height 32 --steps 2 --lora " +
               lora("aitoolkit.safetensors") + ":0.5 --output " + tmp("i2i.png"));
  EXPECT_EQ(r.code, 0) << r.output;
}

// Lightning: a LoRA named so sets 4 steps (from its name), CFG 1 and shift 3 unless given;
// --lightning alone gives 8 steps.
TEST(CliLora, LightningDefaults) {
  const std::string named = tmp("Qwen-Image-Lightning-4steps-V1.0.safetensors");
  fs::copy_file(lora("lightx2v.safetensors"), named, fs::copy_options::overwrite_existing);
  auto r = run(t2i() + " --lora " + named + " --output " + tmp("l4.png"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("step 4/4"), std::string::npos) << r.output;
  // The same job spelled out.
  r = run(t2i() + " --lora " + lora("lightx2v.safetensors") +
          " --steps 4 --true-cfg-scale 1 --shift 3 --output " + tmp("l4x.png"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(pixels(tmp("l4.png")), pixels(tmp("l4x.png")));
  r = run(t2i() + " --lightning --output " + tmp("l8.png"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("step 8/8"), std::string::npos) << r.output;
  r = run(t2i() + " --lightning --steps 3 --output " + tmp("l3.png"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("step 3/3"), std::string::npos) << r.output;
}

TEST(CliLora, BadLoraArgumentsFailWithAMessage) {
  auto r = run(t2i() + " --steps 1 --lora /nonexistent/l.safetensors --output " + tmp("x.png"));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("/nonexistent/l.safetensors"), std::string::npos) << r.output;
  r = run(t2i() + " --steps 1 --lora-mode fold --output " + tmp("x.png"));
  EXPECT_EQ(r.code, 2) << r.output;
  r = run(t2i() + " --steps 1 --shift -2 --output " + tmp("x.png"));
  EXPECT_EQ(r.code, 2) << r.output;
  // With --daemon the LoRA mode is the daemon's (lora_mode in daemon.conf).
  r = run("generate --daemon --prompt x --lora-mode merge --output " + tmp("x.png"));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("--lora-mode is the daemon's setting"), std::string::npos) << r.output;
}
