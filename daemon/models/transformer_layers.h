// Small building blocks of QwenImageTransformer2DModel (spec transformer-and-pipelines.md §2.4):
// RMSNorm, the timestep sinusoid + MLP, the GELU-tanh feed-forward. Registered names mirror the
// diffusers checkpoint keys.
#pragma once

#include <torch/torch.h>

#include "models/linear.h"

namespace qwen::models::dit {

// RMSNorm over the last dimension with a learned gain (`weight`), eps 1e-6, no bias.
// Normalises in float32; with a bf16/fp16 gain the normalised value is rounded to the gain's dtype
// before the multiply (diffusers' op order).
class RMSNormImpl : public torch::nn::Module {
 public:
  explicit RMSNormImpl(int64_t dim, double eps = 1e-6);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

// Sinusoidal timestep features: 256 values, cosines first, frequencies exp(-ln(1e4) k / 128),
// angle = 1000 * (t * freq). Returns float32 [N, 256].
torch::Tensor timestep_sinusoid(const torch::Tensor& t, int64_t channels = 256);

// `time_text_embed.timestep_embedder`: linear_1 (256 -> D), SiLU, linear_2 (D -> D).
class TimestepEmbeddingImpl : public torch::nn::Module {
 public:
  TimestepEmbeddingImpl(int64_t in_channels, int64_t dim);
  torch::Tensor forward(const torch::Tensor& x);
  Linear linear_1{nullptr}, linear_2{nullptr};
};
TORCH_MODULE(TimestepEmbedding);

// `time_text_embed`: sinusoid -> (cast to the model dtype) -> timestep_embedder, plus the optional
// `addition_t_embedding` table (Qwen-Image-Layered).
class TimestepProjEmbeddingsImpl : public torch::nn::Module {
 public:
  TimestepProjEmbeddingsImpl(int64_t dim, bool use_additional_t_cond);
  // `t`: [N] timesteps already divided by 1000; `dtype`: the dtype of the image stream.
  torch::Tensor forward(const torch::Tensor& t, torch::Dtype dtype,
                        const torch::Tensor& additional_t_cond = {});
  TimestepEmbedding timestep_embedder{nullptr};
  torch::nn::Embedding addition_t_embedding{nullptr};
};
TORCH_MODULE(TimestepProjEmbeddings);

// diffusers `FeedForward(dim, dim_out=dim, activation_fn="gelu-approximate")`:
// net.0.proj (D -> 4D), GELU tanh, net.1 dropout (identity), net.2 (4D -> D).
class GeluProjImpl : public torch::nn::Module {
 public:
  GeluProjImpl(int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);
  Linear proj{nullptr};
};
TORCH_MODULE(GeluProj);

class FeedForwardImpl : public torch::nn::Module {
 public:
  FeedForwardImpl(int64_t dim, int64_t mult = 4);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::ModuleList net{nullptr};

 private:
  GeluProj act_{nullptr};
  Linear out_{nullptr};
};
TORCH_MODULE(FeedForward);

// LayerNorm without affine parameters (eps 1e-6): statistics in float32, output in x's dtype.
torch::Tensor layer_norm_no_affine(const torch::Tensor& x, double eps = 1e-6);

}  // namespace qwen::models::dit
