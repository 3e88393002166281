// Every format sample (tests/fixtures/format-samples: ComfyUI bf16, plain fp8, legacy scaled fp8,
// comfy_quant fp8mixed, GGUF Q8_0 / Q4_0 / Q5_1 / K-mix) through the CLI (issue #12): `inspect`
// names its format, and `generate --transformer FILE` gives the image that the file's
// dequantised float32 weights give (written as a plain single file), within 1 level: the
// quantised path (weights kept quantised, dequantised per forward) computes exactly what the
// dequantised weights compute.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "cli_harness.h"
#include "common/fixtures.h"

namespace fs = std::filesystem;

namespace {

const std::string kSamples = QWEN_FORMAT_SAMPLES;

using qwen::test::cli::max_diff;
using qwen::test::cli::run;

std::string tmp(const std::string& name) {
  return qwen::test::cli::out_path("cli_formats_out", name);
}

const char* kJob =
    " --threads 2 --prompt 'A red bicycle leaning against a blue wall, watercolor'"
    " --true-cfg-scale 1 --width 96 --height 64 --steps 3 --seed 7 --quiet --output ";

struct Sample {
  std::string file, format;  // format: FileFormat::summary() prefix
};

// `model`: the CLI arguments that give the other components.
void check_sample(const Sample& s, const std::string& model) {
  SCOPED_TRACE(s.file);
  const std::string file = kSamples + "/files/" + s.file;
  const std::string deq = kSamples + "/dequant/" + s.file + ".safetensors";
  auto r = run("inspect " + model + " --transformer " + file + " --tensors");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("format: " + s.format + ":"), std::string::npos) << r.output;
  const auto out = tmp(s.file + ".png"), out_deq = tmp(s.file + ".dequant.png");
  fs::remove(out);
  fs::remove(out_deq);
  r = run("generate " + model + " --transformer " + file + kJob + out);
  ASSERT_EQ(r.code, 0) << r.output;
  r = run("generate " + model + " --transformer " + deq + kJob + out_deq);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_LE(max_diff(out, out_deq), 1);
}

}  // namespace

TEST(CliFormats, EverySampleGivesTheImageOfItsDequantisedWeights) {
  const std::string model = "--model " + qwen::test::tiny_model_dir();
  for (const Sample& s :
       std::initializer_list<Sample>{{"pub-tiny_bf16.safetensors", "plain"},
                                     {"pub-tiny_fp8_e4m3fn.safetensors", "fp8"},
                                     {"pub-tiny_fp8_e4m3fn_scaled.safetensors", "fp8-scaled"},
                                     {"pub-tiny_fp8mixed.safetensors", "comfy-quant"},
                                     {"pub-tiny-Q8_0.gguf", "gguf"},
                                     {"pub-tiny-Q4_0.gguf", "gguf"},
                                     {"pub-tiny-Q5_1.gguf", "gguf"}})
    check_sample(s, model);
  // The quantised weights are really used: Q4_0 draws another picture than bf16.
  EXPECT_GT(max_diff(tmp("pub-tiny-Q4_0.gguf.png"), tmp("pub-tiny_bf16.safetensors.png")), 1);
}

// The K-mix GGUF holds another model (3 layers): with the tiny model's text encoder and VAE as
// files, no folder (the configuration from the GGUF's logical shapes).
TEST(CliFormats, KQuantMixWithoutAFolder) {
  const std::string tiny = qwen::test::tiny_model_dir();
  check_sample({"q-pub-Kmix.gguf", "gguf"},
               "--text-encoder " + tiny + "/text_encoder/model.safetensors --vae " + tiny +
                   "/vae/diffusion_pytorch_model.safetensors --model-type qwen-image");
}
