// Qwen3-VL vision tower (transformers Qwen3VLVisionModel) as Qwen-Image-2.1's text encoder runs
// it: Conv3d patch embedding (with bias) + learned position embeddings bilinearly resampled to each
// image's patch grid, LayerNorm ViT blocks with 2-D axial rotary attention (full attention per
// image), a patch merger, and DeepStack mergers on the outputs of deepstack_visual_indexes blocks.
// Registered names mirror `model.visual.*`: patch_embed.proj, pos_embed, blocks.{i}.{norm1, norm2,
// attn.qkv, attn.proj, mlp.linear_fc1, mlp.linear_fc2}, merger.{norm, linear_fc1, linear_fc2},
// deepstack_merger_list.{i}.*.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "models/linear.h"
#include "models/qwen3vl_config.h"
#include "models/vision.h"

namespace qwen::models::qwen3vl {

using qwen::models::Linear;

// linear_fc2(act(linear_fc1(x))), act = GELU (tanh approximation for gelu_pytorch_tanh).
class VisionMLPImpl : public torch::nn::Module {
 public:
  VisionMLPImpl(int64_t dim, int64_t hidden, bool gelu_tanh);
  torch::Tensor forward(const torch::Tensor& x);
  Linear linear_fc1{nullptr}, linear_fc2{nullptr};

 private:
  bool tanh_;
};
TORCH_MODULE(VisionMLP);

class VisionBlockImpl : public torch::nn::Module {
 public:
  explicit VisionBlockImpl(const VisionConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const std::vector<int64_t>& cu_seqlens);

  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  qwenvl::VisionAttention attn{nullptr};  // the Qwen2.5-VL one: same qkv / proj / float32 rotary
  VisionMLP mlp{nullptr};
};
TORCH_MODULE(VisionBlock);

// Qwen3VLVisionPatchMerger: LayerNorm (over one patch, or over the 4 concatenated patches when
// `postshuffle`: the DeepStack mergers) -> 4 patches concatenated -> Linear -> GELU(erf) -> Linear.
class PatchMergerImpl : public torch::nn::Module {
 public:
  PatchMergerImpl(const VisionConfig& cfg, bool postshuffle);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::LayerNorm norm{nullptr};
  Linear linear_fc1{nullptr}, linear_fc2{nullptr};

 private:
  int64_t merged_dim_;
  bool postshuffle_;
};
TORCH_MODULE(PatchMerger);

struct VisionFeatures {
  torch::Tensor embeds;                  // [N/4, out_hidden], merged tokens, images concatenated
  std::vector<torch::Tensor> deepstack;  // one [N/4, out_hidden] per deepstack_visual_indexes entry
};

// Per patch row of pixel_values (merge-block order, as the processor emits them): patch-grid row
// and column, int64 [N, 2]; and the segment boundaries of the images (one per frame). Throws
// std::invalid_argument on grids the tower cannot take.
struct VisionGrid {
  torch::Tensor pos;         // int64 [N, 2]
  torch::Tensor rows, cols;  // int64 [N]: the image's patch-grid height / width, per patch
  std::vector<int64_t> cu_seqlens;
  int64_t num_patches = 0;
};
VisionGrid vision_grid(const torch::Tensor& grid_thw, int64_t spatial_merge_size);

class VisionTowerImpl : public torch::nn::Module {
 public:
  explicit VisionTowerImpl(const VisionConfig& cfg);

  // pixel_values [N, C*tp*p*p] (processor rows), grid_thw int64 [n_images, 3] (t, h, w in patches).
  VisionFeatures forward(const torch::Tensor& pixel_values, const torch::Tensor& grid_thw);
  // The resampled learned position embeddings, float32 [N, hidden]
  // (get_vision_interpolation_indices_and_weights, bilinear, align_corners=True).
  torch::Tensor position_embeddings(const VisionGrid& grid);

  const VisionConfig& config() const { return cfg_; }

  std::shared_ptr<torch::nn::Module> patch_embed, patch_proj, pos_embed;
  torch::Tensor patch_weight, patch_bias, pos_weight;
  torch::nn::ModuleList blocks{nullptr};
  PatchMerger merger{nullptr};
  torch::nn::ModuleList deepstack_merger_list{nullptr};

 private:
  VisionConfig cfg_;
};
TORCH_MODULE(VisionTower);

}  // namespace qwen::models::qwen3vl
