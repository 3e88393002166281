#include "models/vae_blocks.h"

#include <cmath>

namespace qwen::models::vae {

CausalConv3d::CausalConv3d(int64_t in, int64_t out, int64_t kt, int64_t k, int64_t padding)
    : padding_(padding) {
  weight = register_parameter("weight", torch::empty({out, in, kt, k, k}), /*requires_grad=*/false);
  bias = register_parameter("bias", torch::zeros({out}), /*requires_grad=*/false);
}

torch::Tensor with_contiguous_taps(const torch::Tensor& weight) {
  return weight.permute({2, 0, 1, 3, 4}).contiguous().permute({1, 2, 0, 3, 4});
}

void CausalConv3d::prepare() {
  torch::NoGradGuard no_grad;
  const int64_t last = weight.size(2) - 1;
  if (!weight.select(2, last).is_contiguous()) {
    if (weight.device().is_cpu()) {
      kernel_ = weight.select(2, last).contiguous();
      prepared_for_ = weight.data_ptr();
      return;
    }
    weight.set_data(with_contiguous_taps(weight));
  }
  kernel_ = weight.select(2, last);
  prepared_for_ = weight.data_ptr();
}

torch::Tensor CausalConv3d::kernel() const {
  if (kernel_.defined() && weight.data_ptr() == prepared_for_) return kernel_;
  return weight.select(2, weight.size(2) - 1);
}

torch::Tensor CausalConv3d::forward(const torch::Tensor& x) {
  // Causal padding puts kT-1 zero frames in front of the single frame: only the last tap sees data.
  const torch::Tensor w = kernel();
  if (w.size(2) == 1 && w.size(3) == 1) {
    // 1x1 conv as a channel matmul.
    return torch::conv2d(x, w, bias);
  }
  return torch::conv2d(x, w, bias, /*stride=*/1, /*padding=*/padding_);
}

RmsNorm::RmsNorm(int64_t dim, int gamma_dims) : scale_(std::sqrt(double(dim))) {
  std::vector<int64_t> shape{dim};
  for (int i = 0; i < gamma_dims; ++i) shape.push_back(1);
  gamma = register_parameter("gamma", torch::ones(shape), /*requires_grad=*/false);
}

torch::Tensor RmsNorm::forward(const torch::Tensor& x) {
  const bool low = x.scalar_type() == torch::kBFloat16 || x.scalar_type() == torch::kHalf;
  const torch::Tensor xf = low ? x.to(torch::kFloat) : x;
  torch::Tensor n = xf / xf.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12);
  if (low) n = n.to(x.scalar_type());
  // gamma is [C,1,1,1] (written for 5-D inputs) or [C,1,1]; on our 4-D tensors it is [C,1,1].
  const torch::Tensor& g = prepared_for_ && gamma.data_ptr() == prepared_for_
                               ? gamma3_
                               : gamma.view({gamma.size(0), 1, 1});
  return n * scale_ * g;
}

void RmsNorm::prepare() {
  gamma3_ = gamma.view({gamma.size(0), 1, 1});
  prepared_for_ = gamma.data_ptr();
}

ResidualBlock::ResidualBlock(int64_t in, int64_t out) {
  norm1_ = register_module("norm1", std::make_shared<RmsNorm>(in, 3));
  conv1_ = register_module("conv1", std::make_shared<CausalConv3d>(in, out, 3, 3, 1));
  norm2_ = register_module("norm2", std::make_shared<RmsNorm>(out, 3));
  conv2_ = register_module("conv2", std::make_shared<CausalConv3d>(out, out, 3, 3, 1));
  if (in != out) {
    shortcut_ = register_module("conv_shortcut", std::make_shared<CausalConv3d>(in, out, 1, 1, 0));
  }
}

torch::Tensor ResidualBlock::forward(const torch::Tensor& x) {
  const torch::Tensor h = shortcut_ ? shortcut_->forward(x) : x;
  torch::Tensor y = conv1_->forward(torch::silu(norm1_->forward(x)));
  y = conv2_->forward(torch::silu(norm2_->forward(y)));
  return y + h;
}

AttentionBlock::AttentionBlock(int64_t dim) {
  norm_ = register_module("norm", std::make_shared<RmsNorm>(dim, 2));
  to_qkv_ = register_module("to_qkv", torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, dim * 3, 1)));
  proj_ = register_module("proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, dim, 1)));
}

torch::Tensor AttentionBlock::forward(const torch::Tensor& x) {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  torch::Tensor qkv = to_qkv_->forward(norm_->forward(x));
  qkv = qkv.reshape({b, 1, c * 3, h * w}).permute({0, 1, 3, 2}).contiguous();
  auto parts = qkv.chunk(3, -1);
  torch::Tensor o = at::scaled_dot_product_attention(parts[0], parts[1], parts[2]);
  o = o.squeeze(1).permute({0, 2, 1}).reshape({b, c, h, w});
  return proj_->forward(o) + x;
}

Resample::Resample(int64_t dim, const std::string& mode) {
  upsample_ = mode == "upsample2d" || mode == "upsample3d";
  if (!upsample_ && mode != "downsample2d" && mode != "downsample3d") {
    throw std::invalid_argument("VAE resample mode '" + mode + "' is not supported");
  }
  auto holder = register_module("resample", std::make_shared<torch::nn::Module>());
  if (upsample_) {
    conv_ = holder->register_module(
        "1", torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, dim / 2, 3).padding(1)));
  } else {
    conv_ = holder->register_module(
        "1", torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, dim, 3).stride(2)));
  }
  if (mode == "upsample3d") {
    time_conv_ =
        register_module("time_conv", std::make_shared<CausalConv3d>(dim, dim * 2, 3, 1, 0));
  } else if (mode == "downsample3d") {
    time_conv_ = register_module("time_conv", std::make_shared<CausalConv3d>(dim, dim, 3, 1, 0));
  }
}

torch::Tensor Resample::forward(const torch::Tensor& x) {
  if (upsample_) {
    // nearest-exact x2 in float32 (QwenImageUpsample), then back to the input dtype.
    const torch::Tensor up = at::_upsample_nearest_exact2d(
        x.to(torch::kFloat), {x.size(2) * 2, x.size(3) * 2}, 2.0, 2.0);
    return conv_->forward(up.to(x.scalar_type()));
  }
  return conv_->forward(torch::constant_pad_nd(x, {0, 1, 0, 1}, 0));
}

MidBlock::MidBlock(int64_t dim) {
  resnets_ = register_module("resnets", torch::nn::ModuleList());
  attentions_ = register_module("attentions", torch::nn::ModuleList());
  for (int i = 0; i < 2; ++i) {
    auto r = std::make_shared<ResidualBlock>(dim, dim);
    resnets_->push_back(r);
    resnet_layers_.push_back(r);
  }
  auto a = std::make_shared<AttentionBlock>(dim);
  attentions_->push_back(a);
  attention_layers_.push_back(a);
}

torch::Tensor MidBlock::forward(const torch::Tensor& x) {
  torch::Tensor y = resnet_layers_[0]->forward(x);
  for (size_t i = 0; i < attention_layers_.size(); ++i) {
    y = attention_layers_[i]->forward(y);
    y = resnet_layers_[i + 1]->forward(y);
  }
  return y;
}

UpBlock::UpBlock(int64_t in, int64_t out, int num_res_blocks, const std::string& upsample_mode) {
  resnets_ = register_module("resnets", torch::nn::ModuleList());
  int64_t cur = in;
  for (int i = 0; i < num_res_blocks + 1; ++i) {
    auto r = std::make_shared<ResidualBlock>(cur, out);
    resnets_->push_back(r);
    layers_.push_back(r);
    cur = out;
  }
  if (!upsample_mode.empty()) {
    upsamplers_ = register_module("upsamplers", torch::nn::ModuleList());
    auto u = std::make_shared<Resample>(out, upsample_mode);
    upsamplers_->push_back(u);
    layers_.push_back(u);
  }
}

torch::Tensor UpBlock::forward(const torch::Tensor& x) {
  torch::Tensor y = x;
  for (auto& l : layers_) y = l->forward(y);
  return y;
}

}  // namespace qwen::models::vae
