// Qwen-Image-2.1 VAE (AutoencoderKLQwenImage21): vae/config.json errors name the file and the key,
// the real configuration's size, the original / ComfyUI key mapping, the single-frame shortcuts.
// (Numerical agreement with diffusers: tests/reference/test_reference_qwen21_vae.cpp.)
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>

#include "common/st_writer.h"
#include "io/checkpoint.h"
#include "io/vae21_keys.h"
#include "models/vae21.h"

using namespace qwen;
using nlohmann::json;

namespace {

json tiny_config() {
  return json{{"_class_name", "AutoencoderKLQwenImage21"},
              {"base_dim", 4},
              {"decoder_base_dim", 4},
              {"z_dim", 4},
              {"dim_mult", {1, 2, 2, 2, 2}},
              {"num_res_blocks", 1},
              {"attn_scales", json::array()},
              {"temperal_downsample", {false, true, true, false}},
              {"dropout", 0.0},
              {"is_residual", true},
              {"in_channels", 4},
              {"out_channels", 4},
              {"patch_size", nullptr},
              {"latents_mean", {0.1, -0.2, 0.3, 0.0}},
              {"latents_std", {1.5, 2.0, 0.5, 1.0}}};
}

// A diffusers vae/ folder: config.json + every parameter of the module built from `weights_config`
// (small deterministic float32 values).
void write_folder(const test::TempDir& dir, const json& config, const json& weights_config) {
  models::AutoencoderKLQwenImage21 m(
      models::Vae21Config::from_json_text(weights_config.dump(), "weights config"));
  std::vector<test::StTensor> tensors;
  for (const auto& p : m->named_parameters()) {
    std::vector<float> v(size_t(p.value().numel()));
    for (size_t i = 0; i < v.size(); ++i) v[i] = 0.01f * float(int(i % 7) - 3);
    tensors.push_back({p.key(), "F32", p.value().sizes().vec(), test::f32_bytes(v)});
  }
  test::write_file(dir.path() / "diffusion_pytorch_model.safetensors", test::st_serialize(tensors));
  test::write_file(dir.path() / "config.json", config.dump(2));
}

std::string load_error(const test::TempDir& dir) {
  try {
    models::load_vae21(dir.str(), torch::kFloat32, torch::kCPU);
  } catch (const io::CheckpointError& e) {
    return e.what();
  }
  return "(loaded without an error)";
}

}  // namespace

TEST(Vae21, TinyFolderLoadsAndRunsWithTheRightShapes) {
  test::TempDir dir;
  write_folder(dir, tiny_config(), tiny_config());
  auto vae = models::load_vae21(dir.str(), torch::kFloat32, torch::kCPU);
  EXPECT_EQ(vae->config().spatial_compression(), 16);
  EXPECT_EQ(vae->config().latents_std[2], 0.5);
  torch::NoGradGuard ng;
  const auto post = vae->encode(torch::rand({2, 4, 1, 48, 80}) * 2 - 1);
  EXPECT_EQ(post.mean.sizes(), (std::vector<int64_t>{2, 4, 1, 3, 5}));
  const auto img = vae->decode(torch::randn({1, 4, 1, 3, 5}));
  EXPECT_EQ(img.sizes(), (std::vector<int64_t>{1, 4, 1, 48, 80}));
  EXPECT_LE(img.abs().max().item<float>(), 1.0f);
  // (z - mean) / std and back.
  const auto z = torch::randn({1, 4, 1, 2, 3});
  const auto n = models::normalize_latents21(z, vae->config());
  EXPECT_NEAR((n[0][2] * 0.5 + 0.3 - z[0][2]).abs().max().item<float>(), 0.0, 1e-6);
  EXPECT_TRUE(torch::allclose(models::denormalize_latents21(n, vae->config()), z, 1e-5, 1e-6));
}

TEST(Vae21, MissingOrBadConfigKeyNamesTheFileAndTheKey) {
  const std::string file_hint = "/config.json";
  for (const char* key : {"z_dim", "latents_mean", "latents_std", "dim_mult", "base_dim",
                          "num_res_blocks", "temperal_downsample", "_class_name"}) {
    test::TempDir dir;
    json c = tiny_config();
    c.erase(key);
    write_folder(dir, c, tiny_config());
    const std::string m = load_error(dir);
    EXPECT_NE(m.find(dir.str() + file_hint), std::string::npos) << key << ": " << m;
    EXPECT_NE(m.find(std::string("missing key '") + key + "'"), std::string::npos) << m;
  }
  const std::pair<const char*, json> bad[] = {
      {"dim_mult", "wide"},
      {"z_dim", "four"},
      {"latents_mean", json::array({0.1, 0.2})},   // not z_dim values
      {"latents_std", json::array({1, 1, 0, 1})},  // not positive
      {"temperal_downsample", json::array({true})},
      {"is_residual", false},
      {"patch_size", 2},
      {"_class_name", "AutoencoderKLWan"}};
  for (const auto& [key, value] : bad) {
    test::TempDir dir;
    json c = tiny_config();
    c[key] = value;
    write_folder(dir, c, tiny_config());
    const std::string m = load_error(dir);
    EXPECT_NE(m.find(dir.str() + file_hint), std::string::npos) << key << ": " << m;
    EXPECT_NE(m.find(std::string("'") + key + "'"), std::string::npos) << key << ": " << m;
  }
}

TEST(Vae21, RefusesTheTwentyBVaeAndMismatchedWeights) {
  {
    test::TempDir dir;
    json c = tiny_config();
    c["_class_name"] = "AutoencoderKLQwenImage";
    write_folder(dir, c, tiny_config());
    const std::string m = load_error(dir);
    EXPECT_NE(m.find("AutoencoderKLQwenImage21"), std::string::npos) << m;
    EXPECT_NE(m.find("20B"), std::string::npos) << m;
  }
  {  // config.json says base_dim 8, the weights have 4: the loader names the tensors.
    test::TempDir dir;
    json c = tiny_config();
    c["base_dim"] = 8;
    write_folder(dir, c, tiny_config());
    const std::string m = load_error(dir);
    EXPECT_NE(m.find("encoder.conv_in.weight (expected [8, 4, 3, 3], found [4, 4, 3, 3])"),
              std::string::npos)
        << m;
  }
}

TEST(Vae21, RealConfigurationHasTheReleasedSize) {
  // diffusers AutoencoderKLQwenImage21() (the released configuration): 238 tensors, 337,740,404
  // parameters (0.68 GB in bf16, the size of qwen_image_2.1_vae_bf16.safetensors).
  models::Vae21Config c;
  c.latents_mean.assign(64, 0.0);
  c.latents_std.assign(64, 1.0);
  models::AutoencoderKLQwenImage21 m(c);
  int64_t n = 0;
  for (const auto& p : m->parameters()) n += p.numel();
  EXPECT_EQ(m->parameters().size(), 238u);
  EXPECT_EQ(n, 337740404);
  EXPECT_EQ(c.spatial_compression(), 16);
}

TEST(Vae21, OriginalLayoutKeysMapToDiffusers) {
  const std::pair<const char*, const char*> cases[] = {
      {"conv1.weight", "quant_conv.weight"},
      {"conv2.bias", "post_quant_conv.bias"},
      {"encoder.conv1.weight", "encoder.conv_in.weight"},
      {"decoder.head.0.gamma", "decoder.norm_out.gamma"},
      {"decoder.head.2.weight", "decoder.conv_out.weight"},
      {"encoder.middle.0.residual.2.weight", "encoder.mid_block.resnets.0.conv1.weight"},
      {"encoder.middle.1.to_qkv.bias", "encoder.mid_block.attentions.0.to_qkv.bias"},
      {"decoder.middle.2.residual.3.gamma", "decoder.mid_block.resnets.1.norm2.gamma"},
      {"encoder.downsamples.3.downsamples.1.residual.6.bias",
       "encoder.down_blocks.3.resnets.1.conv2.bias"},
      {"encoder.downsamples.1.downsamples.0.shortcut.weight",
       "encoder.down_blocks.1.resnets.0.conv_shortcut.weight"},
      {"encoder.downsamples.2.downsamples.2.resample.1.weight",
       "encoder.down_blocks.2.downsampler.resample.1.weight"},
      {"encoder.downsamples.2.downsamples.2.time_conv.bias",
       "encoder.down_blocks.2.downsampler.time_conv.bias"},
      {"decoder.upsamples.0.upsamples.2.residual.0.gamma",
       "decoder.up_blocks.0.resnets.2.norm1.gamma"},
      {"decoder.upsamples.1.upsamples.3.resample.1.bias",
       "decoder.up_blocks.1.upsampler.resample.1.bias"},
      {"decoder.upsamples.0.upsamples.3.time_conv.weight",
       "decoder.up_blocks.0.upsampler.time_conv.weight"}};
  for (const auto& [from, to] : cases) EXPECT_EQ(io::wan22_vae_key_to_diffusers(from), to) << from;
  EXPECT_TRUE(io::is_wan22_vae_layout({"decoder.upsamples.0.upsamples.0.residual.2.weight"}));
  // The Wan 2.1 / Qwen-Image (20B) layout is not the 2.2 one.
  EXPECT_FALSE(io::is_wan22_vae_layout(
      {"decoder.upsamples.0.residual.2.weight", "encoder.downsamples.0.residual.0.gamma"}));
}

TEST(Vae21, SingleFrameShortcutsMatchTheReferenceReshapes) {
  // AvgDown3D(in 2, out 4, factor_t 2, factor_s 2) on one frame: a zero frame in front; groups of
  // 2 * 2 * 2 * 2 / 4 = 4 values of the (channel, frame, row, col) order: the zero frame's groups
  // give 0, the real frame's the 2x2 mean.
  const auto x = torch::arange(2 * 2 * 2, torch::kFloat).view({1, 2, 2, 2});
  const auto d = models::vae21::avg_down(x, 4, 2, 2);
  ASSERT_EQ(d.sizes(), (std::vector<int64_t>{1, 4, 1, 1}));
  EXPECT_FLOAT_EQ(d[0][0].item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(d[0][1].item<float>(), 1.5f);  // mean(0, 1, 2, 3)
  EXPECT_FLOAT_EQ(d[0][2].item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(d[0][3].item<float>(), 5.5f);  // mean(4, 5, 6, 7)
  // DupUp3D(in 4, out 2, factor_t 2, factor_s 2), first_chunk: repeats = 2 * 8 / 4 = 4; the kept
  // frame (t = 1) of output channel o reads repeated channels o * 8 + 4 .. o * 8 + 7 = source
  // channel 2 o + 1.
  const auto y = torch::arange(4, torch::kFloat).view({1, 4, 1, 1});
  const auto u = models::vae21::dup_up(y, 2, 2, 2);
  ASSERT_EQ(u.sizes(), (std::vector<int64_t>{1, 2, 2, 2}));
  EXPECT_TRUE(torch::equal(u[0][0], torch::full({2, 2}, 1.0f)));
  EXPECT_TRUE(torch::equal(u[0][1], torch::full({2, 2}, 3.0f)));
}
