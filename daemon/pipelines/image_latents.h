// Image-side inputs of the img2img / inpaint pipelines (spec §5.2, §5.3): the VAE posterior
// sample of the init image and the packed mask latents.
#pragma once

#include <torch/torch.h>

#include "image/image.h"
#include "models/vae.h"

namespace qwen::pipelines {

// LANCZOS resize to width x height, VAE encode, posterior sample drawn from `gen` (the first RNG
// consumer, as in the reference), (z - mean) * (1/std). Returns [1, 16, 1, h, w] in the VAE dtype.
torch::Tensor encode_image_latents(models::AutoencoderKLQwenImageImpl& vae, const ImageU8& image,
                                   int64_t width, int64_t height, at::Generator& gen);

// Mask (white = repaint) -> LANCZOS resize, binarise, nearest resize to the latent grid, 16
// channels, repeated to `batch`, packed: [batch, S, 64] of 0/1 in `dtype` on `device`.
torch::Tensor pack_mask_latents(const ImageU8& mask, int64_t width, int64_t height, int64_t batch,
                                torch::Dtype dtype, const torch::Device& device);

}  // namespace qwen::pipelines
