// Qwen-Image-2.1 transformer single files (QwenImage21Transformer2DModel): recognising them by
// their canonical (diffusers) names and deriving their configuration from the shapes. ComfyUI's
// `qwen_image_2.1_*.safetensors` use the diffusers names under `model.diffusion_model.` (stripped
// by the transformer key rules) with each block's SwiGLU fused as `img_mlp.gate_up`
// ([gate_layer; proj] by rows); models::Transformer21Config::fused_mlp loads that layout as it is.
// Torch-free. Used by io/checkpoint_keys.cpp.
#pragma once

#include <nlohmann/json.hpp>

#include "io/tensor_format.h"

namespace qwen::io {

// True when the canonical names are a Qwen-Image-2.1 transformer's (the shared `modulation.1`
// or the `txt_in.in_layer` text projection, which the 20B model does not have).
bool is_transformer21_format(const FileFormat& format);
// The QwenImage21Transformer2DModel config.json equivalent: in_channels (out_channels only when
// it differs: absent = the same, as diffusers' null), num_layers,
// attention_head_dim (norm_q), num_attention_heads, context_in_dim, mlp_ratio (fused or not) from
// the shapes; patch_size 1, eps 1e-6, causal_condition true and, for heads other than 128 wide, a
// guessed RoPE split (the released model: 128 = 16 + 56 + 56). Throws CheckpointError naming the
// file and the missing or inconsistent tensor.
nlohmann::json transformer21_config_from_shapes(const FileFormat& format);

}  // namespace qwen::io
