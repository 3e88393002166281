// `--fp8-matmul` (issues #13/#15, models/fp8_matmul.h) through the CLI on the tiny model with the
// scaled-fp8 transformer sample (tests/fixtures/format-samples): "on" multiplies on the fp8 path
// (at::_scaled_mm's CPU kernel) and draws nearly the image of the dequantised path, "off" and
// "auto" (off on the CPU) draw exactly the dequantised image; bad values are refused by every
// command.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "cli_harness.h"
#include "common/fixtures.h"

namespace {

using qwen::test::cli::max_diff;
using qwen::test::cli::run;

std::string tmp(const std::string& name) {
  return qwen::test::cli::out_path("cli_fp8_matmul_out", name);
}

const char* kJob =
    " --threads 2 --prompt 'A red bicycle leaning against a blue wall, watercolor'"
    " --true-cfg-scale 1 --width 96 --height 64 --steps 3 --seed 7 --output ";

TEST(CliFp8Matmul, OnIsCloseToTheDequantisedImageOffAndAutoOnTheCpuAreIt) {
  const std::string model = "--model " + qwen::test::tiny_model_dir() + " --transformer " +
                            std::string(QWEN_FORMAT_SAMPLES) +
                            "/files/pub-tiny_fp8_e4m3fn_scaled.safetensors";
  std::string out[3];
  const char* modes[3] = {"on", "off", "auto"};
  for (int i = 0; i < 3; ++i) {
    out[i] = tmp(std::string(modes[i]) + ".png");
    std::filesystem::remove(out[i]);
    auto r = run("generate " + model + " --fp8-matmul " + modes[i] + kJob + out[i]);
    ASSERT_EQ(r.code, 0) << r.output;
    // The engine says what it does and why.
    const std::string line = i == 0   ? "fp8 matmul: on (asked for): "
                             : i == 1 ? "fp8 matmul: off (asked for): "
                                      : "fp8 matmul: off (auto: the device is cpu";
    EXPECT_NE(r.output.find(line), std::string::npos) << r.output;
  }
  const int d = max_diff(out[0], out[1]);
  std::printf("fp8 matmul on vs off: max difference %d levels\n", d);
  EXPECT_GT(d, 0);   // the fp8 product was really used
  EXPECT_LE(d, 24);  // e4m3 activation rounding: a slightly different picture, not another one
  EXPECT_EQ(max_diff(out[1], out[2]), 0);
}

TEST(CliFp8Matmul, BadValuesAreRefusedByEveryCommand) {
  for (const char* cmd : {"generate", "img2img", "inpaint", "edit", "decompose"}) {
    SCOPED_TRACE(cmd);
    auto r = run(std::string(cmd) + " --fp8-matmul fast");
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.output.find("--fp8-matmul must be auto, on or off, got 'fast'"), std::string::npos)
        << r.output;
  }
  auto r = run("generate --daemon --fp8-matmul on --prompt x --output x.png");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("fp8_matmul in daemon.conf"), std::string::npos) << r.output;
}

}  // namespace
