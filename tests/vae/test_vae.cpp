#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/fixtures.h"
#include "image/geometry.h"
#include "image/png.h"
#include "io/safetensors.h"
#include "models/vae.h"
#include "pipelines/image_processing.h"

using namespace qwen;
using namespace qwen::models;
using qwen::test::AllClose;
using qwen::test::fixture_path;
using qwen::test::load_tensors;

namespace {

constexpr double kAtol = 1e-4, kRtol = 1e-4;

AutoencoderKLQwenImage& tiny_vae() {
  static AutoencoderKLQwenImage vae = [] {
    torch::set_num_threads(2);
    return load_vae(qwen::test::tiny_model_dir() + "/vae", torch::kFloat, torch::kCPU);
  }();
  return vae;
}

// [B, S, 64] packed latents -> [B, 16, 1, h, w] (transformer-and-pipelines.md §3).
torch::Tensor unpack(const torch::Tensor& x, int64_t h, int64_t w) {
  const int64_t b = x.size(0);
  return x.view({b, h / 2, w / 2, 16, 2, 2}).permute({0, 3, 1, 4, 2, 5}).reshape({b, 16, 1, h, w});
}
torch::Tensor pack(const torch::Tensor& z) {
  const int64_t b = z.size(0), h = z.size(3), w = z.size(4);
  return z.view({b, 16, h / 2, 2, w / 2, 2})
      .permute({0, 2, 4, 1, 3, 5})
      .reshape({b, h * w / 4, 64});
}

}  // namespace

TEST(Vae, ConfigAndParameterCount) {
  const VaeConfig c = VaeConfig::from_json_file(qwen::test::tiny_model_dir() + "/vae/config.json");
  EXPECT_EQ(c.base_dim, 8);
  EXPECT_EQ(c.z_dim, 16);
  EXPECT_EQ(c.spatial_compression(), 8);
  EXPECT_DOUBLE_EQ(c.latents_std[15], 1.916);
  // Every checkpoint tensor is a parameter of the module and vice versa (load_module throws
  // otherwise); the real-size module has the documented 194 tensors / 126,892,531 parameters.
  AutoencoderKLQwenImage full(VaeConfig{});
  int64_t n = 0;
  for (const auto& p : full->parameters()) n += p.numel();
  EXPECT_EQ(full->parameters().size(), 194u);
  EXPECT_EQ(n, 126892531);
  EXPECT_EQ(tiny_vae()->parameters().size(), 194u);
}

TEST(Vae, EncodeMatchesPosterior) {
  auto t = load_tensors(fixture_path("cases/vae/tensors.safetensors"));
  const VaePosterior post = tiny_vae()->encode(t["image"]);
  EXPECT_TRUE(AllClose(post.mean, t["posterior_mean"], kAtol, kRtol));
  EXPECT_TRUE(AllClose(post.logvar, t["posterior_logvar"], kAtol, kRtol));
  EXPECT_TRUE(AllClose(normalize_latents_mode(post.mean, tiny_vae()->config()),
                       t["normalized_latents"], kAtol, kRtol));
}

TEST(Vae, DecodeMatchesFixture) {
  auto t = load_tensors(fixture_path("cases/vae/tensors.safetensors"));
  EXPECT_TRUE(AllClose(tiny_vae()->decode(t["posterior_mean"]), t["decoded_mean"], kAtol, kRtol));
  const torch::Tensor d = tiny_vae()->decode(t["random_latents"]);
  EXPECT_TRUE(AllClose(d, t["decoded_random"], kAtol, kRtol));
  EXPECT_LE(d.max().item<float>(), 1.0f);
  EXPECT_GE(d.min().item<float>(), -1.0f);
}

// The pipeline's decode path: last step latents -> unpack -> denormalise -> decode.
TEST(Vae, PipelineDecodePath) {
  for (const char* c : {"pipeline_t2i_cfg1", "pipeline_t2i_cfg4", "pipeline_img2img"}) {
    SCOPED_TRACE(c);
    auto t = load_tensors(fixture_path(std::string("cases/") + c + "/tensors.safetensors"));
    const auto& ref = t["vae_decoded"];
    const torch::Tensor last = t["step_latents"][-1];
    const torch::Tensor z = unpack(last, ref.size(3) / 8, ref.size(4) / 8);
    const torch::Tensor d = tiny_vae()->decode(denormalize_latents(z, tiny_vae()->config()));
    EXPECT_TRUE(AllClose(d, ref, kAtol, kRtol));
  }
}

// Inpaint: image_latents = normalize_sample(posterior sample with the pipeline generator).
TEST(Vae, InpaintImageLatentsFromPosteriorSample) {
  auto t = load_tensors(fixture_path("cases/pipeline_inpaint/tensors.safetensors"));
  const ImageU8 img = read_png(fixture_path("cases/pipeline_inpaint/image_0.png"));
  const torch::Tensor x = pipelines::preprocess_image(img, 96, 64).unsqueeze(2);
  const VaePosterior post = tiny_vae()->encode(x);
  // randn_0 is the posterior draw; a CPU generator seeded like the pipeline reproduces it.
  auto gen = at::detail::createCPUGenerator(11);
  const torch::Tensor sampled = post.sample(gen);
  EXPECT_TRUE(AllClose(sampled, post.mean + torch::exp(0.5 * post.logvar) * t["randn_0"], 1e-6));
  const torch::Tensor lat = normalize_latents_sample(sampled, tiny_vae()->config());
  EXPECT_TRUE(AllClose(pack(lat), t["image_latents"], kAtol, kRtol));
}

// Edit: condition latents = normalize_mode(posterior mean) of the LANCZOS-resized image.
TEST(Vae, EditImageLatents) {
  auto t = load_tensors(fixture_path("cases/pipeline_edit/tensors.safetensors"));
  const ImageU8 img = read_png(fixture_path("cases/pipeline_edit/image_0.png"));
  const Size s = calculate_dimensions(1024.0 * 1024.0, img.width, img.height);
  const torch::Tensor x = pipelines::preprocess_image(img, s.width, s.height).unsqueeze(2);
  const VaePosterior post = tiny_vae()->encode(x);
  const torch::Tensor lat = normalize_latents_mode(post.mean, tiny_vae()->config());
  EXPECT_TRUE(AllClose(pack(lat), t["image_latents"], kAtol, kRtol));
}

TEST(Vae, TiledEncodeAndDecodeMatchDiffusers) {
  auto t = load_tensors(std::string(QWEN_VAE_TEST_DATA) + "/tiled.safetensors");
  auto vae = load_vae(qwen::test::tiny_model_dir() + "/vae", torch::kFloat, torch::kCPU);
  vae->set_tiling(VaeTiling{true, 32, 24});
  const VaePosterior post = vae->encode(t["image"]);
  EXPECT_TRUE(AllClose(post.mean, t["tiled_mean"], kAtol, kRtol));
  EXPECT_TRUE(AllClose(post.logvar, t["tiled_logvar"], kAtol, kRtol));
  EXPECT_TRUE(AllClose(vae->decode(t["latents"]), t["tiled_decoded"], kAtol, kRtol));
}

TEST(Vae, BadShapesAndFilesGiveClearErrors) {
  auto expect_msg = [](auto&& fn, const std::string& part) {
    try {
      fn();
      ADD_FAILURE() << "no exception, expected: " << part;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_msg([] { tiny_vae()->encode(torch::zeros({1, 3, 64, 96})); }, "[B, 3, 1, H, W]");
  expect_msg([] { tiny_vae()->encode(torch::zeros({1, 3, 1, 60, 96})); }, "multiples of 8");
  expect_msg([] { tiny_vae()->decode(torch::zeros({1, 4, 1, 8, 8})); }, "[B, 16, 1, h, w]");
  expect_msg([] { load_vae("/nonexistent/vae", torch::kFloat, torch::kCPU); },
             "/nonexistent/vae: does not exist");
  expect_msg([] { VaeConfig::from_json_text("{\"z_dim\": 16, \"latents_std\": [1, 2]}", "cfg"); },
             "latents_mean / latents_std");
  expect_msg([] { VaeConfig::from_json_text("{\"_class_name\": \"AutoencoderKL\"}", "cfg"); },
             "unsupported VAE class");
  expect_msg([] { VaeConfig::from_json_text("[1]", "cfg"); }, "not a JSON object");
}

// dtype plumbing: a bf16 VAE takes float32 input, computes and returns bf16, and stays close to
// the float32 reference (bf16 has ~3 significant digits).
TEST(Vae, Bfloat16PathStaysCloseToFloat32) {
  auto t = load_tensors(fixture_path("cases/vae/tensors.safetensors"));
  auto vae = load_vae(qwen::test::tiny_model_dir() + "/vae", torch::kBFloat16, torch::kCPU);
  EXPECT_EQ(vae->dtype(), torch::kBFloat16);
  const VaePosterior post = vae->encode(t["image"]);
  EXPECT_EQ(post.mean.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(AllClose(post.mean.to(torch::kFloat), t["posterior_mean"], 0.1, 0.05));
  const torch::Tensor z = normalize_latents_mode(post.mean, vae->config());
  EXPECT_EQ(z.scalar_type(), torch::kBFloat16);
  const torch::Tensor d = vae->decode(t["random_latents"]);
  EXPECT_EQ(d.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(AllClose(d.to(torch::kFloat), t["decoded_random"], 0.1, 0.05));
}
