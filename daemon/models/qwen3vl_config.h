// Configuration of the Qwen3-VL text encoder of Qwen-Image-2.1 (language model + vision tower),
// read from text_encoder/config.json (transformers Qwen3VLConfig / Qwen3VLTextConfig /
// Qwen3VLVisionConfig). Torch-free. Defaults are those of Qwen3-VL-8B.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace qwen::models::qwen3vl {

struct VisionConfig {
  int64_t depth = 27;
  int64_t hidden_size = 1152;
  int64_t num_heads = 16;
  int64_t intermediate_size = 4304;
  int64_t out_hidden_size = 4096;
  int64_t in_channels = 3;
  int64_t patch_size = 16;
  int64_t temporal_patch_size = 2;
  int64_t spatial_merge_size = 2;
  int64_t num_position_embeddings = 2304;  // a square grid of learned position embeddings
  std::vector<int64_t> deepstack_visual_indexes = {8, 16, 24};
  double rope_theta = 10000.0;  // vision_config.rope_parameters.rope_theta (axial rope)
  bool gelu_tanh = true;        // hidden_act: gelu_pytorch_tanh (true) or gelu (false)

  int64_t head_dim() const { return hidden_size / num_heads; }
  int64_t patch_features() const {  // 1536 = 3 * 2 * 16 * 16
    return in_channels * temporal_patch_size * patch_size * patch_size;
  }
  int64_t merge_unit() const { return spatial_merge_size * spatial_merge_size; }
  int64_t grid_side() const;  // int(sqrt(num_position_embeddings))
};

struct TextEncoderConfig {
  int64_t vocab_size = 151936;
  int64_t hidden_size = 4096;
  int64_t num_hidden_layers = 36;
  int64_t num_attention_heads = 32;
  int64_t num_key_value_heads = 8;
  int64_t head_dim = 128;  // explicit in Qwen3 (not hidden_size / heads)
  int64_t intermediate_size = 12288;
  bool attention_bias = false;
  double rms_norm_eps = 1e-6;
  double rope_theta = 500000.0;  // transformers' Qwen3VLTextConfig.default_theta when absent
  // Interleaved M-RoPE (Qwen3VLTextRotaryEmbedding): frequency j takes the h axis when j % 3 == 1
  // and j < 3 * section[1], the w axis when j % 3 == 2 and j < 3 * section[2], else t.
  std::array<int64_t, 3> mrope_section = {24, 20, 20};

  int64_t image_token_id = 151655;
  int64_t video_token_id = 151656;
  int64_t vision_start_token_id = 151652;
  int64_t vision_end_token_id = 151653;

  bool has_vision = true;  // config has a vision_config
  VisionConfig vision;

  // Parses config.json text: text_config / vision_config sub-objects (or a flat text layout).
  // Rope settings from `rope_parameters` (transformers 5) or `rope_scaling` + `rope_theta`
  // (transformers 4, the released checkpoint). Throws std::runtime_error naming `label` and the
  // key (e.g. "text_config.head_dim") on wrong types or values.
  static TextEncoderConfig from_json_text(const std::string& text, const std::string& label);
  static TextEncoderConfig from_file(const std::string& path);
  // Internal consistency; throws std::runtime_error naming `label` and the key.
  void validate(const std::string& label) const;
};

}  // namespace qwen::models::qwen3vl
