// QwenImageTransformer2DModel: the 20B MMDiT denoiser of the Qwen-Image family (spec
// transformer-and-pipelines.md §2). Registered parameter names are the diffusers checkpoint keys,
// so models::load_module() fills it straight from transformer/*.safetensors.
#pragma once

#include <torch/torch.h>

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/transformer_block.h"
#include "models/transformer_layers.h"
#include "models/transformer_rope.h"

namespace qwen::models {

// transformer/config.json. Unknown keys are ignored; missing keys take the diffusers defaults.
struct TransformerConfig {
  int64_t patch_size = 2;
  int64_t in_channels = 64;
  int64_t out_channels = 16;
  int64_t num_layers = 60;
  int64_t attention_head_dim = 128;
  int64_t num_attention_heads = 24;
  int64_t joint_attention_dim = 3584;
  std::array<int64_t, 3> axes_dims_rope{16, 56, 56};
  bool guidance_embeds = false;
  bool zero_cond_t = false;
  bool use_additional_t_cond = false;
  bool use_layer3d_rope = false;

  int64_t inner_dim() const { return num_attention_heads * attention_head_dim; }
  // Throws std::runtime_error naming the file and the bad key.
  static TransformerConfig from_json_file(const std::string& path);
  static TransformerConfig from_json_text(const std::string& text, const std::string& label);
  // Checks internal consistency (head dim = sum of RoPE axes, ...). Throws std::invalid_argument.
  void validate() const;
  // Number of parameters this configuration has.
  int64_t parameter_count() const;
};

// The timestep-only tensors of a forward pass: the timestep embedding, every block's img_mod /
// txt_mod output (Linear(SiLU(temb))) and norm_out's. They depend on the timestep alone, so the
// conditional and unconditional (CFG) passes of a denoising step share one computation: pass the
// same object (and the same timestep tensor) to both forward() calls. Exact: the second pass reads
// the very tensors the first computed, with the same ops and shapes as computing them again.
struct TimestepModulation {
  // What the tensors were computed for: reused only for the same timestep tensor object (and
  // additional_t_cond), model and dtype; otherwise recomputed in place.
  const void* model = nullptr;
  torch::Tensor timestep, additional_t_cond;
  torch::Dtype dtype = torch::kFloat32;
  torch::Tensor temb;  // [B, D] ([2B, D] with zero_cond_t)
  std::vector<dit::BlockModulation> blocks;
  torch::Tensor norm_out;  // norm_out.linear(SiLU(temb)) [B, 2D]
};

class QwenImageTransformer2DModelImpl;
// Memory-placement hooks (issue #13; models/offload.h TransformerPlacement implements them), set
// by the engine according to its memory plan. Without hooks every weight is resident.
struct PlacementHooks {
  virtual ~PlacementHooks() = default;
  // Around every block's forward: block streaming makes the block's weights resident first.
  virtual void before_block(size_t /*index*/) {}
  virtual void after_block(size_t /*index*/) {}
  // Whether the denoising loop asks precompute_modulation() for all of a job's timesteps before
  // its first step (modulation weights kept off the device).
  virtual bool precomputes_modulation() const { return false; }
  // `additional_t_cond`: the [B] int64 of Layered models (undefined otherwise), the same tensor
  // every forward() of the job is given.
  virtual std::vector<TimestepModulation> precompute_modulation(
      QwenImageTransformer2DModelImpl& /*model*/, const std::vector<torch::Tensor>& /*timesteps*/,
      torch::Dtype /*dtype*/, const torch::Tensor& /*additional_t_cond*/ = {}) {
    return {};
  }
};

class QwenImageTransformer2DModelImpl : public torch::nn::Module {
 public:
  // Parameters are created in the default dtype (torch::get_default_dtype) and left uninitialised
  // in the sense of "not loaded" (PyTorch's default init). With `build_device` other than the CPU,
  // every block is moved there as soon as it is built, so the host never holds the whole model
  // (used to build the 20B model with random weights directly on a GPU).
  explicit QwenImageTransformer2DModelImpl(const TransformerConfig& config,
                                           const torch::Device& build_device = torch::kCPU);

  // hidden_states: packed latents [B, S_img, in_channels] (all image segments concatenated);
  // encoder_hidden_states: [B, S_txt, joint_attention_dim];
  // encoder_hidden_states_mask: [B, S_txt] (1/true = valid) or undefined for "all valid";
  // timestep: [B], already divided by 1000; img_shapes: the segments of one sample (every sample
  // shares them); additional_t_cond: [B] int64 (Layered models only); modulation: when given,
  // the timestep-only tensors are taken from it if it was filled for this timestep, else computed
  // and stored in it (see TimestepModulation).
  // Returns [B, S_img, patch^2 * out_channels].
  torch::Tensor forward(const torch::Tensor& hidden_states,
                        const torch::Tensor& encoder_hidden_states,
                        const torch::Tensor& encoder_hidden_states_mask,
                        const torch::Tensor& timestep, const std::vector<ImageShape>& img_shapes,
                        const torch::Tensor& additional_t_cond = {},
                        TimestepModulation* modulation = nullptr);

  // The TimestepModulation of each of `timesteps` (forward() reuses entry k for the very tensor
  // timesteps[k]), computed block by block with exactly the ops forward() uses (same numbers);
  // `around_block(i, true)` runs before block i's img_mod / txt_mod are used, (i, false) after:
  // the weights may live on the host in between (PlacementHooks::precompute_modulation).
  // `additional_t_cond`: as forward()'s (Layered models), the same tensor for every timestep.
  std::vector<TimestepModulation> compute_modulations(
      const std::vector<torch::Tensor>& timesteps, torch::Dtype dtype,
      const std::function<void(size_t, bool)>& around_block = {},
      const torch::Tensor& additional_t_cond = {});
  // Memory placement (models/offload.h); null: every weight resident.
  void set_placement(std::shared_ptr<PlacementHooks> hooks) { placement_ = std::move(hooks); }
  PlacementHooks* placement() const { return placement_.get(); }

  const TransformerConfig& config() const { return config_; }
  // How many times forward() computed the timestep modulation (tests: once per denoising step).
  int64_t modulation_computations() const { return modulation_computations_; }

  Linear img_in{nullptr}, txt_in{nullptr}, proj_out{nullptr};
  dit::RMSNorm txt_norm{nullptr};
  dit::TimestepProjEmbeddings time_text_embed{nullptr};
  torch::nn::ModuleList transformer_blocks{nullptr};
  // `norm_out` (AdaLayerNormContinuous): only `norm_out.linear` carries weights.
  std::shared_ptr<torch::nn::Module> norm_out;
  Linear norm_out_linear{nullptr};

 private:
  void compute_modulation(const torch::Tensor& timestep, const torch::Tensor& additional_t_cond,
                          torch::Dtype dtype, TimestepModulation& out);

  TransformerConfig config_;
  int64_t modulation_computations_ = 0;
  std::shared_ptr<PlacementHooks> placement_;
  std::vector<dit::TransformerBlock> blocks_;
  dit::MultiAxisRope rope_;
};
TORCH_MODULE(QwenImageTransformer2DModel);

}  // namespace qwen::models
