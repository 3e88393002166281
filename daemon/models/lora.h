// LoRA files for the transformer (issue #14): the five key styles found in the wild, read into
// one form with exactly the scaling diffusers + PEFT give them (QwenImageLoraLoaderMixin:
// loaders/lora_conversion_utils.py _convert_non_diffusers_qwen_lora_to_diffusers, then
// utils/peft_utils.py _create_lora_config / get_peft_kwargs, peft tuners/lora/layer.py), and the
// application of a set of LoRAs (each with its own strength) to a model's Linear layers
// (models/linear.h LinearImpl::set_lora: side branch or merged working copy). The base weights are
// never modified: clearing the set gives back the loaded model bit for bit.
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "models/lora_info.h"

namespace qwen::models {

// Every problem with a LoRA file or set: what() names the file and says what to do.
struct LoraError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class LoraStyle {
  DiffusersPeft,  // transformer.<m>.lora_A.weight / lora_B.weight (+ lora_adapter_metadata)
  AiToolkit,      // diffusion_model.<m>.lora_A / lora_B
  DiffSynth,      // <m>.lora_A.default.weight / lora_B.default.weight
  Kohya,          // lora_unet_<m with '_'>.lora_down / lora_up / alpha
  Lightx2v,       // <m>.lora_down / lora_up / alpha
};
const char* to_string(LoraStyle);

// One adapted Linear. The layer computes y += strength * factor * up(down(x)).
struct LoraModule {
  std::string module;  // the model's module name, e.g. "transformer_blocks.0.attn.to_q"
  // As diffusers hands them to PEFT: in the file's dtype, with a `.alpha` folded in (A *= s_down,
  // B *= s_up, s_down * s_up = alpha / r) where diffusers' conversion runs.
  torch::Tensor down, up;  // [r, in], [out, r]
  // PEFT's LoraConfig values for this module (lora_alpha, r, use_rslora): the scaling at
  // strength s is s * alpha / r (rsLoRA: s * alpha / sqrt(r)), computed in that order as PEFT's
  // set_scale does.
  double alpha = 1.0;
  double r = 1.0;
  bool rslora = false;
  double scaling(double strength) const;
};

struct LoraFile {
  std::string path;
  LoraStyle style = LoraStyle::DiffusersPeft;
  std::vector<LoraModule> modules;  // sorted by module name
  std::map<std::string, std::string> metadata;
  int64_t max_rank() const;
};

// Reads `path` (.safetensors, fp32/fp16/bf16). `linear_names`: the names of the model's Linear
// modules (linear_module_names()); kohya names (dots flattened to '_') are resolved against them.
// Throws LoraError naming the file: not a LoRA, LoKr/LoHa/DoRA (not supported), keys it cannot
// read, a missing lora_A/lora_B half, modules the model does not have (all listed), shapes that
// do not fit the model's layers (when `linear_shapes` is given: name -> {out, in}).
LoraFile read_lora(const std::string& path, const std::vector<std::string>& linear_names,
                   const std::map<std::string, std::pair<int64_t, int64_t>>& linear_shapes = {});

// The Linear modules (models/linear.h) of `model`: names, and name -> {out, in}.
std::vector<std::string> linear_module_names(torch::nn::Module& model);
std::map<std::string, std::pair<int64_t, int64_t>> linear_module_shapes(torch::nn::Module& model);

// The same for a file already read.
LightningInfo lightning_info(const LoraFile& file);

struct LoraSpec {
  std::shared_ptr<const LoraFile> file;
  double strength = 1.0;
};

// Puts `set` on `model` in place of whatever LoRAs it had: for each Linear, one branch per LoRA
// that adapts it, in the order of `set` (PEFT's active-adapter order), with down/up cast to the
// layer's compute dtype and device. merge: a merged working copy per adapted layer instead of side
// branches (see LinearImpl::set_lora). Throws LoraError (and leaves the model without LoRAs) when a
// module is missing or a shape does not fit. Returns the number of adapted layers.
int64_t apply_loras(torch::nn::Module& model, const std::vector<LoraSpec>& set, bool merge = false);
// Removes every LoRA from `model` (the loaded weights were never touched).
void clear_loras(torch::nn::Module& model);

}  // namespace qwen::models
