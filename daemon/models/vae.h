// AutoencoderKLQwenImage (diffusers) for single images: encoder + quant_conv, post_quant_conv +
// decoder, with the checkpoint's key names (models::load_module loads vae/ directly).
//
//   auto vae = qwen::models::load_vae(model_dir + "/vae", torch::kBFloat16, torch::kCUDA);
//   auto post = vae->encode(x);            // x [B, 3, 1, H, W] in [-1, 1]; H, W multiples of 8
//   auto lat  = normalize_latents_mode(post.mean, vae->config());        // Edit family
//   auto lat2 = normalize_latents_sample(post.sample(gen), vae->config());  // img2img / inpaint
//   auto img  = vae->decode(denormalize_latents(z, vae->config()));       // [B, 3, 1, H, W]
//
// Inputs are cast to the module's dtype/device; outputs stay in that dtype on that device.
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "models/vae_blocks.h"
#include "models/vae_config.h"

namespace qwen::models {

// DiagonalGaussianDistribution of the encoder output. logvar is already clamped to [-30, 20].
struct VaePosterior {
  torch::Tensor mean;    // [B, z, 1, h, w]
  torch::Tensor logvar;  // [B, z, 1, h, w]
  torch::Tensor mode() const { return mean; }
  // mean + exp(0.5 * logvar) * eps, eps = randn(mean.shape) drawn in mean's dtype on the
  // generator's device (diffusers randn_tensor) and moved to mean's device.
  torch::Tensor sample(at::Generator generator) const;
  // DiagonalGaussianDistribution(moments): moments [B, 2z, H, W] (the quant_conv output) split
  // into mean and logvar (clamped to [-30, 20]), each with the frame axis added back.
  static VaePosterior from_moments(const torch::Tensor& moments, int64_t z_dim);
};

// Tiled encode/decode (diffusers enable_tiling()). Sizes are in pixels.
//  enabled:   tile every image larger than one tile (the diffusers switch).
//  automatic: otherwise tile only an image too large to process whole (vae_should_tile): more
//             than auto_max_pixels pixels, or on CUDA an estimated activation peak
//             (vae_peak_bytes) above the memory the process can still get. Below that the
//             untiled path runs, bit for bit what tiling off gives. The tiled result differs
//             slightly (blended tile seams, no clamp: diffusers' tiled path).
struct VaeTiling {
  bool enabled = false;
  int tile_sample_min = 256;
  int tile_sample_stride = 192;
  bool automatic = true;
  // 4 MP: above every size the pipelines default to (1328 x 1328 = 1.76 MP) and twice 1024 x 2048.
  int64_t auto_max_pixels = 2048 * 2048;
};

// Estimated peak bytes of the activations of an untiled encode or decode of `batch` images of
// height x width pixels with the released VAE (96 base channels): the decoder's last upsample
// holds a float32 copy of 192 channels at full resolution next to its dtype copy and the conv
// output, about 768 + 336 * element_size bytes per pixel, with 50% headroom for workspaces.
int64_t vae_peak_bytes(int64_t batch, int64_t height, int64_t width, torch::Dtype dtype);
// The tiling decision for an image of height x width pixels (batch of `batch`); `available_bytes`
// is the device memory the process can still use (models::device_available_bytes), nullopt when
// unknown (the CPU: the pixel rule only). Never tiles an image that fits in one tile.
bool vae_should_tile(const VaeTiling& tiling, int64_t batch, int64_t height, int64_t width,
                     torch::Dtype dtype, std::optional<int64_t> available_bytes);

namespace vae {
class Encoder : public torch::nn::Module {
 public:
  Encoder(const VaeConfig& c);
  torch::Tensor forward(const torch::Tensor& x);  // [B, C, H, W] -> [B, 2z, H/8, W/8]

 private:
  std::shared_ptr<CausalConv3d> conv_in_, conv_out_;
  torch::nn::ModuleList down_blocks_;
  std::vector<std::shared_ptr<Layer>> layers_;
  std::shared_ptr<MidBlock> mid_block_;
  std::shared_ptr<RmsNorm> norm_out_;
};

class Decoder : public torch::nn::Module {
 public:
  Decoder(const VaeConfig& c);
  torch::Tensor forward(const torch::Tensor& z);  // [B, z, h, w] -> [B, C, 8h, 8w], unclamped

 private:
  std::shared_ptr<CausalConv3d> conv_in_, conv_out_;
  std::shared_ptr<MidBlock> mid_block_;
  torch::nn::ModuleList up_blocks_;
  std::vector<std::shared_ptr<UpBlock>> ups_;
  std::shared_ptr<RmsNorm> norm_out_;
};
}  // namespace vae

class AutoencoderKLQwenImageImpl : public torch::nn::Module {
 public:
  explicit AutoencoderKLQwenImageImpl(const VaeConfig& config);

  // x: [B, C, 1, H, W] (C = input_channels), H and W multiples of 8. Throws std::invalid_argument
  // with the offending shape otherwise.
  VaePosterior encode(const torch::Tensor& x);
  // z: [B, z_dim, 1, h, w] (already denormalised). Returns [B, C, 1, 8h, 8w] clamped to [-1, 1]
  // (not clamped on the tiled path, as in diffusers).
  torch::Tensor decode(const torch::Tensor& z);

  void set_tiling(const VaeTiling& tiling) { tiling_ = tiling; }
  const VaeTiling& tiling() const { return tiling_; }
  // Prepares every layer's weights for repeated calls (vae::CausalConv3d::prepare); load_vae does
  // it after loading. Call again after replacing weights.
  void prepare_for_inference();
  const VaeConfig& config() const { return config_; }
  torch::Dtype dtype() const;
  torch::Device device() const;

 private:
  torch::Tensor encode_4d(const torch::Tensor& x);  // encoder + quant_conv
  torch::Tensor decode_4d(const torch::Tensor& z);  // post_quant_conv + decoder
  torch::Tensor tiled_encode(const torch::Tensor& x);
  torch::Tensor tiled_decode(const torch::Tensor& z);
  bool use_tiling(int64_t batch, int64_t height, int64_t width) const;  // pixels

  VaeConfig config_;
  VaeTiling tiling_;
  std::shared_ptr<vae::Encoder> encoder_;
  std::shared_ptr<vae::Decoder> decoder_;
  std::shared_ptr<vae::CausalConv3d> quant_conv_, post_quant_conv_;
};
TORCH_MODULE(AutoencoderKLQwenImage);

// Builds the VAE from `vae_dir`/config.json and loads `vae_dir`'s safetensors. Throws
// io::CheckpointError naming the file and the problem.
AutoencoderKLQwenImage load_vae(const std::string& vae_dir, torch::Dtype dtype,
                                torch::Device device);
// The same from an opened component (io::ModelFolder::weights / io::open_component): the one
// loading path; the folder form above is this over io::open_component(vae_dir).
AutoencoderKLQwenImage load_vae(const io::ComponentWeights& weights, torch::Dtype dtype,
                                torch::Device device);

}  // namespace qwen::models
