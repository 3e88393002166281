#include "models/qwen3vl_config.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "io/config_json.h"

namespace qwen::models::qwen3vl {
namespace {

using nlohmann::json;

struct Reader {
  const std::string& label;

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw std::runtime_error(label + ": key '" + key + "' " + what);
  }

  // Reads obj[key] into out when present and not null; `path` names the key in messages.
  template <typename T>
  bool read(const json* obj, const char* key, T& out, const std::string& path) const {
    if (!obj || !obj->is_object()) return false;
    auto it = obj->find(key);
    if (it == obj->end() || it->is_null()) return false;
    try {
      if constexpr (std::is_same_v<T, int64_t>) {
        if (!it->is_number_integer()) fail(path, "must be an integer, got " + it->dump());
      } else if constexpr (std::is_same_v<T, double>) {
        if (!it->is_number()) fail(path, "must be a number, got " + it->dump());
      } else if constexpr (std::is_same_v<T, bool>) {
        if (!it->is_boolean()) fail(path, "must be true or false, got " + it->dump());
      } else if constexpr (std::is_same_v<T, std::string>) {
        if (!it->is_string()) fail(path, "must be a string, got " + it->dump());
      }
      out = it->get<T>();
    } catch (const json::exception& e) {
      fail(path, std::string("has the wrong type (") + e.what() + ")");
    }
    return true;
  }
};

std::string prefixed(const json* obj, const json& root, const char* prefix, const char* key) {
  return obj == &root ? std::string(key) : std::string(prefix) + "." + key;
}

}  // namespace

int64_t VisionConfig::grid_side() const {
  return static_cast<int64_t>(std::sqrt(static_cast<double>(num_position_embeddings)));
}

TextEncoderConfig TextEncoderConfig::from_json_text(const std::string& text,
                                                    const std::string& label) {
  const auto root = io::parse_config_object(text, label);
  const Reader r{label};
  if (auto mt = root.find("model_type");
      mt != root.end() && mt->is_string() && mt->get<std::string>() != "qwen3_vl")
    r.fail("model_type",
           "is '" + mt->get<std::string>() +
               "', not 'qwen3_vl': this is not a Qwen3-VL text encoder (Qwen-Image-2.1 "
               "uses Qwen3-VL-8B; Qwen-Image / Edit use the Qwen2.5-VL encoder)");

  TextEncoderConfig c;
  const json* t = &root;
  if (auto it = root.find("text_config"); it != root.end()) {
    if (!it->is_object()) r.fail("text_config", "must be an object");
    t = &*it;
  }
  auto tk = [&](const char* key) { return prefixed(t, root, "text_config", key); };
  r.read(t, "vocab_size", c.vocab_size, tk("vocab_size"));
  r.read(t, "hidden_size", c.hidden_size, tk("hidden_size"));
  r.read(t, "num_hidden_layers", c.num_hidden_layers, tk("num_hidden_layers"));
  r.read(t, "num_attention_heads", c.num_attention_heads, tk("num_attention_heads"));
  c.num_key_value_heads = c.num_attention_heads;  // transformers: None -> num_attention_heads
  r.read(t, "num_key_value_heads", c.num_key_value_heads, tk("num_key_value_heads"));
  r.read(t, "head_dim", c.head_dim, tk("head_dim"));
  r.read(t, "intermediate_size", c.intermediate_size, tk("intermediate_size"));
  r.read(t, "attention_bias", c.attention_bias, tk("attention_bias"));
  r.read(t, "rms_norm_eps", c.rms_norm_eps, tk("rms_norm_eps"));
  std::string act = "silu";
  r.read(t, "hidden_act", act, tk("hidden_act"));
  if (act != "silu") r.fail(tk("hidden_act"), "is '" + act + "'; only 'silu' is supported");

  // Rope: transformers 5 writes `rope_parameters` (rope_theta inside); the released checkpoint
  // (transformers 4.57) has `rope_scaling` (mrope_section, ...) + `rope_theta` beside it.
  // `rope_parameters` wins when both are present (transformers 5 standardises to it).
  r.read(t, "rope_theta", c.rope_theta, tk("rope_theta"));
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    auto it = t->find(key);
    if (it == t->end() || it->is_null()) continue;
    const std::string rk = tk(key);
    if (!it->is_object()) r.fail(rk, "must be an object, got " + it->dump());
    const json* rp = &*it;
    r.read(rp, "rope_theta", c.rope_theta, rk + ".rope_theta");
    std::string type = "default";
    if (!r.read(rp, "rope_type", type, rk + ".rope_type")) r.read(rp, "type", type, rk + ".type");
    if (type != "default")
      r.fail(rk + ".rope_type", "is '" + type + "'; only 'default' rope is supported");
    if (auto ms = rp->find("mrope_section"); ms != rp->end() && !ms->is_null()) {
      if (!ms->is_array() || ms->size() != 3)
        r.fail(rk + ".mrope_section", "must be a list of 3 integers, got " + ms->dump());
      for (size_t i = 0; i < 3; ++i) {
        if (!(*ms)[i].is_number_integer())
          r.fail(rk + ".mrope_section", "must hold integers, got " + ms->dump());
        c.mrope_section[i] = (*ms)[i].get<int64_t>();
      }
    }
    // mrope_interleaved: transformers' Qwen3-VL always interleaves (the flag is not read).
  }

  // Token ids live at the top level.
  const json* ids[] = {&root, t};
  for (const json* o : ids) {
    r.read(o, "image_token_id", c.image_token_id, "image_token_id");
    r.read(o, "video_token_id", c.video_token_id, "video_token_id");
    r.read(o, "vision_start_token_id", c.vision_start_token_id, "vision_start_token_id");
    r.read(o, "vision_end_token_id", c.vision_end_token_id, "vision_end_token_id");
    if (o == t) break;
  }

  auto vit = root.find("vision_config");
  c.has_vision = vit != root.end() && !vit->is_null();
  if (c.has_vision) {
    if (!vit->is_object()) r.fail("vision_config", "must be an object");
    const json* v = &*vit;
    VisionConfig& vc = c.vision;
    auto vk = [](const char* key) { return std::string("vision_config.") + key; };
    r.read(v, "depth", vc.depth, vk("depth"));
    r.read(v, "hidden_size", vc.hidden_size, vk("hidden_size"));
    r.read(v, "num_heads", vc.num_heads, vk("num_heads"));
    r.read(v, "intermediate_size", vc.intermediate_size, vk("intermediate_size"));
    r.read(v, "out_hidden_size", vc.out_hidden_size, vk("out_hidden_size"));
    r.read(v, "in_channels", vc.in_channels, vk("in_channels"));
    r.read(v, "patch_size", vc.patch_size, vk("patch_size"));
    r.read(v, "temporal_patch_size", vc.temporal_patch_size, vk("temporal_patch_size"));
    r.read(v, "spatial_merge_size", vc.spatial_merge_size, vk("spatial_merge_size"));
    r.read(v, "num_position_embeddings", vc.num_position_embeddings, vk("num_position_embeddings"));
    if (auto d = v->find("deepstack_visual_indexes"); d != v->end() && !d->is_null()) {
      if (!d->is_array())
        r.fail(vk("deepstack_visual_indexes"), "must be a list of integers, got " + d->dump());
      vc.deepstack_visual_indexes.clear();
      for (const auto& e : *d) {
        if (!e.is_number_integer())
          r.fail(vk("deepstack_visual_indexes"), "must hold integers, got " + d->dump());
        vc.deepstack_visual_indexes.push_back(e.get<int64_t>());
      }
    }
    if (auto rp = v->find("rope_parameters"); rp != v->end() && !rp->is_null()) {
      if (!rp->is_object()) r.fail(vk("rope_parameters"), "must be an object");
      r.read(&*rp, "rope_theta", vc.rope_theta, vk("rope_parameters.rope_theta"));
    }
    std::string vact = "gelu_pytorch_tanh";
    r.read(v, "hidden_act", vact, vk("hidden_act"));
    if (vact == "gelu_pytorch_tanh")
      vc.gelu_tanh = true;
    else if (vact == "gelu")
      vc.gelu_tanh = false;
    else
      r.fail(vk("hidden_act"), "is '" + vact + "'; supported: gelu_pytorch_tanh, gelu");
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
  const Reader r{label};
  auto positive = [&](int64_t v, const std::string& key) {
    if (v <= 0) r.fail(key, "must be positive, got " + std::to_string(v));
  };
  positive(vocab_size, "text_config.vocab_size");
  positive(hidden_size, "text_config.hidden_size");
  positive(num_hidden_layers, "text_config.num_hidden_layers");
  positive(intermediate_size, "text_config.intermediate_size");
  positive(num_attention_heads, "text_config.num_attention_heads");
  positive(num_key_value_heads, "text_config.num_key_value_heads");
  positive(head_dim, "text_config.head_dim");
  if (num_attention_heads % num_key_value_heads != 0)
    r.fail("text_config.num_key_value_heads", "(" + std::to_string(num_key_value_heads) +
                                                  ") must divide num_attention_heads (" +
                                                  std::to_string(num_attention_heads) + ")");
  if (head_dim % 2 != 0)
    r.fail("text_config.head_dim",
           "must be even for rotary embeddings, got " + std::to_string(head_dim));
  if (!(rope_theta > 0)) r.fail("text_config.rope_theta", "must be positive");
  if (!(rms_norm_eps > 0)) r.fail("text_config.rms_norm_eps", "must be positive");
  const int64_t half = head_dim / 2;
  if (mrope_section[0] < 0 || mrope_section[1] < 0 || mrope_section[2] < 0 ||
      mrope_section[0] + mrope_section[1] + mrope_section[2] != half)
    r.fail("text_config.rope_scaling.mrope_section (or rope_parameters.mrope_section)",
           "must be 3 non-negative integers summing to head_dim / 2 = " + std::to_string(half));
  if (!has_vision) return;
  const VisionConfig& v = vision;
  positive(v.depth, "vision_config.depth");
  positive(v.hidden_size, "vision_config.hidden_size");
  positive(v.num_heads, "vision_config.num_heads");
  positive(v.intermediate_size, "vision_config.intermediate_size");
  positive(v.out_hidden_size, "vision_config.out_hidden_size");
  positive(v.in_channels, "vision_config.in_channels");
  positive(v.patch_size, "vision_config.patch_size");
  positive(v.temporal_patch_size, "vision_config.temporal_patch_size");
  positive(v.spatial_merge_size, "vision_config.spatial_merge_size");
  positive(v.num_position_embeddings, "vision_config.num_position_embeddings");
  if (v.hidden_size % v.num_heads != 0)
    r.fail("vision_config.hidden_size", "(" + std::to_string(v.hidden_size) +
                                            ") must be a multiple of num_heads (" +
                                            std::to_string(v.num_heads) + ")");
  if (v.head_dim() % 4 != 0)
    r.fail("vision_config.num_heads", "gives a head size of " + std::to_string(v.head_dim()) +
                                          "; the 2-D rotary embedding needs a multiple of 4");
  if (v.grid_side() < 2 || v.grid_side() * v.grid_side() != v.num_position_embeddings)
    r.fail("vision_config.num_position_embeddings",
           "must be a square of at least 4 (a grid of learned positions), got " +
               std::to_string(v.num_position_embeddings));
  if (v.out_hidden_size != hidden_size)
    r.fail("vision_config.out_hidden_size", "(" + std::to_string(v.out_hidden_size) +
                                                ") must equal text_config.hidden_size (" +
                                                std::to_string(hidden_size) + ")");
  for (size_t i = 0; i < v.deepstack_visual_indexes.size(); ++i) {
    const int64_t b = v.deepstack_visual_indexes[i];
    if (b < 0 || b >= v.depth)
      r.fail("vision_config.deepstack_visual_indexes", "entry " + std::to_string(b) +
                                                           " is not a vision block (depth " +
                                                           std::to_string(v.depth) + ")");
    for (size_t j = 0; j < i; ++j)
      if (v.deepstack_visual_indexes[j] == b)
        r.fail("vision_config.deepstack_visual_indexes",
               "lists block " + std::to_string(b) + " twice");
  }
}

}  // namespace qwen::models::qwen3vl
