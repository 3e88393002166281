#include "models/vae21.h"

#include <sys/stat.h>

#include <sstream>
#include <stdexcept>

#include "models/vae_tiles.h"
#include "models/weights.h"

namespace qwen::models {

namespace vae21 {

Conv::Conv(int64_t in, int64_t out, int64_t k, int64_t padding) : padding_(padding) {
  weight = register_parameter("weight", torch::empty({out, in, k, k}), /*requires_grad=*/false);
  bias = register_parameter("bias", torch::zeros({out}), /*requires_grad=*/false);
}

torch::Tensor Conv::forward(const torch::Tensor& x) {
  return torch::conv2d(x, weight, bias, /*stride=*/1, /*padding=*/padding_);
}

ResidualBlock::ResidualBlock(int64_t in, int64_t out) {
  norm1_ = register_module("norm1", std::make_shared<vae::RmsNorm>(in, 3));
  conv1_ = register_module("conv1", std::make_shared<Conv>(in, out, 3, 1));
  norm2_ = register_module("norm2", std::make_shared<vae::RmsNorm>(out, 3));
  conv2_ = register_module("conv2", std::make_shared<Conv>(out, out, 3, 1));
  if (in != out)
    shortcut_ = register_module("conv_shortcut", std::make_shared<Conv>(in, out, 1, 0));
}

torch::Tensor ResidualBlock::forward(const torch::Tensor& x) {
  const torch::Tensor h = shortcut_ ? shortcut_->forward(x) : x;
  torch::Tensor y = conv1_->forward(torch::silu(norm1_->forward(x)));
  y = conv2_->forward(torch::silu(norm2_->forward(y)));  // (dropout: identity at inference)
  return y.add_(h);  // y is the conv's fresh output: adding in place saves a full-size buffer
}

Resample::Resample(int64_t dim, const std::string& mode, int64_t out_dim) {
  upsample_ = mode == "upsample2d" || mode == "upsample3d";
  if (!upsample_ && mode != "downsample2d" && mode != "downsample3d")
    throw std::invalid_argument("Qwen-Image-2.1 VAE: resample mode '" + mode +
                                "' is not supported");
  auto holder = register_module("resample", std::make_shared<torch::nn::Module>());
  if (upsample_)
    conv_ = holder->register_module(
        "1", torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, out_dim, 3).padding(1)));
  else
    conv_ = holder->register_module(
        "1", torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, dim, 3).stride(2)));
  if (mode == "upsample3d")
    time_conv_ = register_module("time_conv", std::make_shared<Conv>(dim, dim * 2, 1, 0));
  else if (mode == "downsample3d")
    time_conv_ = register_module("time_conv", std::make_shared<Conv>(dim, dim, 1, 0));
}

torch::Tensor Resample::forward(const torch::Tensor& x) {
  if (upsample_) {
    // QwenImage21Upsample runs nearest-exact x2 on x.float() and casts back: a pure copy of
    // values, so doing it in x's dtype gives the same tensor without the float32 round trip.
    return conv_->forward(
        at::_upsample_nearest_exact2d(x, {x.size(2) * 2, x.size(3) * 2}, 2.0, 2.0));
  }
  return conv_->forward(torch::constant_pad_nd(x, {0, 1, 0, 1}, 0));  // ZeroPad2d((0, 1, 0, 1))
}

MidBlock::MidBlock(int64_t dim) {
  resnets_ = register_module("resnets", torch::nn::ModuleList());
  attentions_ = register_module("attentions", torch::nn::ModuleList());
  r0_ = std::make_shared<ResidualBlock>(dim, dim);
  attn_ = std::make_shared<vae::AttentionBlock>(dim);
  r1_ = std::make_shared<ResidualBlock>(dim, dim);
  resnets_->push_back(r0_);
  resnets_->push_back(r1_);
  attentions_->push_back(attn_);
}

torch::Tensor MidBlock::forward(const torch::Tensor& x) {
  return r1_->forward(attn_->forward(r0_->forward(x)));
}

torch::Tensor avg_down(const torch::Tensor& x, int64_t out_channels, int64_t factor_t,
                       int64_t factor_s) {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t group = c * factor_t * factor_s * factor_s / out_channels;
  // [B, C, T=1, H, W]; F.pad(x, (0, 0, 0, 0, pad_t, 0)) puts factor_t - 1 zero frames in front.
  torch::Tensor x5 = x.unsqueeze(2);
  if (factor_t > 1) {
    std::vector<int64_t> zshape{b, c, factor_t - 1, h, w};
    x5 = torch::cat({torch::zeros(zshape, x.options()), x5}, 2);
  }
  // view(B, C, T/ft = 1, ft, H/fs, fs, W/fs, fs).permute(0, 1, 3, 5, 7, 2, 4, 6)
  torch::Tensor v = x5.view({b, c, 1, factor_t, h / factor_s, factor_s, w / factor_s, factor_s})
                        .permute({0, 1, 3, 5, 7, 2, 4, 6})
                        .contiguous();
  return v.view({b, out_channels, group, h / factor_s, w / factor_s}).mean(2);
}

namespace {
// dup_up's values as [B, out, h, fs, w, fs] (a permuted view of the gathered channels): output
// pixel (i * fs + a, j * fs + b) of channel o is element [o, i, a, j, b].
torch::Tensor dup_up_6d(const torch::Tensor& x, int64_t out_channels, int64_t factor_t,
                        int64_t factor_s) {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t factor = factor_t * factor_s * factor_s;
  const int64_t repeats = out_channels * factor / c;
  // repeat_interleave(repeats, dim=1) -> channel j holds x[j / repeats]; viewed as
  // (out, ft, fs, fs) and permuted to [B, out, T*ft, H*fs, W*fs]; first_chunk keeps frame ft - 1.
  const int64_t s2 = factor_s * factor_s;
  std::vector<int64_t> idx(size_t(out_channels * s2));
  for (int64_t o = 0; o < out_channels; ++o)
    for (int64_t k = 0; k < s2; ++k)
      idx[size_t(o * s2 + k)] = (o * factor + (factor_t - 1) * s2 + k) / repeats;
  const torch::Tensor index = torch::tensor(idx, torch::kLong).to(x.device());
  return x.index_select(1, index)
      .view({b, out_channels, factor_s, factor_s, h, w})
      .permute({0, 1, 4, 2, 5, 3});
}
}  // namespace

torch::Tensor dup_up(const torch::Tensor& x, int64_t out_channels, int64_t factor_t,
                     int64_t factor_s) {
  return dup_up_6d(x, out_channels, factor_t, factor_s)
      .reshape({x.size(0), out_channels, x.size(2) * factor_s, x.size(3) * factor_s});
}

DownBlock::DownBlock(int64_t in, int64_t out, int num_res_blocks, bool temporal, bool down)
    : out_(out), factor_t_(temporal ? 2 : 1), factor_s_(down ? 2 : 1) {
  const int64_t factor = factor_t_ * factor_s_ * factor_s_;
  if (in * factor % out != 0)
    throw std::invalid_argument("Qwen-Image-2.1 VAE: AvgDown3D needs in_channels (" +
                                std::to_string(in) + ") x factor (" + std::to_string(factor) +
                                ") divisible by out_channels (" + std::to_string(out) + ")");
  resnets_ = register_module("resnets", torch::nn::ModuleList());
  for (int i = 0; i < num_res_blocks; ++i) {
    auto r = std::make_shared<ResidualBlock>(i == 0 ? in : out, out);
    resnets_->push_back(r);
    blocks_.push_back(r);
  }
  if (down)
    downsampler_ = register_module(
        "downsampler",
        std::make_shared<Resample>(out, temporal ? "downsample3d" : "downsample2d", out));
}

torch::Tensor DownBlock::forward(const torch::Tensor& x) {
  torch::Tensor y = x;
  for (auto& r : blocks_) y = r->forward(y);
  if (downsampler_) y = downsampler_->forward(y);
  return y.add_(avg_down(x, out_, factor_t_, factor_s_));
}

UpBlock::UpBlock(int64_t in, int64_t out, int num_res_blocks, bool temporal, bool up)
    : out_(out), factor_t_(temporal ? 2 : 1) {
  if (up && out * factor_t_ * 4 % in != 0)
    throw std::invalid_argument(
        "Qwen-Image-2.1 VAE: DupUp3D needs out_channels (" + std::to_string(out) + ") x factor (" +
        std::to_string(factor_t_ * 4) + ") divisible by in_channels (" + std::to_string(in) + ")");
  resnets_ = register_module("resnets", torch::nn::ModuleList());
  for (int i = 0; i < num_res_blocks + 1; ++i) {
    auto r = std::make_shared<ResidualBlock>(i == 0 ? in : out, out);
    resnets_->push_back(r);
    blocks_.push_back(r);
  }
  if (up)
    upsampler_ = register_module(
        "upsampler", std::make_shared<Resample>(out, temporal ? "upsample3d" : "upsample2d", out));
}

torch::Tensor UpBlock::forward(const torch::Tensor& x) {
  torch::Tensor y = x;
  for (auto& r : blocks_) y = r->forward(y);
  if (!upsampler_) return y;
  y = upsampler_->forward(y);
  if (!y.is_contiguous()) return y.add_(dup_up(x, out_, factor_t_, 2));
  // Added through a [B, out, h, 2, w, 2] view of the output: the shortcut's values are never laid
  // out at full resolution (one full-size buffer less than dup_up(); the same sums).
  y.view({y.size(0), out_, x.size(2), 2, x.size(3), 2}).add_(dup_up_6d(x, out_, factor_t_, 2));
  return y;
}

Encoder::Encoder(const Vae21Config& c) {
  std::vector<int64_t> dims{c.base_dim};
  for (int m : c.dim_mult) dims.push_back(int64_t(c.base_dim) * m);
  conv_in_ = register_module("conv_in", std::make_shared<Conv>(c.in_channels, dims[0], 3, 1));
  down_blocks_ = register_module("down_blocks", torch::nn::ModuleList());
  const size_t n = c.dim_mult.size();
  for (size_t i = 0; i < n; ++i) {
    const bool last = i == n - 1;
    auto d = std::make_shared<DownBlock>(dims[i], dims[i + 1], c.num_res_blocks,
                                         !last && c.temperal_downsample[i], !last);
    down_blocks_->push_back(d);
    downs_.push_back(d);
  }
  const int64_t out = dims.back();
  mid_block_ = register_module("mid_block", std::make_shared<MidBlock>(out));
  norm_out_ = register_module("norm_out", std::make_shared<vae::RmsNorm>(out, 3));
  conv_out_ = register_module("conv_out", std::make_shared<Conv>(out, int64_t(c.z_dim) * 2, 3, 1));
}

torch::Tensor Encoder::forward(const torch::Tensor& x) {
  torch::Tensor h = conv_in_->forward(x);
  for (auto& d : downs_) h = d->forward(h);
  h = mid_block_->forward(h);
  return conv_out_->forward(torch::silu(norm_out_->forward(h)));
}

Decoder::Decoder(const Vae21Config& c) {
  const int64_t base = c.decoder_base_dim;
  std::vector<int64_t> dims{base * c.dim_mult.back()};
  for (auto it = c.dim_mult.rbegin(); it != c.dim_mult.rend(); ++it) dims.push_back(base * *it);
  const std::vector<bool> temperal_upsample(c.temperal_downsample.rbegin(),
                                            c.temperal_downsample.rend());
  conv_in_ = register_module("conv_in", std::make_shared<Conv>(c.z_dim, dims[0], 3, 1));
  mid_block_ = register_module("mid_block", std::make_shared<MidBlock>(dims[0]));
  up_blocks_ = register_module("up_blocks", torch::nn::ModuleList());
  const size_t n = c.dim_mult.size();
  for (size_t i = 0; i < n; ++i) {
    const bool up = i != n - 1;
    auto u = std::make_shared<UpBlock>(dims[i], dims[i + 1], c.num_res_blocks,
                                       up && temperal_upsample[i], up);
    up_blocks_->push_back(u);
    ups_.push_back(u);
  }
  const int64_t out = dims.back();
  norm_out_ = register_module("norm_out", std::make_shared<vae::RmsNorm>(out, 3));
  conv_out_ = register_module("conv_out", std::make_shared<Conv>(out, c.out_channels, 3, 1));
}

torch::Tensor Decoder::forward(const torch::Tensor& z) {
  torch::Tensor h = mid_block_->forward(conv_in_->forward(z));
  for (auto& u : ups_) h = u->forward(h);
  return conv_out_->forward(torch::silu(norm_out_->forward(h)));
}

}  // namespace vae21

AutoencoderKLQwenImage21Impl::AutoencoderKLQwenImage21Impl(const Vae21Config& config)
    : config_(config) {
  encoder_ = register_module("encoder", std::make_shared<vae21::Encoder>(config));
  quant_conv_ = register_module(
      "quant_conv", std::make_shared<vae21::Conv>(config.z_dim * 2, config.z_dim * 2, 1, 0));
  post_quant_conv_ = register_module(
      "post_quant_conv", std::make_shared<vae21::Conv>(config.z_dim, config.z_dim, 1, 0));
  decoder_ = register_module("decoder", std::make_shared<vae21::Decoder>(config));
  for (auto& p : parameters()) p.set_requires_grad(false);  // inference only
}

torch::Dtype AutoencoderKLQwenImage21Impl::dtype() const {
  return post_quant_conv_->weight.scalar_type();
}
torch::Device AutoencoderKLQwenImage21Impl::device() const {
  return post_quant_conv_->weight.device();
}

void AutoencoderKLQwenImage21Impl::prepare_for_inference() {
  for (const auto& m : modules(/*include_self=*/false))
    if (auto norm = std::dynamic_pointer_cast<vae::RmsNorm>(m)) norm->prepare();
}

namespace {
std::string shape_str(const torch::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}
}  // namespace

VaePosterior AutoencoderKLQwenImage21Impl::encode(const torch::Tensor& x) {
  const int f = config_.spatial_compression();
  if (x.dim() != 5 || x.size(1) != config_.in_channels || x.size(2) != 1 || x.size(3) < f ||
      x.size(4) < f || x.size(3) % f != 0 || x.size(4) % f != 0) {
    throw std::invalid_argument(
        "Qwen-Image-2.1 VAE encode: expected an image tensor [B, " +
        std::to_string(config_.in_channels) + " (RGBA), 1, H, W] with H and W multiples of " +
        std::to_string(f) + ", got " + shape_str(x) +
        (x.dim() == 5 && x.size(1) != config_.in_channels && x.size(1) == 3
             ? " (an RGB image: add an alpha channel, e.g. fully opaque = 1)"
             : ""));
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor x4 = x.select(2, 0).to(device(), dtype());
  const torch::Tensor h =
      vae_should_tile(tiling_, x4.size(0), x4.size(2), x4.size(3), dtype(), std::nullopt)
          ? tiled_encode(x4)
          : quant_conv_->forward(encoder_->forward(x4));
  return VaePosterior::from_moments(h, config_.z_dim);
}

torch::Tensor AutoencoderKLQwenImage21Impl::decode(const torch::Tensor& z) {
  if (z.dim() != 5 || z.size(1) != config_.z_dim || z.size(2) != 1 || z.size(3) < 1 ||
      z.size(4) < 1) {
    throw std::invalid_argument("Qwen-Image-2.1 VAE decode: expected latents [B, " +
                                std::to_string(config_.z_dim) + ", 1, h, w], got " + shape_str(z));
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor z4 = z.select(2, 0).to(device(), dtype());
  const int f = config_.spatial_compression();
  const torch::Tensor out =
      vae_should_tile(tiling_, z4.size(0), z4.size(2) * f, z4.size(3) * f, dtype(), std::nullopt)
          ? tiled_decode(z4)
          : decoder_->forward(post_quant_conv_->forward(z4));
  return torch::clamp(out, -1.0, 1.0).unsqueeze(2);
}

void AutoencoderKLQwenImage21Impl::set_tiling(const VaeTiling& tiling) {
  const int f = config_.spatial_compression();
  if (tiling.tile_sample_min <= 0 || tiling.tile_sample_stride <= 0 ||
      tiling.tile_sample_min % f != 0 || tiling.tile_sample_stride % f != 0 ||
      tiling.tile_sample_stride > tiling.tile_sample_min)
    throw std::invalid_argument(
        "Qwen-Image-2.1 VAE tiling: tile size " + std::to_string(tiling.tile_sample_min) +
        " and stride " + std::to_string(tiling.tile_sample_stride) +
        " must be positive multiples of " + std::to_string(f) + " with stride <= size");
  tiling_ = tiling;
}

// AutoencoderKLQwenImage21.tiled_encode: tiles of tile_sample_min pixels every
// tile_sample_stride (edge tiles smaller), encoder + quant_conv each, blended over
// (min - stride) / 16 latents, each keeping stride / 16.
torch::Tensor AutoencoderKLQwenImage21Impl::tiled_encode(const torch::Tensor& x) {
  const int f = config_.spatial_compression();
  const int64_t h = x.size(2), w = x.size(3);
  const int64_t tmin = tiling_.tile_sample_min, stride = tiling_.tile_sample_stride;
  std::vector<std::vector<torch::Tensor>> rows;
  for (int64_t i = 0; i < h; i += stride) {
    std::vector<torch::Tensor> row;
    for (int64_t j = 0; j < w; j += stride) {
      const torch::Tensor tile =
          x.narrow(2, i, std::min(tmin, h - i)).narrow(3, j, std::min(tmin, w - j));
      row.push_back(quant_conv_->forward(encoder_->forward(tile)));
    }
    rows.push_back(std::move(row));
  }
  return vae::stitch(rows, tmin / f - stride / f, stride / f, h / f, w / f);
}

// AutoencoderKLQwenImage21.tiled_decode: latent tiles of tile_sample_min / 16 every
// tile_sample_stride / 16, post_quant_conv + decoder each, blended over (min - stride) pixels,
// each keeping stride (the caller clamps, as the reference does after stitching).
torch::Tensor AutoencoderKLQwenImage21Impl::tiled_decode(const torch::Tensor& z) {
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
      row.push_back(decoder_->forward(post_quant_conv_->forward(tile)));
    }
    rows.push_back(std::move(row));
  }
  return vae::stitch(rows, tmin - stride, stride, h * f, w * f);
}

namespace {
void check_latents(const torch::Tensor& z, const Vae21Config& config, const char* what) {
  if (z.dim() != 5 || z.size(1) != config.z_dim) {
    std::ostringstream os;
    os << what << ": expected latents [B, " << config.z_dim << ", T, h, w], got " << z.sizes();
    throw std::invalid_argument(os.str());
  }
}
torch::Tensor stats(const std::vector<double>& v, const torch::Tensor& like) {
  std::vector<float> f(v.begin(), v.end());  // torch.tensor(list of floats) is float32
  return torch::tensor(f)
      .view({1, int64_t(f.size()), 1, 1, 1})
      .to(like.device(), like.scalar_type());
}
}  // namespace

torch::Tensor normalize_latents21(const torch::Tensor& z, const Vae21Config& config) {
  check_latents(z, config, "normalize_latents21");
  return (z - stats(config.latents_mean, z)) / stats(config.latents_std, z);
}

torch::Tensor denormalize_latents21(const torch::Tensor& z, const Vae21Config& config) {
  check_latents(z, config, "denormalize_latents21");
  return z * stats(config.latents_std, z) + stats(config.latents_mean, z);
}

AutoencoderKLQwenImage21 load_vae21(const std::string& path, torch::Dtype dtype,
                                    torch::Device device) {
  return load_vae21(io::open_component(path, io::ComponentKind::Vae), dtype, device);
}

AutoencoderKLQwenImage21 load_vae21(const io::ComponentWeights& weights, torch::Dtype dtype,
                                    torch::Device device) {
  // Errors name the folder's config.json, or say that the file's configuration came from its
  // tensor shapes (a single file has no config.json of its own: io::open_component).
  struct stat st;
  const bool folder = ::stat(weights.source.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  const std::string label = folder ? weights.source + "/config.json"
                                   : weights.source + " (configuration from the tensor shapes)";
  const auto cls = weights.config.find("_class_name");
  if (cls != weights.config.end() && cls->is_string() &&
      cls->get<std::string>() == "AutoencoderKLQwenImage")
    throw io::CheckpointError(weights.source +
                              ": this is the Qwen-Image (20B family) VAE, AutoencoderKLQwenImage; "
                              "Qwen-Image-2.1 needs its RGBA VAE, AutoencoderKLQwenImage21");
  const Vae21Config config = Vae21Config::from_json_text(weights.config.dump(), label);
  AutoencoderKLQwenImage21 model(config);
  // Original / ComfyUI files store the convolutions as 3-D kernels with a temporal size of 1
  // ([out, in, 1, k, k]), and time_conv with whatever temporal size it was trained with: those
  // parameters take the stored shape for loading, and the 2-D ones are viewed back as [out, in,
  // k, k] (the same values: squeezing a size-1 axis). time_conv is never run on one frame.
  std::vector<torch::Tensor> squeeze;
  for (auto& item : model->named_parameters()) {
    const io::TensorFormat* f = weights.format.find(item.key());
    torch::Tensor& p = item.value();
    if (!f || f->shape.size() != 5 || p.dim() != 4) continue;
    const auto& s = f->shape;
    const bool same_2d =
        s[0] == p.size(0) && s[1] == p.size(1) && s[3] == p.size(2) && s[4] == p.size(3);
    if (!same_2d) continue;  // load_module reports the mismatch
    const bool time_conv = item.key().find(".time_conv.") != std::string::npos;
    if (s[2] != 1 && !time_conv) continue;
    p.set_data(torch::empty(s, p.options()));
    if (s[2] == 1) squeeze.push_back(p);
  }
  load_module(*model, weights, "vae", dtype, device);
  for (auto& p : squeeze) p.set_data(p.data().squeeze(2));
  model->eval();
  model->prepare_for_inference();
  return model;
}

}  // namespace qwen::models
