// `qwen-image decompose` (Qwen-Image-Layered, issue #16) on the tiny Layered fixture: RGBA layers
// written as OUT-0.png ... OUT-(N-1).png, and the usage / model errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "cli_harness.h"
#include "common/fixtures.h"
#include "image/png.h"

namespace fs = std::filesystem;

namespace {

using qwen::test::cli::Result;
using qwen::test::cli::run;

std::string tmp(const std::string& name) {
  return qwen::test::cli::out_path("decompose_cli_out", name);
}

std::string layered_model() {
  return "--model " + qwen::test::fixture_path("models/qwen-image-layered-tiny") + " --threads 2";
}

// A small partly transparent RGBA picture.
std::string input_png() {
  const auto path = tmp("in.png");
  qwen::ImageU8 img(40, 24, 4);
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) {
      img.at(x, y, 0) = static_cast<uint8_t>(x * 6);
      img.at(x, y, 1) = static_cast<uint8_t>(y * 10);
      img.at(x, y, 2) = 200;
      img.at(x, y, 3) = x < 20 ? 255 : static_cast<uint8_t>(y * 10);
    }
  qwen::write_png(path, img);
  return path;
}

TEST(CliDecompose, WritesNumberedRgbaLayers) {
  const auto out = tmp("layers.png");
  for (int i = 0; i < 3; ++i) fs::remove(tmp("layers-" + std::to_string(i) + ".png"));
  fs::remove(out);
  Result r = run("decompose " + layered_model() + " --image " + input_png() +
                 " --layers 3 --prompt 'a blue gradient card' --negative-prompt ' '"
                 " --true-cfg-scale 2 --cfg-normalize --steps 2 --seed 7 --output " +
                 out);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("step 2/2"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out)) << "a decomposition is always numbered";
  for (int i = 0; i < 3; ++i) {
    const auto path = tmp("layers-" + std::to_string(i) + ".png");
    ASSERT_TRUE(fs::exists(path)) << r.output;
    EXPECT_NE(r.output.find(path), std::string::npos) << r.output;
    const auto img = qwen::read_png(path);
    EXPECT_EQ(img.channels, 4);
    // calculate_dimensions(640^2, 40 / 24): 832 x 480.
    EXPECT_EQ(img.width, 832);
    EXPECT_EQ(img.height, 480);
  }
  EXPECT_FALSE(fs::exists(tmp("layers-3.png")));
}

TEST(CliDecompose, StreamedTransformerGivesTheSameLayers) {
  // Memory modes precompute the timestep modulation, which carries Layered's additional_t_cond:
  // every mode gives the resident layers bit for bit.
  const std::string args = "decompose " + layered_model() + " --image " + input_png() +
                           " --layers 2 --prompt 'a card' --steps 2 --seed 3 --quiet --output ";
  Result resident = run(args + tmp("resident.png"));
  ASSERT_EQ(resident.code, 0) << resident.output;
  Result stream = run(args + tmp("stream.png") + " --memory stream");
  ASSERT_EQ(stream.code, 0) << stream.output;
  for (int i = 0; i < 2; ++i) {
    const auto a = qwen::read_png(tmp("resident-" + std::to_string(i) + ".png"));
    const auto b = qwen::read_png(tmp("stream-" + std::to_string(i) + ".png"));
    EXPECT_EQ(a.pixels, b.pixels) << "layer " << i;
  }
  // `qwen-image plan` plans a Layered model for its decompose job.
  Result plan = run("plan " + layered_model().substr(0, layered_model().find(" --threads")) +
                    " --vram 4G --layers 10");
  EXPECT_EQ(plan.code, 0) << plan.output;
  EXPECT_NE(plan.output.find("predicted peak"), std::string::npos) << plan.output;
  Result bad = run("plan " + layered_model().substr(0, layered_model().find(" --threads")) +
                   " --vram 4G --layers 11");
  EXPECT_EQ(bad.code, 2) << bad.output;
}

TEST(CliDecompose, BadInputsFailWithAMessage) {
  const std::string base = "decompose " + layered_model() + " --image " + input_png() +
                           " --output " + tmp("bad.png") + " --steps 1";
  auto expect_usage = [&](const std::string& args, const std::string& message) {
    Result r = run(base + " " + args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << args << "\n" << r.output;
  };
  expect_usage("--prompt x --layers 1", "--layers must be between 2 and 10 (got 1)");
  expect_usage("--prompt x --layers 11", "--layers must be between 2 and 10 (got 11)");
  expect_usage("--prompt x --resolution 512", "--resolution must be 640 or 1024 (got 512)");
  expect_usage("--prompt ' '", "decompose needs a --prompt that describes the whole picture");
  expect_usage("--prompt x --width 64", "decompose takes no --width/--height");
  expect_usage("--prompt x --strength 0.5", "unknown option '--strength'");
  expect_usage("--prompt x --layers two", "--layers expects an integer");
  Result no_image = run("decompose " + layered_model() + " --prompt x --output " + tmp("b.png"));
  EXPECT_EQ(no_image.code, 2);
  EXPECT_NE(no_image.output.find("--image is required"), std::string::npos) << no_image.output;

  // A model that is not Qwen-Image-Layered: a runtime error naming the model and what to use.
  Result wrong = run("decompose --model " + qwen::test::tiny_model_dir() + " --image " +
                     input_png() + " --prompt x --steps 1 --output " + tmp("w.png"));
  EXPECT_EQ(wrong.code, 1) << wrong.output;
  EXPECT_NE(wrong.output.find("cannot decompose an image into layers"), std::string::npos)
      << wrong.output;
  // And the Layered model refuses the other commands.
  Result gen = run("generate " + layered_model() +
                   " --prompt x --steps 1 --width 32 --height 32 --output " + tmp("g.png"));
  EXPECT_EQ(gen.code, 1) << gen.output;
  EXPECT_NE(gen.output.find("it only decomposes"), std::string::npos) << gen.output;
  // --help describes the layer order.
  Result help = run("decompose --help");
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.output.find("OUT-0 is the"), std::string::npos) << help.output;
  EXPECT_NE(help.output.find("bottom (background) layer"), std::string::npos) << help.output;
}

}  // namespace
