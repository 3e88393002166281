// Latent-space helpers shared by the Qwen-Image pipelines (spec transformer-and-pipelines.md §3,
// §5.0): sizes, 2x2 packing, seeded noise, true-CFG combination. (Latent (de)normalisation lives
// with the VAE: models/vae_config.h.)
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace qwen::pipelines {

constexpr int kVaeScaleFactor = 8;
constexpr int kLatentChannels = 16;

// Latent size of a pixel size: 2 * floor(pixels / 16) (the pipelines floor, they never round up).
inline int64_t latent_size(int64_t pixels) { return 2 * (pixels / (kVaeScaleFactor * 2)); }
// Pixel size the pipelines actually produce: 16 * floor(pixels / 16).
inline int64_t floor_to_16(int64_t pixels) { return 16 * (pixels / 16); }

// [B, 1, 16, h, w] (or [B, 16, 1, h, w]: same memory order, or [B, 16, h, w]) ->
// [B, (h/2)(w/2), 64]:
// token = row-major over 2x2 patches, channel = c * 4 + dy * 2 + dx.
torch::Tensor pack_latents(const torch::Tensor& latents);
// Inverse of pack_latents for an image of `height` x `width` pixels -> [B, 16, 1, h, w].
torch::Tensor unpack_latents(const torch::Tensor& packed, int64_t height, int64_t width);

// A CPU generator seeded like torch.Generator(device="cpu").manual_seed(seed) (negative seeds wrap
// to uint64 as torch does).
at::Generator make_generator(int64_t seed);
// torch.randn(shape, generator, dtype) drawn on the CPU (the reference's CPU-generator streams),
// then moved to `device`.
torch::Tensor randn(at::Generator& gen, at::IntArrayRef shape, torch::Dtype dtype,
                    const torch::Device& device);

// True CFG with norm-preserving rescale (every op in the inputs' dtype):
// comb = uncond + scale * (cond - uncond); out = comb * (|cond| / |comb|), norms over the last dim.
torch::Tensor true_cfg(const torch::Tensor& cond, const torch::Tensor& uncond, double scale);

// Repeats every batch row `n` times consecutively (b0, b0, ..., b1, b1, ...).
torch::Tensor repeat_per_prompt(const torch::Tensor& t, int64_t n);

}  // namespace qwen::pipelines
