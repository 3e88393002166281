#include "models/transformer_layers.h"

#include <cmath>

namespace qwen::models::dit {

RMSNormImpl::RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}), /*requires_grad=*/false);
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  // variance in float32; x * rsqrt(var + eps) promotes to float32 (tensor-tensor promotion).
  auto xf = x.to(torch::kFloat32);
  auto var = xf.pow(2).mean(-1, /*keepdim=*/true);
  auto y = xf * torch::rsqrt(var + eps_);
  const auto wd = weight.scalar_type();
  if (wd == torch::kBFloat16 || wd == torch::kHalf) y = y.to(wd);
  return y * weight;
}

torch::Tensor timestep_sinusoid(const torch::Tensor& t, int64_t channels) {
  const int64_t half = channels / 2;
  auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(t.device());
  // exponent = -ln(max_period) * arange(half) (float32), then / (half - shift), shift = 0.
  auto exponent = torch::arange(0, half, opts) * (-std::log(10000.0));
  exponent = exponent / static_cast<double>(half);
  auto freqs = torch::exp(exponent);
  auto emb = t.to(torch::kFloat32).unsqueeze(1) * freqs.unsqueeze(0);
  emb = emb * 1000.0;  // scale applied after the frequency product
  // flip_sin_to_cos: [cos, sin]
  return torch::cat({torch::cos(emb), torch::sin(emb)}, -1);
}

TimestepEmbeddingImpl::TimestepEmbeddingImpl(int64_t in_channels, int64_t dim) {
  linear_1 = register_module("linear_1", Linear(in_channels, dim));
  linear_2 = register_module("linear_2", Linear(dim, dim));
}

torch::Tensor TimestepEmbeddingImpl::forward(const torch::Tensor& x) {
  return linear_2(torch::silu(linear_1(x)));
}

TimestepProjEmbeddingsImpl::TimestepProjEmbeddingsImpl(int64_t dim, bool use_additional_t_cond) {
  timestep_embedder = register_module("timestep_embedder", TimestepEmbedding(256, dim));
  if (use_additional_t_cond) {
    addition_t_embedding = register_module("addition_t_embedding", torch::nn::Embedding(2, dim));
  }
}

torch::Tensor TimestepProjEmbeddingsImpl::forward(const torch::Tensor& t, torch::Dtype dtype,
                                                  const torch::Tensor& additional_t_cond) {
  auto emb = timestep_embedder(timestep_sinusoid(t).to(dtype));
  if (addition_t_embedding) {
    TORCH_CHECK(additional_t_cond.defined(),
                "this transformer (use_additional_t_cond) needs additional_t_cond");
    emb = emb + addition_t_embedding(additional_t_cond).to(dtype);
  }
  return emb;
}

GeluProjImpl::GeluProjImpl(int64_t in, int64_t out) {
  proj = register_module("proj", Linear(in, out));
}

torch::Tensor GeluProjImpl::forward(const torch::Tensor& x) { return torch::gelu(proj(x), "tanh"); }

FeedForwardImpl::FeedForwardImpl(int64_t dim, int64_t mult) {
  act_ = GeluProj(dim, dim * mult);
  out_ = Linear(dim * mult, dim);
  net = register_module("net", torch::nn::ModuleList());
  net->push_back(act_);
  net->push_back(torch::nn::Identity());  // dropout: identity at inference
  net->push_back(out_);
}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) { return out_(act_(x)); }

torch::Tensor layer_norm_no_affine(const torch::Tensor& x, double eps) {
  return torch::layer_norm(x, {x.size(-1)}, {}, {}, eps);
}

}  // namespace qwen::models::dit
