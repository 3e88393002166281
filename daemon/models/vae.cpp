#include "models/vae.h"

#include <sstream>
#include <stdexcept>

#include "models/device_memory.h"
#include "models/vae_tiles.h"
#include "models/weights.h"

namespace qwen::models {

namespace vae {

Encoder::Encoder(const VaeConfig& c) {
  std::vector<int64_t> dims{c.base_dim};
  for (int m : c.dim_mult) dims.push_back(int64_t(c.base_dim) * m);
  conv_in_ = register_module("conv_in",
                             std::make_shared<CausalConv3d>(c.input_channels, dims[0], 3, 3, 1));
  down_blocks_ = register_module("down_blocks", torch::nn::ModuleList());
  int64_t out = dims[0];
  for (size_t i = 0; i + 1 < dims.size(); ++i) {
    int64_t in = dims[i];
    out = dims[i + 1];
    for (int r = 0; r < c.num_res_blocks; ++r) {
      auto block = std::make_shared<ResidualBlock>(in, out);
      down_blocks_->push_back(block);
      layers_.push_back(block);
      in = out;
    }
    if (i != c.dim_mult.size() - 1) {
      auto down = std::make_shared<Resample>(
          out, c.temperal_downsample[i] ? "downsample3d" : "downsample2d");
      down_blocks_->push_back(down);
      layers_.push_back(down);
    }
  }
  mid_block_ = register_module("mid_block", std::make_shared<MidBlock>(out));
  norm_out_ = register_module("norm_out", std::make_shared<RmsNorm>(out, 3));
  conv_out_ = register_module("conv_out",
                              std::make_shared<CausalConv3d>(out, int64_t(c.z_dim) * 2, 3, 3, 1));
}

torch::Tensor Encoder::forward(const torch::Tensor& x) {
  torch::Tensor h = conv_in_->forward(x);
  for (auto& l : layers_) h = l->forward(h);
  h = mid_block_->forward(h);
  return conv_out_->forward(torch::silu(norm_out_->forward(h)));
}

Decoder::Decoder(const VaeConfig& c) {
  std::vector<int64_t> dims{int64_t(c.base_dim) * c.dim_mult.back()};
  for (auto it = c.dim_mult.rbegin(); it != c.dim_mult.rend(); ++it)
    dims.push_back(int64_t(c.base_dim) * *it);
  std::vector<bool> temperal_upsample(c.temperal_downsample.rbegin(), c.temperal_downsample.rend());
  conv_in_ = register_module("conv_in", std::make_shared<CausalConv3d>(c.z_dim, dims[0], 3, 3, 1));
  mid_block_ = register_module("mid_block", std::make_shared<MidBlock>(dims[0]));
  up_blocks_ = register_module("up_blocks", torch::nn::ModuleList());
  int64_t out = dims[0];
  for (size_t i = 0; i + 1 < dims.size(); ++i) {
    int64_t in = dims[i];
    out = dims[i + 1];
    if (i > 0) in /= 2;
    std::string mode;
    if (i != c.dim_mult.size() - 1) mode = temperal_upsample[i] ? "upsample3d" : "upsample2d";
    auto up = std::make_shared<UpBlock>(in, out, c.num_res_blocks, mode);
    up_blocks_->push_back(up);
    ups_.push_back(up);
  }
  norm_out_ = register_module("norm_out", std::make_shared<RmsNorm>(out, 3));
  conv_out_ =
      register_module("conv_out", std::make_shared<CausalConv3d>(out, c.input_channels, 3, 3, 1));
}

torch::Tensor Decoder::forward(const torch::Tensor& z) {
  torch::Tensor h = mid_block_->forward(conv_in_->forward(z));
  for (auto& u : ups_) h = u->forward(h);
  return conv_out_->forward(torch::silu(norm_out_->forward(h)));
}

}  // namespace vae

VaePosterior VaePosterior::from_moments(const torch::Tensor& moments, int64_t z_dim) {
  VaePosterior p;
  p.mean = moments.narrow(1, 0, z_dim).unsqueeze(2);
  p.logvar = torch::clamp(moments.narrow(1, z_dim, z_dim), -30.0, 20.0).unsqueeze(2);
  return p;
}

torch::Tensor VaePosterior::sample(at::Generator generator) const {
  const torch::Tensor eps =
      torch::randn(mean.sizes(), generator,
                   torch::TensorOptions().dtype(mean.scalar_type()).device(generator.device()))
          .to(mean.device());
  return mean + torch::exp(0.5 * logvar) * eps;
}

AutoencoderKLQwenImageImpl::AutoencoderKLQwenImageImpl(const VaeConfig& config) : config_(config) {
  encoder_ = register_module("encoder", std::make_shared<vae::Encoder>(config));
  quant_conv_ = register_module("quant_conv", std::make_shared<vae::CausalConv3d>(
                                                  config.z_dim * 2, config.z_dim * 2, 1, 1, 0));
  post_quant_conv_ = register_module(
      "post_quant_conv", std::make_shared<vae::CausalConv3d>(config.z_dim, config.z_dim, 1, 1, 0));
  decoder_ = register_module("decoder", std::make_shared<vae::Decoder>(config));
  // Inference only: the torch::nn::Conv2d layers register their parameters with requires_grad.
  for (auto& p : parameters()) p.set_requires_grad(false);
}

torch::Dtype AutoencoderKLQwenImageImpl::dtype() const {
  return post_quant_conv_->weight.scalar_type();
}
torch::Device AutoencoderKLQwenImageImpl::device() const {
  return post_quant_conv_->weight.device();
}

namespace {
std::string shape_str(const torch::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}
}  // namespace

VaePosterior AutoencoderKLQwenImageImpl::encode(const torch::Tensor& x) {
  const int f = config_.spatial_compression();
  if (x.dim() != 5 || x.size(1) != config_.input_channels || x.size(2) != 1 || x.size(3) < f ||
      x.size(4) < f || x.size(3) % f != 0 || x.size(4) % f != 0) {
    throw std::invalid_argument(
        "VAE encode: expected an image tensor [B, " + std::to_string(config_.input_channels) +
        ", 1, H, W] with H and W multiples of " + std::to_string(f) + ", got " + shape_str(x));
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor x4 = x.select(2, 0).to(device(), dtype());
  const bool tiled = use_tiling(x4.size(0), x4.size(2), x4.size(3));
  const torch::Tensor h = tiled ? tiled_encode(x4) : encode_4d(x4);
  return VaePosterior::from_moments(h, config_.z_dim);
}

torch::Tensor AutoencoderKLQwenImageImpl::decode(const torch::Tensor& z) {
  if (z.dim() != 5 || z.size(1) != config_.z_dim || z.size(2) != 1 || z.size(3) < 1 ||
      z.size(4) < 1) {
    throw std::invalid_argument("VAE decode: expected latents [B, " +
                                std::to_string(config_.z_dim) + ", 1, h, w], got " + shape_str(z));
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor z4 = z.select(2, 0).to(device(), dtype());
  const int f = config_.spatial_compression();
  if (use_tiling(z4.size(0), z4.size(2) * f, z4.size(3) * f)) return tiled_decode(z4).unsqueeze(2);
  return torch::clamp(decode_4d(z4), -1.0, 1.0).unsqueeze(2);
}

int64_t vae_peak_bytes(int64_t batch, int64_t height, int64_t width, torch::Dtype dtype) {
  const int64_t per_pixel = 768 + 336 * static_cast<int64_t>(c10::elementSize(dtype));
  return batch * height * width * per_pixel * 3 / 2;
}

bool vae_should_tile(const VaeTiling& t, int64_t batch, int64_t height, int64_t width,
                     torch::Dtype dtype, std::optional<int64_t> available_bytes) {
  if (height <= t.tile_sample_min && width <= t.tile_sample_min) return false;  // one tile
  if (t.enabled) return true;
  if (!t.automatic) return false;
  if (t.auto_max_pixels > 0 && height * width > t.auto_max_pixels) return true;
  return available_bytes && vae_peak_bytes(batch, height, width, dtype) > *available_bytes;
}

bool AutoencoderKLQwenImageImpl::use_tiling(int64_t batch, int64_t height, int64_t width) const {
  // Ask the device only when the size alone does not decide.
  if (vae_should_tile(tiling_, batch, height, width, dtype(), std::nullopt)) return true;
  if (!tiling_.automatic || tiling_.enabled || !device().is_cuda()) return false;
  return vae_should_tile(tiling_, batch, height, width, dtype(), device_available_bytes(device()));
}

void AutoencoderKLQwenImageImpl::prepare_for_inference() {
  for (const auto& m : modules(/*include_self=*/false)) {
    if (auto conv = std::dynamic_pointer_cast<vae::CausalConv3d>(m))
      conv->prepare();
    else if (auto norm = std::dynamic_pointer_cast<vae::RmsNorm>(m))
      norm->prepare();
  }
}

torch::Tensor AutoencoderKLQwenImageImpl::encode_4d(const torch::Tensor& x) {
  return quant_conv_->forward(encoder_->forward(x));
}

torch::Tensor AutoencoderKLQwenImageImpl::decode_4d(const torch::Tensor& z) {
  return decoder_->forward(post_quant_conv_->forward(z));
}

torch::Tensor AutoencoderKLQwenImageImpl::tiled_encode(const torch::Tensor& x) {
  const int f = config_.spatial_compression();
  const int64_t h = x.size(2), w = x.size(3);
  const int64_t tmin = tiling_.tile_sample_min, stride = tiling_.tile_sample_stride;
  const int64_t lat_min = tmin / f, lat_stride = stride / f;
  std::vector<std::vector<torch::Tensor>> rows;
  for (int64_t i = 0; i < h; i += stride) {
    std::vector<torch::Tensor> row;
    for (int64_t j = 0; j < w; j += stride) {
      const torch::Tensor tile =
          x.narrow(2, i, std::min(tmin, h - i)).narrow(3, j, std::min(tmin, w - j));
      row.push_back(encode_4d(tile));
    }
    rows.push_back(std::move(row));
  }
  return vae::stitch(rows, lat_min - lat_stride, lat_stride, h / f, w / f);
}

torch::Tensor AutoencoderKLQwenImageImpl::tiled_decode(const torch::Tensor& z) {
  const int f = config_.spatial_compression();
  const int64_t h = z.size(2), w = z.size(3);
  const int64_t tmin = tiling_.tile_sample_min, stride = tiling_.tile_sample_stride;
  const int64_t lat_min = tmin / f, lat_stride = stride / f;
  std::vector<std::vector<torch::Tensor>> rows;
  for (int64_t i = 0; i < h; i += lat_stride) {
    std::vector<torch::Tensor> row;
    for (int64_t j = 0; j < w; j += lat_stride) {
      const torch::Tensor tile =
          z.narrow(2, i, std::min(lat_min, h - i)).narrow(3, j, std::min(lat_min, w - j));
      row.push_back(decode_4d(tile));
    }
    rows.push_back(std::move(row));
  }
  return vae::stitch(rows, tmin - stride, stride, h * f, w * f);
}

AutoencoderKLQwenImage load_vae(const std::string& vae_dir, torch::Dtype dtype,
                                torch::Device device) {
  return load_vae(io::open_component(vae_dir, io::ComponentKind::Vae), dtype, device);
}

AutoencoderKLQwenImage load_vae(const io::ComponentWeights& weights, torch::Dtype dtype,
                                torch::Device device) {
  const VaeConfig config =
      VaeConfig::from_json_text(weights.config.dump(), weights.source + " (configuration)");
  AutoencoderKLQwenImage model(config);
  load_module(*model, weights, "vae", dtype, device);
  model->eval();
  model->prepare_for_inference();
  return model;
}

}  // namespace qwen::models
