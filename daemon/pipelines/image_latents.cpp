#include "pipelines/image_latents.h"

#include "pipelines/image_processing.h"
#include "pipelines/latents.h"

namespace qwen::pipelines {

torch::Tensor encode_image_latents(models::AutoencoderKLQwenImageImpl& vae, const ImageU8& image,
                                   int64_t width, int64_t height, at::Generator& gen) {
  torch::NoGradGuard ng;
  auto pixels = preprocess_image(image, static_cast<int>(width), static_cast<int>(height));
  auto post = vae.encode(pixels.unsqueeze(2).to(vae.device(), vae.dtype()));
  return models::normalize_latents_sample(post.sample(gen), vae.config());
}

torch::Tensor pack_mask_latents(const ImageU8& mask, int64_t width, int64_t height, int64_t batch,
                                torch::Dtype dtype, const torch::Device& device) {
  auto m = preprocess_mask(mask, static_cast<int>(width), static_cast<int>(height));
  // F.interpolate default mode "nearest" (legacy: src = floor(dst * in / out)).
  m = torch::nn::functional::interpolate(
      m, torch::nn::functional::InterpolateFuncOptions()
             .size(std::vector<int64_t>{latent_size(height), latent_size(width)})
             .mode(torch::kNearest));
  m = m.to(device, dtype).repeat({batch, kLatentChannels, 1, 1});
  return pack_latents(m);
}

}  // namespace qwen::pipelines
