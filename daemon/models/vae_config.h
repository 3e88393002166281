// AutoencoderKLQwenImage configuration (vae/config.json) and the latent (de)normalisations the
// pipelines apply around the VAE.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace qwen::models {

struct VaeConfig {
  int base_dim = 96;
  int z_dim = 16;
  std::vector<int> dim_mult{1, 2, 4, 4};
  int num_res_blocks = 2;
  std::vector<double> attn_scales;  // must be empty (as in every released Qwen-Image VAE)
  std::vector<bool> temperal_downsample{false, true, true};
  int input_channels = 3;
  std::vector<double> latents_mean;  // z_dim values
  std::vector<double> latents_std;   // z_dim values

  // Parses vae/config.json. Throws io::CheckpointError naming the file and the field on missing /
  // malformed / unsupported values.
  static VaeConfig from_json_file(const std::string& path);
  static VaeConfig from_json_text(const std::string& text, const std::string& label);

  int spatial_compression() const { return 1 << temperal_downsample.size(); }  // 8
};

// The latent statistics as the pipelines build them: torch.tensor(list) (float32) -> view
// [1, z, 1, 1, 1] -> .to(dtype). inv_std is `1.0 / std` computed on the dtype-cast std tensor.
struct LatentStats {
  torch::Tensor mean, std, inv_std;  // [1, z, 1, 1, 1]
};
LatentStats latent_stats(const VaeConfig& config, torch::Dtype dtype, torch::Device device);

// Edit / Edit-Plus / Layered encode (posterior mode): (z - mean) / std.
torch::Tensor normalize_latents_mode(const torch::Tensor& z, const VaeConfig& config);
// Img2img / inpaint / edit-inpaint encode (posterior sample): (z - mean) * inv_std.
torch::Tensor normalize_latents_sample(const torch::Tensor& z, const VaeConfig& config);
// Every decode: z / inv_std + mean.
torch::Tensor denormalize_latents(const torch::Tensor& z, const VaeConfig& config);

}  // namespace qwen::models
