#include "models/vae_config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/config_json.h"
#include "io/safetensors.h"

namespace qwen::models {

VaeConfig VaeConfig::from_json_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw io::CheckpointError(path + ": cannot open the VAE config");
  std::stringstream ss;
  ss << f.rdbuf();
  return from_json_text(ss.str(), path);
}

VaeConfig VaeConfig::from_json_text(const std::string& text, const std::string& label) {
  const auto j = io::parse_config_object(text, label);
  VaeConfig c;
  std::string field;
  try {
    field = "_class_name";
    const std::string cls = j.value("_class_name", std::string("AutoencoderKLQwenImage"));
    if (cls != "AutoencoderKLQwenImage") {
      throw io::CheckpointError("unsupported VAE class '" + cls +
                                "' (expected AutoencoderKLQwenImage)");
    }
    field = "base_dim";
    c.base_dim = j.value(field, c.base_dim);
    field = "z_dim";
    c.z_dim = j.value(field, c.z_dim);
    field = "dim_mult";
    if (j.contains(field)) c.dim_mult = j.at(field).get<std::vector<int>>();
    field = "num_res_blocks";
    c.num_res_blocks = j.value(field, c.num_res_blocks);
    field = "attn_scales";
    if (j.contains(field)) c.attn_scales = j.at(field).get<std::vector<double>>();
    field = "temperal_downsample";
    if (j.contains(field)) c.temperal_downsample = j.at(field).get<std::vector<bool>>();
    field = "input_channels";
    c.input_channels = j.value(field, c.input_channels);
    field = "latents_mean";
    if (j.contains(field)) c.latents_mean = j.at(field).get<std::vector<double>>();
    field = "latents_std";
    if (j.contains(field)) c.latents_std = j.at(field).get<std::vector<double>>();
  } catch (const io::CheckpointError& e) {
    throw io::CheckpointError(label + ": " + e.what());
  } catch (const std::exception& e) {
    throw io::CheckpointError(label + ": bad value for '" + field + "': " + e.what());
  }
  auto fail = [&](const std::string& why) { throw io::CheckpointError(label + ": " + why); };
  if (c.base_dim <= 0 || c.z_dim <= 0 || c.num_res_blocks <= 0 || c.input_channels <= 0) {
    fail("base_dim, z_dim, num_res_blocks and input_channels must be positive");
  }
  if (c.dim_mult.size() < 2) fail("dim_mult needs at least 2 entries");
  for (int m : c.dim_mult) {
    if (m <= 0) fail("dim_mult entries must be positive");
  }
  if (c.temperal_downsample.size() != c.dim_mult.size() - 1) {
    fail("temperal_downsample must have len(dim_mult) - 1 entries");
  }
  if (!c.attn_scales.empty()) fail("attn_scales other than [] are not supported");
  if (c.latents_mean.empty()) c.latents_mean.assign(size_t(c.z_dim), 0.0);
  if (c.latents_std.empty()) c.latents_std.assign(size_t(c.z_dim), 1.0);
  if (c.latents_mean.size() != size_t(c.z_dim) || c.latents_std.size() != size_t(c.z_dim)) {
    fail("latents_mean / latents_std must have z_dim = " + std::to_string(c.z_dim) + " values");
  }
  for (double s : c.latents_std) {
    if (!(s > 0.0)) fail("latents_std values must be positive");
  }
  return c;
}

LatentStats latent_stats(const VaeConfig& config, torch::Dtype dtype, torch::Device device) {
  auto make = [&](const std::vector<double>& v) {
    std::vector<float> f(v.begin(), v.end());  // torch.tensor(list of floats) is float32
    return torch::tensor(f).view({1, config.z_dim, 1, 1, 1}).to(device, dtype);
  };
  LatentStats s;
  s.mean = make(config.latents_mean);
  s.std = make(config.latents_std);
  s.inv_std = torch::reciprocal(s.std);
  return s;
}

namespace {
void check_latents(const torch::Tensor& z, const VaeConfig& config, const char* what) {
  if (z.dim() != 5 || z.size(1) != config.z_dim) {
    std::ostringstream os;
    os << what << ": expected latents [B, " << config.z_dim << ", T, h, w], got " << z.sizes();
    throw std::invalid_argument(os.str());
  }
}
}  // namespace

torch::Tensor normalize_latents_mode(const torch::Tensor& z, const VaeConfig& config) {
  check_latents(z, config, "normalize_latents_mode");
  const LatentStats s = latent_stats(config, z.scalar_type(), z.device());
  return (z - s.mean) / s.std;
}

torch::Tensor normalize_latents_sample(const torch::Tensor& z, const VaeConfig& config) {
  check_latents(z, config, "normalize_latents_sample");
  const LatentStats s = latent_stats(config, z.scalar_type(), z.device());
  return (z - s.mean) * s.inv_std;
}

torch::Tensor denormalize_latents(const torch::Tensor& z, const VaeConfig& config) {
  check_latents(z, config, "denormalize_latents");
  const LatentStats s = latent_stats(config, z.scalar_type(), z.device());
  return z / s.inv_std + s.mean;
}

}  // namespace qwen::models
