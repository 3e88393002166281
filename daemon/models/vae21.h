// AutoencoderKLQwenImage21 (diffusers 0.42.1, models/autoencoders/autoencoder_kl_qwenimage21.py):
// the Qwen-Image-2.1 RGBA VAE, 16x spatial, 64 latent channels, for single images as
// QwenImage21Pipeline uses it. Modules register the checkpoint's key names (loading is a lookup,
// models::load_module), and work on 4-D [B, C, H, W] tensors: for one frame the reference's
// "causal 3-D" convolutions are 2-D convolutions (its QwenImage21CausalConv3d is an nn.Conv2d),
// the time_conv layers of the temporal resamplers are never run (registered only), AvgDown3D
// zero-pads the frame axis to factor_t and averages over it, and DupUp3D keeps only its last
// duplicated frame (first_chunk).
//
//   auto vae = qwen::models::load_vae21(model_dir + "/vae", torch::kBFloat16, torch::kCUDA);
//   auto post = vae->encode(x);                          // x [B, 4, 1, H, W] in [-1, 1]
//   auto lat  = normalize_latents21(post.mean, vae->config());   // (z - mean) / std
//   auto img  = vae->decode(denormalize_latents21(z, vae->config()));  // [B, 4, 1, H, W]
//
// Inputs are cast to the module's dtype/device; outputs stay in that dtype on that device.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "models/vae.h"
#include "models/vae21_config.h"

namespace qwen::models {

namespace vae21 {

// QwenImage21CausalConv3d / nn.Conv2d: `weight` [out, in, k, k], `bias` [out], stride 1,
// symmetric zero padding (the reference pads with F.pad, then convolves unpadded: the same sums).
class Conv : public torch::nn::Module {
 public:
  Conv(int64_t in, int64_t out, int64_t k, int64_t padding);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;

 private:
  int64_t padding_;
};

// QwenImage21ResidualBlock: x + ... with norm1/conv1/norm2/conv2 and conv_shortcut when in != out.
class ResidualBlock : public torch::nn::Module {
 public:
  ResidualBlock(int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  std::shared_ptr<vae::RmsNorm> norm1_, norm2_;
  std::shared_ptr<Conv> conv1_, conv2_, shortcut_;
};

// QwenImage21Resample: "downsample2d"/"downsample3d" (zero pad right/bottom by 1, 3x3 stride-2
// resample.1), "upsample2d"/"upsample3d" (nearest-exact x2, 3x3 resample.1 dim -> out_dim). The 3d
// modes also register time_conv (1x1: dim -> dim, up: dim -> 2 dim), which one frame never runs.
class Resample : public torch::nn::Module {
 public:
  Resample(int64_t dim, const std::string& mode, int64_t out_dim);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  bool upsample_;
  torch::nn::Conv2d conv_{nullptr};
  std::shared_ptr<Conv> time_conv_;
};

// resnets.0, attentions.0 (vae::AttentionBlock: the same module and key names), resnets.1.
class MidBlock : public torch::nn::Module {
 public:
  explicit MidBlock(int64_t dim);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::ModuleList resnets_, attentions_;
  std::shared_ptr<ResidualBlock> r0_, r1_;
  std::shared_ptr<vae::AttentionBlock> attn_;
};

// QwenImage21AvgDown3D on one frame: [B, in, H, W] -> [B, out, H/fs, W/fs]. factor_t 2 prepends a
// zero frame as the reference's F.pad does; each output channel averages its group of
// in * factor_t * fs^2 / out values of the (channel, frame, row, column) order, zeros included.
torch::Tensor avg_down(const torch::Tensor& x, int64_t out_channels, int64_t factor_t,
                       int64_t factor_s);
// QwenImage21DupUp3D(first_chunk=True) on one frame: [B, in, h, w] -> [B, out, h*fs, w*fs], the
// last of the factor_t duplicated frames (the one first_chunk keeps), gathered directly instead of
// materialising all of repeat_interleave's copies (the same values).
torch::Tensor dup_up(const torch::Tensor& x, int64_t out_channels, int64_t factor_t,
                     int64_t factor_s);

// QwenImage21ResidualDownBlock: resnets.*, optional downsampler, + avg_shortcut(x).
class DownBlock : public torch::nn::Module {
 public:
  DownBlock(int64_t in, int64_t out, int num_res_blocks, bool temporal, bool down);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  int64_t out_, factor_t_, factor_s_;
  torch::nn::ModuleList resnets_;
  std::vector<std::shared_ptr<ResidualBlock>> blocks_;
  std::shared_ptr<Resample> downsampler_;
};

// QwenImage21ResidualUpBlock: num_res_blocks + 1 resnets, optional upsampler, + avg_shortcut(x)
// (DupUp3D) when upsampling.
class UpBlock : public torch::nn::Module {
 public:
  UpBlock(int64_t in, int64_t out, int num_res_blocks, bool temporal, bool up);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  int64_t out_, factor_t_;
  torch::nn::ModuleList resnets_;
  std::vector<std::shared_ptr<ResidualBlock>> blocks_;
  std::shared_ptr<Resample> upsampler_;
};

class Encoder : public torch::nn::Module {
 public:
  explicit Encoder(const Vae21Config& c);
  torch::Tensor forward(const torch::Tensor& x);  // [B, in, H, W] -> [B, 2z, H/16, W/16]

 private:
  std::shared_ptr<Conv> conv_in_, conv_out_;
  torch::nn::ModuleList down_blocks_;
  std::vector<std::shared_ptr<DownBlock>> downs_;
  std::shared_ptr<MidBlock> mid_block_;
  std::shared_ptr<vae::RmsNorm> norm_out_;
};

class Decoder : public torch::nn::Module {
 public:
  explicit Decoder(const Vae21Config& c);
  torch::Tensor forward(const torch::Tensor& z);  // [B, z, h, w] -> [B, out, 16h, 16w], unclamped

 private:
  std::shared_ptr<Conv> conv_in_, conv_out_;
  std::shared_ptr<MidBlock> mid_block_;
  torch::nn::ModuleList up_blocks_;
  std::vector<std::shared_ptr<UpBlock>> ups_;
  std::shared_ptr<vae::RmsNorm> norm_out_;
};

}  // namespace vae21

class AutoencoderKLQwenImage21Impl : public torch::nn::Module {
 public:
  explicit AutoencoderKLQwenImage21Impl(const Vae21Config& config);

  // x: [B, in_channels, 1, H, W], H and W positive multiples of spatial_compression() (16).
  // Throws std::invalid_argument naming the expected and the given shape otherwise. mean / logvar
  // [B, z_dim, 1, H/16, W/16] (DiagonalGaussianDistribution: logvar clamped to [-30, 20]).
  VaePosterior encode(const torch::Tensor& x);
  // z: [B, z_dim, 1, h, w] (already denormalised) -> [B, out_channels, 1, 16h, 16w] in [-1, 1].
  torch::Tensor decode(const torch::Tensor& z);

  // Tiled encode/decode: diffusers' enable_tiling() path (tiled_encode / tiled_decode: tiles of
  // tile_sample_min pixels every tile_sample_stride, blended over the overlap, the decode clamped),
  // taken when `enabled` and the image is larger than one tile, or (`automatic`) above
  // auto_max_pixels: vae_should_tile's pixel rule (the 20B VAE's device-memory estimate is not
  // applied: its activation model does not describe this VAE). The reference pipeline never
  // tiles; a tiled result differs from the untiled one at the seams. Throws
  // std::invalid_argument unless tile_sample_min and tile_sample_stride are positive multiples of
  // spatial_compression() with stride <= min.
  void set_tiling(const VaeTiling& tiling);
  const VaeTiling& tiling() const { return tiling_; }
  void prepare_for_inference();  // caches the norms' gamma views (vae::RmsNorm::prepare)
  const Vae21Config& config() const { return config_; }
  torch::Dtype dtype() const;
  torch::Device device() const;

 private:
  torch::Tensor tiled_encode(const torch::Tensor& x);  // [B, in, H, W] -> [B, 2z, H/16, W/16]
  torch::Tensor tiled_decode(const torch::Tensor& z);  // [B, z, h, w] -> [B, out, 16h, 16w]

  Vae21Config config_;
  VaeTiling tiling_;
  std::shared_ptr<vae21::Encoder> encoder_;
  std::shared_ptr<vae21::Decoder> decoder_;
  std::shared_ptr<vae21::Conv> quant_conv_, post_quant_conv_;
};
TORCH_MODULE(AutoencoderKLQwenImage21);

// The pipeline's latent normalisation (QwenImage21Pipeline._encode_vae_image: (z - mean) / std)
// and its inverse before decoding (z * std + mean), with the statistics built as the pipeline
// does: torch.tensor(list) (float32) -> view [1, z, 1, 1, 1] -> .to(z's device and dtype).
// z: [B, z_dim, T, h, w]; throws std::invalid_argument otherwise.
torch::Tensor normalize_latents21(const torch::Tensor& z, const Vae21Config& config);
torch::Tensor denormalize_latents21(const torch::Tensor& z, const Vae21Config& config);

// Builds the VAE from `vae_dir` (config.json + safetensors) or a single file: the diffusers
// layout, or the original / ComfyUI one (Wan-2.2 names, conv weights [out, in, 1, k, k] with a
// temporal kernel of 1; io::open_component maps the names). Throws io::CheckpointError naming the
// file and the problem (a 20B-family VAE, missing/unexpected tensors, shapes).
AutoencoderKLQwenImage21 load_vae21(const std::string& path, torch::Dtype dtype,
                                    torch::Device device);
// The same from an opened component (io::ModelFolder::weights / io::open_component): the one
// loading path, models::load_module.
AutoencoderKLQwenImage21 load_vae21(const io::ComponentWeights& weights, torch::Dtype dtype,
                                    torch::Device device);

}  // namespace qwen::models
