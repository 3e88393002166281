// Configuration of the Qwen2.5-VL text encoder (language model + vision tower), read from
// text_encoder/config.json. Torch-free.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace qwen::models::qwenvl {

struct VisionConfig {
  int64_t depth = 32;
  int64_t hidden_size = 1280;
  int64_t num_heads = 16;
  int64_t intermediate_size = 3420;
  int64_t out_hidden_size = 3584;
  int64_t in_channels = 3;
  int64_t patch_size = 14;
  int64_t temporal_patch_size = 2;
  int64_t spatial_merge_size = 2;
  int64_t window_size = 112;
  std::vector<int64_t> fullatt_block_indexes = {7, 15, 23, 31};
  double rms_norm_eps = 1e-6;

  int64_t head_dim() const { return hidden_size / num_heads; }
  int64_t patch_features() const {  // 1176 = 3 * 2 * 14 * 14
    return in_channels * temporal_patch_size * patch_size * patch_size;
  }
  int64_t merge_unit() const { return spatial_merge_size * spatial_merge_size; }
  // Window side in merged tokens (112 / 2 / 14 = 4).
  int64_t merger_window() const { return window_size / spatial_merge_size / patch_size; }
};

struct TextEncoderConfig {
  int64_t vocab_size = 152064;
  int64_t hidden_size = 3584;
  int64_t num_hidden_layers = 28;
  int64_t num_attention_heads = 28;
  int64_t num_key_value_heads = 4;
  int64_t intermediate_size = 18944;
  double rms_norm_eps = 1e-6;
  double rope_theta = 1000000.0;
  std::array<int64_t, 3> mrope_section = {16, 24, 24};

  int64_t image_token_id = 151655;
  int64_t video_token_id = 151656;
  int64_t vision_start_token_id = 151652;
  int64_t vision_end_token_id = 151653;

  bool has_vision = true;  // config has a vision_config
  VisionConfig vision;

  int64_t head_dim() const { return hidden_size / num_attention_heads; }

  // Parses config.json text (nested text_config / vision_config sub-dicts, or a flat layout).
  // Throws std::runtime_error naming `label` and the offending field on invalid values.
  static TextEncoderConfig from_json_text(const std::string& text, const std::string& label);
  static TextEncoderConfig from_file(const std::string& path);
  // Checks internal consistency (divisibility, mrope sections); throws std::invalid_argument.
  void validate(const std::string& label) const;
};

}  // namespace qwen::models::qwenvl
