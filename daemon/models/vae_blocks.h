// Building blocks of AutoencoderKLQwenImage (the Wan-2.1-derived VAE) for single frames.
//
// The reference runs 3-D causal convolutions with a time cache; for images (T = 1, empty cache)
// every 3x3x3 causal conv reduces to a 2-D conv with the LAST temporal tap W[:, :, 2] (the two
// earlier taps only ever see zero padding), 1x1x1 convs to per-pixel linear maps, and the
// time_conv of the temporal resamplers is never run. These modules therefore work on 4-D
// [B, C, H, W] tensors while registering the checkpoint's 5-D parameters under the diffusers
// names, so models::load_module fills them directly.
#pragma once

#include <torch/torch.h>

#include <string>

namespace qwen::models::vae {

// A layer of the encoder's down_blocks / the mid and up blocks: 4-D in, 4-D out.
class Layer : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
};

// The values of a 5-D conv weight [out, in, kT, kH, kW] stored as [kT, out, in, kH, kW] (returned
// as the 5-D view of that storage): every temporal tap select(2, t) is then contiguous.
torch::Tensor with_contiguous_taps(const torch::Tensor& weight);

// QwenImageCausalConv3d evaluated on one frame: parameters `weight` [out, in, kT, kH, kW] and
// `bias` [out]; spatial padding kH/2 (3x3x3) or 0 (1x1x1).
class CausalConv3d : public torch::nn::Module {
 public:
  CausalConv3d(int64_t in, int64_t out, int64_t kt, int64_t k, int64_t padding);
  torch::Tensor forward(const torch::Tensor& x);
  // Makes the 2-D kernel (the last temporal tap) a contiguous tensor once, so that forward() does
  // not slice the 5-D weight and have the convolution copy the strided slice on every call. On
  // the CPU the tap is copied once (the 5-D parameter keeps aliasing the checkpoint mapping; its
  // other taps are never read again); on other devices the parameter itself is re-laid out
  // [kT, out, in, kH, kW] underneath its 5-D view, so the tap costs no memory. Call again after
  // the weight changes (forward() falls back to slicing when it sees another weight).
  void prepare();
  // The kernel forward() uses: the prepared one, or the slice of the current weight.
  torch::Tensor kernel() const;
  torch::Tensor weight, bias;

 private:
  int64_t padding_;
  torch::Tensor kernel_;                // prepared 2-D kernel
  const void* prepared_for_ = nullptr;  // weight.data_ptr() when it was prepared
};

// QwenImageRMS_norm: x / max(||x||_2 over channels, 1e-12) * sqrt(C) * gamma. For bf16/fp16 the
// normalisation runs in float32 and is cast back before the two multiplies (current diffusers).
class RmsNorm : public torch::nn::Module {
 public:
  // gamma_dims: 3 for [C,1,1,1] (residual blocks, norm_out), 2 for [C,1,1] (attention).
  RmsNorm(int64_t dim, int gamma_dims);
  torch::Tensor forward(const torch::Tensor& x);
  void prepare();  // keeps the [C, 1, 1] view of gamma (see CausalConv3d::prepare)
  torch::Tensor gamma;

 private:
  double scale_;
  torch::Tensor gamma3_;
  const void* prepared_for_ = nullptr;
};

class ResidualBlock : public Layer {
 public:
  ResidualBlock(int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x) override;

 private:
  std::shared_ptr<RmsNorm> norm1_, norm2_;
  std::shared_ptr<CausalConv3d> conv1_, conv2_, shortcut_;  // shortcut_ null when in == out
};

// Single-head spatial self-attention over all H*W positions (scale 1/sqrt(C)).
class AttentionBlock : public Layer {
 public:
  explicit AttentionBlock(int64_t dim);
  torch::Tensor forward(const torch::Tensor& x) override;

 private:
  std::shared_ptr<RmsNorm> norm_;
  torch::nn::Conv2d to_qkv_{nullptr}, proj_{nullptr};
};

// QwenImageResample: "downsample2d"/"downsample3d" (zero pad right/bottom by 1, 3x3 stride-2
// conv), "upsample2d"/"upsample3d" (nearest-exact x2 in float32, 3x3 conv dim -> dim/2). The 3d
// variants also register `time_conv` (unused for single frames).
class Resample : public Layer {
 public:
  Resample(int64_t dim, const std::string& mode);
  torch::Tensor forward(const torch::Tensor& x) override;
  bool upsample() const { return upsample_; }

 private:
  bool upsample_;
  torch::nn::Conv2d conv_{nullptr};  // registered as resample.1
  std::shared_ptr<CausalConv3d> time_conv_;
};

// resnets.0, attentions.0, resnets.1
class MidBlock : public Layer {
 public:
  explicit MidBlock(int64_t dim);
  torch::Tensor forward(const torch::Tensor& x) override;

 private:
  torch::nn::ModuleList resnets_, attentions_;
  std::vector<std::shared_ptr<Layer>> resnet_layers_, attention_layers_;
};

// Decoder up block: resnets.0..n, optional upsamplers.0.
class UpBlock : public Layer {
 public:
  UpBlock(int64_t in, int64_t out, int num_res_blocks, const std::string& upsample_mode);
  torch::Tensor forward(const torch::Tensor& x) override;

 private:
  torch::nn::ModuleList resnets_, upsamplers_;
  std::vector<std::shared_ptr<Layer>> layers_;
};

}  // namespace qwen::models::vae
