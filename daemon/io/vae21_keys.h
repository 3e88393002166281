// Qwen-Image-2.1 VAE single files: the original / ComfyUI key layout (Wan 2.2's VAE names:
// `encoder.downsamples.N.downsamples.M.residual.K`, `decoder.upsamples.N.upsamples.M`, `head`,
// `middle`, `conv1`/`conv2`) -> diffusers AutoencoderKLQwenImage21 names, and the configuration
// derived from the shapes of such a file. Torch-free. Used by io/checkpoint_keys.cpp.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/tensor_format.h"

namespace qwen::io {

// True when `names` use the Wan 2.2 residual layout (nested `encoder.downsamples.N.downsamples.` /
// `decoder.upsamples.N.upsamples.`), which the Qwen-Image-2.1 VAE's original files share.
bool is_wan22_vae_layout(const std::vector<std::string>& names);
// One Wan 2.2-layout key -> the diffusers AutoencoderKLQwenImage21 key; other keys unchanged.
// `num_res_blocks`: residual blocks per encoder level (the decoder has one more); the resample
// follows them (encoder: downsamples.N.downsamples.<num_res_blocks>, decoder:
// upsamples.N.upsamples.<num_res_blocks + 1>), recognised by its `resample.` / `time_conv.` names.
std::string wan22_vae_key_to_diffusers(const std::string& key);

// True when the canonical (diffusers) names are those of AutoencoderKLQwenImage21's residual
// layout (`encoder.down_blocks.0.resnets.0.conv1.weight`).
bool is_vae21_format(const FileFormat& format);
// The AutoencoderKLQwenImage21 config.json equivalent of a file in that layout: base_dim,
// decoder_base_dim, z_dim, dim_mult, num_res_blocks, temperal_downsample (a level with a
// downsampler.time_conv), in/out channels from the shapes; latents_mean / latents_std are the
// diffusers defaults (the released model's). Throws CheckpointError naming a missing tensor.
nlohmann::json vae21_config_from_shapes(const FileFormat& format);

}  // namespace qwen::io
