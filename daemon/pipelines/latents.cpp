#include "pipelines/latents.h"

#include <ATen/CPUGeneratorImpl.h>

#include <stdexcept>
#include <string>

namespace qwen::pipelines {

torch::Tensor pack_latents(const torch::Tensor& latents) {
  // [B, 1, 16, h, w] / [B, 16, 1, h, w] (one frame: same memory order) or [B, 16, h, w].
  if (latents.dim() != 5 && latents.dim() != 4)
    throw std::invalid_argument("pack_latents: expected [B, 1, 16, h, w] latents");
  const int64_t b = latents.size(0);
  const int64_t c = latents.dim() == 5 ? latents.size(1) * latents.size(2) : latents.size(1);
  const int64_t h = latents.size(-2), w = latents.size(-1);
  if (h % 2 != 0 || w % 2 != 0)
    throw std::invalid_argument("pack_latents: latent height/width must be even");
  return latents.reshape({b, c, h / 2, 2, w / 2, 2})
      .permute({0, 2, 4, 1, 3, 5})
      .reshape({b, (h / 2) * (w / 2), c * 4});
}

torch::Tensor unpack_latents(const torch::Tensor& packed, int64_t height, int64_t width) {
  if (packed.dim() != 3) throw std::invalid_argument("unpack_latents: expected [B, S, C*4]");
  const int64_t b = packed.size(0), s = packed.size(1), ch = packed.size(2);
  const int64_t h = latent_size(height), w = latent_size(width);
  if (s != (h / 2) * (w / 2) || ch % 4 != 0)
    throw std::invalid_argument("unpack_latents: " + std::to_string(s) + " tokens do not match a " +
                                std::to_string(width) + "x" + std::to_string(height) + " image");
  return packed.view({b, h / 2, w / 2, ch / 4, 2, 2})
      .permute({0, 3, 1, 4, 2, 5})
      .reshape({b, ch / 4, 1, h, w});
}

at::Generator make_generator(int64_t seed) {
  return at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed));
}

torch::Tensor randn(at::Generator& gen, at::IntArrayRef shape, torch::Dtype dtype,
                    const torch::Device& device) {
  auto out = at::randn(shape, gen, torch::TensorOptions().dtype(dtype).device(torch::kCPU));
  return out.to(device);
}

torch::Tensor true_cfg(const torch::Tensor& cond, const torch::Tensor& uncond, double scale) {
  auto comb = uncond + scale * (cond - uncond);
  auto cond_norm = torch::norm(cond, 2, {-1}, /*keepdim=*/true);
  auto comb_norm = torch::norm(comb, 2, {-1}, /*keepdim=*/true);
  return comb * (cond_norm / comb_norm);
}

torch::Tensor repeat_per_prompt(const torch::Tensor& t, int64_t n) {
  if (n == 1 || !t.defined()) return t;
  return t.repeat_interleave(n, 0);
}

}  // namespace qwen::pipelines
