#include "models/text_encoder_config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "io/config_json.h"

namespace qwen::models::qwenvl {
namespace {

using nlohmann::json;

// Reads `key` from the first of `objs` that has it with a non-null value.
template <typename T>
void read(const std::vector<const json*>& objs, const char* key, T& out, const std::string& label) {
  for (const json* o : objs) {
    if (!o || !o->is_object()) continue;
    auto it = o->find(key);
    if (it == o->end() || it->is_null()) continue;
    try {
      out = it->get<T>();
    } catch (const json::exception& e) {
      throw std::runtime_error(label + ": field '" + key + "' has the wrong type (" + e.what() +
                               ")");
    }
    return;
  }
}

}  // namespace

TextEncoderConfig TextEncoderConfig::from_json_text(const std::string& text,
                                                    const std::string& label) {
  const auto root = io::parse_config_object(text, label);

  TextEncoderConfig c;
  const json* text_cfg = nullptr;
  if (auto it = root.find("text_config"); it != root.end() && it->is_object()) text_cfg = &*it;
  // Architecture fields: text_config first (transformers >= 4.52 layout), then the flat layout.
  const std::vector<const json*> arch = {text_cfg, &root};
  read(arch, "vocab_size", c.vocab_size, label);
  read(arch, "hidden_size", c.hidden_size, label);
  read(arch, "num_hidden_layers", c.num_hidden_layers, label);
  read(arch, "num_attention_heads", c.num_attention_heads, label);
  c.num_key_value_heads = c.num_attention_heads;
  read(arch, "num_key_value_heads", c.num_key_value_heads, label);
  read(arch, "intermediate_size", c.intermediate_size, label);
  read(arch, "rms_norm_eps", c.rms_norm_eps, label);
  read(arch, "rope_theta", c.rope_theta, label);
  // Rope settings: `rope_scaling` (+ top-level `rope_theta`) as transformers 4.x saved them (the
  // released checkpoints), or `rope_parameters` (with `rope_theta` inside) as transformers 5 saves
  // them; transformers 5's Qwen2_5_VLTextConfig reads either (rope_scaling wins).
  for (const json* o : arch) {
    if (!o) continue;
    auto rs = o->find("rope_scaling");
    if (rs == o->end() || !rs->is_object()) rs = o->find("rope_parameters");
    if (rs == o->end() || !rs->is_object()) continue;
    if (auto th = rs->find("rope_theta"); th != rs->end() && th->is_number() &&
                                          !o->contains("rope_theta"))
      c.rope_theta = th->get<double>();
    auto ms = rs->find("mrope_section");
    if (ms == rs->end()) continue;
    if (!ms->is_array() || ms->size() != 3)
      throw std::runtime_error(label + ": rope_scaling.mrope_section (or rope_parameters.mrope_section) must be a list of 3 integers");
    for (size_t i = 0; i < 3; ++i) {
      if (!(*ms)[i].is_number_integer())
        throw std::runtime_error(label + ": rope_scaling.mrope_section must hold integers");
      c.mrope_section[i] = (*ms)[i].get<int64_t>();
    }
    break;
  }
  // Token ids live at the top level (text_config holds nulls for some of them).
  const std::vector<const json*> ids = {&root, text_cfg};
  read(ids, "image_token_id", c.image_token_id, label);
  read(ids, "video_token_id", c.video_token_id, label);
  read(ids, "vision_start_token_id", c.vision_start_token_id, label);
  read(ids, "vision_end_token_id", c.vision_end_token_id, label);

  auto vit = root.find("vision_config");
  c.has_vision = vit != root.end() && vit->is_object();
  if (c.has_vision) {
    const std::vector<const json*> v = {&*vit};
    VisionConfig& vc = c.vision;
    read(v, "depth", vc.depth, label);
    read(v, "hidden_size", vc.hidden_size, label);
    read(v, "num_heads", vc.num_heads, label);
    read(v, "intermediate_size", vc.intermediate_size, label);
    read(v, "out_hidden_size", vc.out_hidden_size, label);
    read(v, "in_chans", vc.in_channels, label);
    read(v, "in_channels", vc.in_channels, label);
    read(v, "patch_size", vc.patch_size, label);
    read(v, "temporal_patch_size", vc.temporal_patch_size, label);
    read(v, "spatial_merge_size", vc.spatial_merge_size, label);
    read(v, "window_size", vc.window_size, label);
    read(v, "fullatt_block_indexes", vc.fullatt_block_indexes, label);
  }
  c.validate(label);
  return c;
}

TextEncoderConfig TextEncoderConfig::from_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open text-encoder config '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return from_json_text(ss.str(), path);
}

void TextEncoderConfig::validate(const std::string& label) const {
  auto fail = [&](const std::string& m) { throw std::invalid_argument(label + ": " + m); };
  if (vocab_size <= 0 || hidden_size <= 0 || num_hidden_layers <= 0 || intermediate_size <= 0)
    fail("vocab_size, hidden_size, num_hidden_layers and intermediate_size must be positive");
  if (num_attention_heads <= 0 || hidden_size % num_attention_heads != 0)
    fail("hidden_size " + std::to_string(hidden_size) +
         " is not divisible by num_attention_heads " + std::to_string(num_attention_heads));
  if (num_key_value_heads <= 0 || num_attention_heads % num_key_value_heads != 0)
    fail("num_attention_heads " + std::to_string(num_attention_heads) +
         " is not a multiple of num_key_value_heads " + std::to_string(num_key_value_heads));
  if (head_dim() % 2 != 0) fail("head_dim must be even for rotary embeddings");
  if (mrope_section[0] < 0 || mrope_section[1] < 0 || mrope_section[2] < 0 ||
      2 * (mrope_section[0] + mrope_section[1] + mrope_section[2]) != head_dim())
    fail("rope_scaling.mrope_section must sum to head_dim/2 = " + std::to_string(head_dim() / 2));
  if (!has_vision) return;
  const VisionConfig& v = vision;
  if (v.depth <= 0 || v.hidden_size <= 0 || v.num_heads <= 0 || v.hidden_size % v.num_heads != 0)
    fail("vision_config: hidden_size must be a positive multiple of num_heads");
  if (v.head_dim() % 4 != 0) fail("vision_config: head_dim must be a multiple of 4 (2-D rotary)");
  if (v.patch_size <= 0 || v.temporal_patch_size <= 0 || v.spatial_merge_size <= 0 ||
      v.in_channels <= 0 || v.intermediate_size <= 0 || v.out_hidden_size <= 0)
    fail("vision_config: sizes must be positive");
  if (v.merger_window() <= 0)
    fail("vision_config: window_size must be at least spatial_merge_size * patch_size");
  for (int64_t b : v.fullatt_block_indexes)
    if (b < 0 || b >= v.depth)
      fail("vision_config: fullatt_block_indexes entry " + std::to_string(b) + " is not a block");
}

}  // namespace qwen::models::qwenvl
