// QwenImage21Transformer2DModel configuration (transformer/config.json of a Qwen-Image-2.1 model;
// diffusers 0.42.1 models/transformers/transformer_qwenimage21.py). Torch-free.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace qwen::models {

struct Transformer21Config {
  // The constructor defaults of QwenImage21Transformer2DModel, which are the released 7.1B model's
  // values (32 single-stream blocks of 32 heads x 128, context 4096, SwiGLU 3x).
  int64_t patch_size = 1;
  int64_t in_channels = 64;
  int64_t out_channels =
      64;  // config.json null -> in_channels (diffusers `out_channels or in_channels`)
  int64_t num_layers = 32;
  int64_t attention_head_dim = 128;
  int64_t num_attention_heads = 32;
  int64_t context_in_dim = 4096;
  int64_t mlp_ratio = 3;
  std::array<int64_t, 3> axes_dims_rope{16, 56, 56};
  double eps = 1e-6;
  bool causal_condition =
      true;  // text + condition tokens modulated at t = 0; needed by the KV cache
  // Not a config.json key: the checkpoint layout. ComfyUI's single files store each block's SwiGLU
  // gate and up projections as one `img_mlp.gate_up` matrix ([gate_layer; proj] by rows); the
  // module then registers that one Linear instead of `gate_layer` + `proj` (same numbers).
  bool fused_mlp = false;

  int64_t inner_dim() const { return num_attention_heads * attention_head_dim; }
  int64_t mlp_hidden() const { return inner_dim() * mlp_ratio; }

  // Parses config.json text. Unknown keys are ignored, missing keys take the defaults above. A
  // `_class_name` other than QwenImage21Transformer2DModel, a key of the wrong type or an invalid
  // value throws std::runtime_error naming `label` (the file) and the key.
  static Transformer21Config from_json_text(const std::string& text, const std::string& label);
  static Transformer21Config from_json_file(const std::string& path);
  // Throws std::invalid_argument naming the bad key (positive sizes, RoPE axes even and summing to
  // attention_head_dim, eps > 0).
  void validate() const;
  // Number of parameters (no biases anywhere).
  int64_t parameter_count() const;
  // FLOPs (2 x multiply-adds) of one forward with `queries` tokens run through the blocks, each
  // attending to `keys` keys on average, of which `targets` go through norm_out / proj_out and
  // `text` through txt_in. Linear layers + QK^T and AV; elementwise work left out.
  double forward_flops(int64_t queries, double mean_keys, int64_t targets, int64_t text) const;
};

}  // namespace qwen::models
