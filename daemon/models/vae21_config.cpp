#include "models/vae21_config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/config_json.h"
#include "io/safetensors.h"

namespace qwen::models {

namespace {
[[noreturn]] void fail_at(const std::string& label, const std::string& why) {
  throw io::CheckpointError(label + ": " + why);
}
}  // namespace

Vae21Config Vae21Config::from_json_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw io::CheckpointError(path + ": cannot open the VAE config");
  std::stringstream ss;
  ss << f.rdbuf();
  return from_json_text(ss.str(), path);
}

Vae21Config Vae21Config::from_json_text(const std::string& text, const std::string& label) {
  const auto j = io::parse_config_object(text, label);
  auto fail = [&](const std::string& why) { fail_at(label, why); };
  auto required = [&](const char* key) -> const nlohmann::json& {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null())
      fail_at(
          label,
          std::string("missing key '") + key +
              "' (a Qwen-Image-2.1 vae/config.json written by diffusers has it; use the model's "
              "own config.json)");
    return *it;
  };
  Vae21Config c;
  std::string key;
  try {
    key = "_class_name";
    const std::string cls = required("_class_name").get<std::string>();
    if (cls != "AutoencoderKLQwenImage21")
      fail("'_class_name' is '" + cls +
           "', expected AutoencoderKLQwenImage21 (the Qwen-Image-2.1 RGBA VAE)");
    key = "base_dim";
    c.base_dim = required("base_dim").get<int>();
    key = "decoder_base_dim";
    if (j.contains(key)) c.decoder_base_dim = j[key].is_null() ? c.base_dim : j[key].get<int>();
    key = "z_dim";
    c.z_dim = required("z_dim").get<int>();
    key = "dim_mult";
    c.dim_mult = required("dim_mult").get<std::vector<int>>();
    key = "num_res_blocks";
    c.num_res_blocks = required("num_res_blocks").get<int>();
    key = "temperal_downsample";
    c.temperal_downsample = required("temperal_downsample").get<std::vector<bool>>();
    key = "latents_mean";
    c.latents_mean = required("latents_mean").get<std::vector<double>>();
    key = "latents_std";
    c.latents_std = required("latents_std").get<std::vector<double>>();
    key = "in_channels";
    if (j.contains(key)) c.in_channels = j[key].get<int>();
    key = "out_channels";
    if (j.contains(key)) c.out_channels = j[key].get<int>();
    key = "is_residual";
    if (j.contains(key) && !j[key].get<bool>())
      fail(
          "'is_residual' false (the non-residual layout) is not supported; the released "
          "Qwen-Image-2.1 VAE is residual");
    key = "patch_size";
    if (j.contains(key) && !j[key].is_null() && j[key].get<int>() != 1)
      fail("'patch_size' " + j[key].dump() + " is not supported (only null / 1)");
  } catch (const io::CheckpointError&) {
    throw;
  } catch (const std::exception& e) {
    throw io::CheckpointError(label + ": bad value for '" + key + "': " + e.what());
  }
  if (c.base_dim <= 0 || c.decoder_base_dim <= 0 || c.z_dim <= 0 || c.num_res_blocks <= 0 ||
      c.in_channels <= 0 || c.out_channels <= 0)
    fail(
        "base_dim, decoder_base_dim, z_dim, num_res_blocks, in_channels and out_channels must be "
        "positive");
  if (c.dim_mult.size() < 2 || c.dim_mult.size() > 8) fail("'dim_mult' needs 2 to 8 entries");
  for (int m : c.dim_mult)
    if (m <= 0) fail("'dim_mult' entries must be positive");
  if (c.temperal_downsample.size() != c.dim_mult.size() - 1)
    fail("'temperal_downsample' must have len(dim_mult) - 1 = " +
         std::to_string(c.dim_mult.size() - 1) + " entries");
  if (c.latents_mean.size() != size_t(c.z_dim))
    fail("'latents_mean' must have z_dim = " + std::to_string(c.z_dim) + " values, has " +
         std::to_string(c.latents_mean.size()));
  if (c.latents_std.size() != size_t(c.z_dim))
    fail("'latents_std' must have z_dim = " + std::to_string(c.z_dim) + " values, has " +
         std::to_string(c.latents_std.size()));
  for (double s : c.latents_std)
    if (!(s > 0.0)) fail("'latents_std' values must be positive");
  return c;
}

}  // namespace qwen::models
