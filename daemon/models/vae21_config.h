// AutoencoderKLQwenImage21 configuration (Qwen-Image-2.1 vae/config.json). Torch-free.
#pragma once

#include <string>
#include <vector>

namespace qwen::models {

// The __init__ arguments of diffusers' AutoencoderKLQwenImage21 that shape the single-image model.
// diffusers' save_pretrained writes every one of them, so the keys without a default below are
// required: a config.json that lacks one is damaged, and guessing would give a VAE that loads
// (or not) with the wrong latent statistics.
struct Vae21Config {
  int base_dim = 96;                         // required
  int decoder_base_dim = 144;                // optional (diffusers default 144; null = base_dim)
  int z_dim = 64;                            // required
  std::vector<int> dim_mult{1, 2, 4, 8, 8};  // required
  int num_res_blocks = 2;                    // required
  std::vector<bool> temperal_downsample{false, true, true, true};  // required
  int in_channels = 4;                                             // optional (default 4: RGBA)
  int out_channels = 4;                                            // optional (default 4)
  std::vector<double> latents_mean;                                // required, z_dim values
  std::vector<double> latents_std;                                 // required, z_dim values (> 0)

  // Parses vae/config.json. Throws io::CheckpointError naming the file and the key on a missing
  // required key, a malformed or unsupported value (is_residual false, a patch_size other than
  // null / 1, a class other than AutoencoderKLQwenImage21).
  static Vae21Config from_json_file(const std::string& path);
  static Vae21Config from_json_text(const std::string& text, const std::string& label);

  // One latent per spatial_compression() x spatial_compression() pixels: 2^(len(dim_mult) - 1),
  // 16 for the released model (every encoder level but the last halves H and W).
  int spatial_compression() const { return 1 << (dim_mult.size() - 1); }
};

}  // namespace qwen::models
