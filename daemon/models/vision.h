// Qwen2.5-VL vision tower (ViT with 2-D rotary, window attention, patch merger). Registered names
// mirror `model.visual.*`: patch_embed.proj, blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.*},
// merger.{ln_q,mlp.0,mlp.2}.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "models/text_encoder_blocks.h"
#include "models/text_encoder_config.h"
#include "models/vision_layout.h"

namespace qwen::models::qwenvl {

// Conv3d with kernel = stride = (temporal_patch, patch, patch), no bias; `proj.weight` is
// [hidden, C, tp, p, p]. Applied as a matmul over the 1176 features of each patch row.
class VisionPatchEmbedImpl : public torch::nn::Module {
 public:
  explicit VisionPatchEmbedImpl(const VisionConfig& cfg);
  // pixel_values [N, C*tp*p*p] (any float dtype; rounded to the weight dtype first).
  torch::Tensor forward(const torch::Tensor& pixel_values);

  std::shared_ptr<torch::nn::Module> proj;  // holds `weight`
  torch::Tensor weight;

 private:
  int64_t hidden_;
};
TORCH_MODULE(VisionPatchEmbed);

class VisionAttentionImpl : public torch::nn::Module {
 public:
  explicit VisionAttentionImpl(const VisionConfig& cfg);
  // x [N, hidden]; cos/sin float32 [N, head_dim]; attention restricted to each [cu[i], cu[i+1]).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const std::vector<int64_t>& cu_seqlens);

  Linear qkv{nullptr}, proj{nullptr};

 private:
  int64_t heads_, head_dim_;
};
TORCH_MODULE(VisionAttention);

class VisionBlockImpl : public torch::nn::Module {
 public:
  explicit VisionBlockImpl(const VisionConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const std::vector<int64_t>& cu_seqlens);

  RMSNorm norm1{nullptr}, norm2{nullptr};
  VisionAttention attn{nullptr};
  GatedMLP mlp{nullptr};
};
TORCH_MODULE(VisionBlock);

// RMSNorm per patch, 4 consecutive patches concatenated, Linear -> GELU(erf) -> Linear.
class PatchMergerImpl : public torch::nn::Module {
 public:
  explicit PatchMergerImpl(const VisionConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x);

  RMSNorm ln_q{nullptr};
  torch::nn::Sequential mlp{nullptr};  // "0": Linear, "1": GELU, "2": Linear

 private:
  int64_t merged_dim_;
};
TORCH_MODULE(PatchMerger);

class VisionTowerImpl : public torch::nn::Module {
 public:
  explicit VisionTowerImpl(const VisionConfig& cfg);

  // pixel_values [N, 1176] (rows in processor order), grid_thw [n_images, 3]. Returns the merged
  // image features [N/4, out_hidden] in merged-token order, images concatenated.
  torch::Tensor forward(const torch::Tensor& pixel_values, const torch::Tensor& grid_thw);

  const VisionConfig& config() const { return cfg_; }

  VisionPatchEmbed patch_embed{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  PatchMerger merger{nullptr};

 private:
  VisionConfig cfg_;
};
TORCH_MODULE(VisionTower);

}  // namespace qwen::models::qwenvl
