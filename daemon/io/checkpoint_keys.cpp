// Key normalisation and shape-derived configurations for single-file checkpoints.
#include <algorithm>
#include <set>

#include "io/checkpoint.h"
#include "io/transformer21_keys.h"
#include "io/vae21_keys.h"

namespace qwen::io {

using nlohmann::json;

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// Strips `prefix` from every name when at least one name has it.
void strip_if_present(std::map<std::string, std::string>& names, const std::string& prefix) {
  bool any = false;
  for (const auto& [from, to] : names) any = any || starts_with(to, prefix);
  if (!any) return;
  for (auto& [from, to] : names)
    if (starts_with(to, prefix)) to = to.substr(prefix.size());
}

// Logical shapes by canonical name (io/tensor_format.h TensorFormat::shape).
struct Shape {
  const std::string& name;
  const std::vector<int64_t>& shape;
};
const TensorFormat* find(const FileFormat& f, const std::string& name) { return f.find(name); }

Shape need(const FileFormat& f, const std::string& name, const char* what) {
  const TensorFormat* t = f.find(name);
  if (!t)
    throw CheckpointError(f.source + ": cannot derive the " + what + " configuration: tensor '" +
                          name + "' is missing");
  return Shape{t->key, t->shape};
}

int64_t dim(const Shape& t, size_t i) {
  if (t.shape.size() <= i)
    throw CheckpointError("tensor '" + t.name + "' has shape " + shape_to_string(t.shape) +
                          ", expected at least " + std::to_string(i + 1) + " dimensions");
  return t.shape[i];
}

// Number of distinct N in keys `<prefix>N.<...>`, checking they are 0..N-1.
int count_indexed(const FileFormat& f, const std::string& prefix) {
  std::set<int> seen;
  for (const auto& [name, t] : f.tensors) {
    if (!starts_with(name, prefix)) continue;
    const std::string rest = name.substr(prefix.size());
    const size_t dot = rest.find('.');
    const std::string num = rest.substr(0, dot);
    if (num.empty() || num.size() > 6 || !std::all_of(num.begin(), num.end(), ::isdigit)) continue;
    seen.insert(std::stoi(num));
  }
  int n = 0;
  while (seen.count(n)) ++n;
  if (static_cast<size_t>(n) != seen.size())
    throw CheckpointError(f.source + ": blocks under '" + prefix + "' are not numbered 0.." +
                          std::to_string(seen.size() - 1) + " (block " + std::to_string(n) +
                          " is missing)");
  return n;
}

}  // namespace

const char* component_kind_name(ComponentKind k) {
  switch (k) {
    case ComponentKind::Transformer:
      return "transformer";
    case ComponentKind::TextEncoder:
      return "text_encoder";
    case ComponentKind::Vae:
      return "vae";
  }
  return "?";
}

namespace {

void transformer_names(std::map<std::string, std::string>& names, bool* zero_cond_t) {
  strip_if_present(names, "model.diffusion_model.");
  strip_if_present(names, "diffusion_model.");
  bool marker = false;
  for (auto it = names.begin(); it != names.end();) {
    if (it->second == "__index_timestep_zero__") {
      marker = true;
      it = names.erase(it);
    } else {
      ++it;
    }
  }
  if (zero_cond_t) *zero_cond_t = marker;
}

void text_encoder_names(std::map<std::string, std::string>& names) {
  // Wrapper prefix (e.g. ComfyUI `text_encoders.qwen25_7b.transformer.`): whatever precedes the
  // embedding table's `model.`.
  std::string prefix;
  for (const auto& [from, name] : names) {
    for (const char* anchor :
         {"model.language_model.embed_tokens.weight", "model.embed_tokens.weight"}) {
      if (ends_with(name, anchor) && name.size() > std::strlen(anchor)) {
        prefix = name.substr(0, name.size() - std::strlen(anchor));
        goto found;
      }
    }
  }
found:
  for (auto& [from, k] : names) {
    if (!prefix.empty() && starts_with(k, prefix)) k = k.substr(prefix.size());
    if (starts_with(k, "model.language_model.") || starts_with(k, "model.visual.")) continue;
    // ComfyUI's Llama2_ (comfy/text_encoders/llama.py) holds the lm_head itself, so a state dict of
    // its Qwen3VL (comfy/text_encoders/qwen3vl.py: `model` = Llama2_, `visual`) names it
    // `model.lm_head.*`; transformers' checkpoints keep it at the top.
    if (starts_with(k, "model.lm_head."))
      k = k.substr(6);
    else if (starts_with(k, "visual."))
      k = "model." + k;
    else if (starts_with(k, "model."))
      k = "model.language_model." + k.substr(6);
  }
}

}  // namespace

std::string wan_vae_key_to_diffusers(const std::string& key) {
  if (starts_with(key, "conv1.")) return "quant_conv." + key.substr(6);
  if (starts_with(key, "conv2.")) return "post_quant_conv." + key.substr(6);
  const bool enc = starts_with(key, "encoder."), dec = starts_with(key, "decoder.");
  if (!enc && !dec) return key;
  const std::string side = key.substr(0, 8);
  std::string r = key.substr(8);
  auto residual = [](std::string t) {
    static const std::pair<const char*, const char*> kMap[] = {{"residual.0.", "norm1."},
                                                               {"residual.2.", "conv1."},
                                                               {"residual.3.", "norm2."},
                                                               {"residual.6.", "conv2."},
                                                               {"shortcut.", "conv_shortcut."}};
    for (const auto& [from, to] : kMap)
      if (starts_with(t, from)) return to + t.substr(std::strlen(from));
    return t;
  };
  auto take_index = [](const std::string& s, size_t from, int* n) -> size_t {
    size_t dot = s.find('.', from);
    if (dot == std::string::npos || dot == from) return std::string::npos;
    const std::string num = s.substr(from, dot - from);
    if (!std::all_of(num.begin(), num.end(), ::isdigit) || num.size() > 4) return std::string::npos;
    *n = std::stoi(num);
    return dot + 1;
  };
  if (starts_with(r, "conv1.")) return side + "conv_in." + r.substr(6);
  if (starts_with(r, "head.0.")) return side + "norm_out." + r.substr(7);
  if (starts_with(r, "head.2.")) return side + "conv_out." + r.substr(7);
  if (starts_with(r, "middle.0.")) return side + "mid_block.resnets.0." + residual(r.substr(9));
  if (starts_with(r, "middle.1.")) return side + "mid_block.attentions.0." + r.substr(9);
  if (starts_with(r, "middle.2.")) return side + "mid_block.resnets.1." + residual(r.substr(9));
  int n = 0;
  if (enc && starts_with(r, "downsamples.")) {
    size_t rest = take_index(r, 12, &n);
    if (rest != std::string::npos)
      return side + "down_blocks." + std::to_string(n) + "." + residual(r.substr(rest));
  }
  if (dec && starts_with(r, "upsamples.")) {
    size_t rest = take_index(r, 10, &n);
    if (rest != std::string::npos) {
      const std::string block = side + "up_blocks." + std::to_string(n / 4) + ".";
      if (n % 4 == 3) return block + "upsamplers.0." + r.substr(rest);
      return block + "resnets." + std::to_string(n % 4) + "." + residual(r.substr(rest));
    }
  }
  return key;
}

namespace {

void vae_names(std::map<std::string, std::string>& names) {
  strip_if_present(names, "first_stage_model.");
  strip_if_present(names, "vae.");
  bool wan = false;
  for (const auto& [from, name] : names)
    if (starts_with(name, "encoder.conv1.") || starts_with(name, "decoder.conv1.") ||
        starts_with(name, "encoder.downsamples.") || starts_with(name, "decoder.upsamples.") ||
        starts_with(name, "encoder.middle.") || starts_with(name, "decoder.middle."))
      wan = true;
  if (!wan) return;
  std::vector<std::string> current;
  for (const auto& [from, name] : names) current.push_back(name);
  const bool wan22 = is_wan22_vae_layout(current);  // the Qwen-Image-2.1 VAE's original files
  for (auto& [from, k] : names)
    k = wan22 ? wan22_vae_key_to_diffusers(k) : wan_vae_key_to_diffusers(k);
}

// Applies canonical_names() to a store (two passes through temporary names, so that chains
// a->b, b->c cannot collide mid-way).
void apply_names(TensorStore& store, const std::map<std::string, std::string>& names) {
  std::vector<std::pair<std::string, std::string>> moves;
  for (const auto& name : store.names()) {
    const auto it = names.find(name);
    if (it == names.end())
      store.erase(name);
    else if (it->second != name)
      moves.emplace_back(name, it->second);
  }
  for (size_t i = 0; i < moves.size(); ++i)
    store.rename(moves[i].first, "\x01tmp" + std::to_string(i));
  for (size_t i = 0; i < moves.size(); ++i)
    store.rename("\x01tmp" + std::to_string(i), moves[i].second);
}

}  // namespace

std::map<std::string, std::string> canonical_names(ComponentKind kind,
                                                   const std::vector<std::string>& stored,
                                                   bool* zero_cond_t) {
  std::map<std::string, std::string> names;
  for (const auto& n : stored) names.emplace(n, n);
  if (zero_cond_t) *zero_cond_t = false;
  switch (kind) {
    case ComponentKind::Transformer:
      transformer_names(names, zero_cond_t);
      break;
    case ComponentKind::TextEncoder:
      text_encoder_names(names);
      break;
    case ComponentKind::Vae:
      vae_names(names);
      break;
  }
  std::map<std::string, std::string> seen;  // canonical -> stored
  for (const auto& [from, to] : names)
    if (const auto [it, fresh] = seen.emplace(to, from); !fresh)
      throw CheckpointError("tensors '" + it->second + "' and '" + from +
                            "' both name the canonical tensor '" + to + "'");
  return names;
}

bool normalize_transformer_keys(TensorStore& store) {
  bool marker = false;
  apply_names(store, canonical_names(ComponentKind::Transformer, store.names(), &marker));
  return marker;
}

void normalize_text_encoder_keys(TensorStore& store) {
  apply_names(store, canonical_names(ComponentKind::TextEncoder, store.names()));
}

void normalize_vae_keys(TensorStore& store) {
  apply_names(store, canonical_names(ComponentKind::Vae, store.names()));
}

std::optional<ComponentKind> detect_component_kind(const TensorStore& store) {
  return detect_component_kind(store.names());
}

std::optional<ComponentKind> detect_component_kind(const std::vector<std::string>& names) {
  bool te = false, tr = false, vae_enc = false, vae_dec = false;
  for (const auto& name : names) {
    if (ends_with(name, "embed_tokens.weight")) te = true;
    if (ends_with(name, "img_in.weight") ||
        name.find("transformer_blocks.0.img_mod.") != std::string::npos)
      tr = true;
    if (ends_with(name, "encoder.conv_in.weight") || ends_with(name, "encoder.conv1.weight"))
      vae_enc = true;
    if (ends_with(name, "decoder.conv_in.weight") || ends_with(name, "decoder.conv1.weight"))
      vae_dec = true;
  }
  if (tr + te + (vae_enc || vae_dec) != 1) return std::nullopt;
  if (tr) return ComponentKind::Transformer;
  if (te) return ComponentKind::TextEncoder;
  return ComponentKind::Vae;
}

// ---------------------------------------------------------------------------------------------

json transformer_config_from_shapes(const FileFormat& s, bool zero_cond_t) {
  if (is_transformer21_format(s)) return transformer21_config_from_shapes(s);  // Qwen-Image-2.1
  const Shape img_in = need(s, "img_in.weight", "transformer");
  const Shape txt_in = need(s, "txt_in.weight", "transformer");
  const Shape proj_out = need(s, "proj_out.weight", "transformer");
  const int layers = count_indexed(s, "transformer_blocks.");
  if (layers == 0)
    throw CheckpointError(s.source + ": no transformer_blocks.* tensors (not a transformer?)");
  const Shape norm_q = need(s, "transformer_blocks.0.attn.norm_q.weight", "transformer");
  const int64_t inner = dim(img_in, 0), head_dim = dim(norm_q, 0);
  if (head_dim <= 0 || inner % head_dim != 0)
    throw CheckpointError(s.source + ": inner dimension " + std::to_string(inner) +
                          " is not a multiple of the head size " + std::to_string(head_dim));
  const int patch = 2;  // not visible in shapes; every released model uses 2
  json axes = head_dim == 128
                  ? json::array({16, 56, 56})
                  : json::array({head_dim / 8, (head_dim - head_dim / 8) / 2,
                                 head_dim - head_dim / 8 - (head_dim - head_dim / 8) / 2});
  return json{
      {"_class_name", "QwenImageTransformer2DModel"},
      {"patch_size", patch},
      {"in_channels", dim(img_in, 1)},
      {"out_channels", dim(proj_out, 0) / (patch * patch)},
      {"num_layers", layers},
      {"attention_head_dim", head_dim},
      {"num_attention_heads", inner / head_dim},
      {"joint_attention_dim", dim(txt_in, 1)},
      {"guidance_embeds", find(s, "time_text_embed.guidance_embedder.linear_1.weight") != nullptr},
      {"axes_dims_rope", axes},
      {"zero_cond_t", zero_cond_t},
      {"use_additional_t_cond", find(s, "time_text_embed.addition_t_embedding.weight") != nullptr},
      // Qwen-Image-Layered is the only model with the extra timestep table, and it uses the
      // Layer3D RoPE with it (issue #16).
      {"use_layer3d_rope", find(s, "time_text_embed.addition_t_embedding.weight") != nullptr}};
}

// Qwen3-VL (Qwen-Image-2.1's encoder, e.g. ComfyUI's qwen3vl_8b_*.safetensors: the module tree
// of comfy/text_encoders/qwen3vl.py, `model.*` + `visual.*`, already mapped to the canonical
// names). What the shapes cannot tell takes the released Qwen3-VL values: rope_theta 5e6, M-RoPE
// sections [24, 20, 20] (head size 128 only), 16 vision heads, the DeepStack layers of the 2B/4B
// (depth 24: 5, 11, 17) and 8B/32B (depth 27: 8, 16, 24) towers; anything else needs the model's
// config.json.
static json qwen3vl_config_from_shapes(const FileFormat& s) {
  const std::string lm = "model.language_model.";
  const Shape emb = need(s, lm + "embed_tokens.weight", "text encoder");
  const int layers = count_indexed(s, lm + "layers.");
  if (layers == 0) throw CheckpointError(s.source + ": no model.language_model.layers.* tensors");
  const std::string l0 = lm + "layers.0.";
  const Shape qn = need(s, l0 + "self_attn.q_norm.weight", "text encoder");
  const Shape q = need(s, l0 + "self_attn.q_proj.weight", "text encoder");
  const Shape k = need(s, l0 + "self_attn.k_proj.weight", "text encoder");
  const Shape gate = need(s, l0 + "mlp.gate_proj.weight", "text encoder");
  const int64_t head_dim = dim(qn, 0);
  if (head_dim != 128)
    throw CheckpointError(s.source + ": a Qwen3-VL text encoder with a head size of " +
                          std::to_string(head_dim) +
                          " (not 128): its M-RoPE sections cannot be told from the file; give "
                          "the model folder (text_encoder/config.json) instead");
  json text{
      {"model_type", "qwen3_vl_text"},
      {"hidden_act", "silu"},
      {"hidden_size", dim(emb, 1)},
      {"vocab_size", dim(emb, 0)},
      {"num_hidden_layers", layers},
      {"head_dim", head_dim},
      {"num_attention_heads", dim(q, 0) / head_dim},
      {"num_key_value_heads", dim(k, 0) / head_dim},
      {"intermediate_size", dim(gate, 0)},
      {"attention_bias", find(s, l0 + "self_attn.q_proj.bias") != nullptr},
      {"rms_norm_eps", 1e-6},
      {"rope_theta", 5000000.0},
      {"rope_scaling",
       {{"mrope_interleaved", true}, {"mrope_section", {24, 20, 20}}, {"rope_type", "default"}}}};
  json cfg{{"architectures", {"Qwen3VLForConditionalGeneration"}},
           {"model_type", "qwen3_vl"},
           {"text_config", text},
           {"tie_word_embeddings", false},
           {"image_token_id", 151655},
           {"video_token_id", 151656},
           {"vision_start_token_id", 151652},
           {"vision_end_token_id", 151653}};
  const std::string vis = "model.visual.";
  const int depth = count_indexed(s, vis + "blocks.");
  if (depth == 0) return cfg;
  const Shape patch = need(s, vis + "patch_embed.proj.weight", "vision tower");
  const Shape pos = need(s, vis + "pos_embed.weight", "vision tower");
  const Shape fc1 = need(s, vis + "blocks.0.mlp.linear_fc1.weight", "vision tower");
  const Shape mfc1 = need(s, vis + "merger.linear_fc1.weight", "vision tower");
  const Shape mfc2 = need(s, vis + "merger.linear_fc2.weight", "vision tower");
  const int64_t vh = dim(patch, 0);
  int64_t merge = 1;
  while (merge * merge * vh < dim(mfc1, 1)) ++merge;
  const int deep = count_indexed(s, vis + "deepstack_merger_list.");
  json indexes = json::array();
  if (deep == 3 && depth == 27)
    indexes = {8, 16, 24};
  else if (deep == 3 && depth == 24)
    indexes = {5, 11, 17};
  else if (deep != 0)
    throw CheckpointError(s.source + ": a Qwen3-VL vision tower of depth " + std::to_string(depth) +
                          " with " + std::to_string(deep) +
                          " DeepStack mergers: their layers cannot be told from the file; give "
                          "the model folder (text_encoder/config.json) instead");
  cfg["vision_config"] = {{"depth", depth},
                          {"hidden_size", vh},
                          {"hidden_act", "gelu_pytorch_tanh"},
                          {"num_heads", 16},
                          {"in_channels", dim(patch, 1)},
                          {"temporal_patch_size", dim(patch, 2)},
                          {"patch_size", dim(patch, 4)},
                          {"intermediate_size", dim(fc1, 0)},
                          {"num_position_embeddings", dim(pos, 0)},
                          {"spatial_merge_size", merge},
                          {"out_hidden_size", dim(mfc2, 0)},
                          {"deepstack_visual_indexes", indexes}};
  return cfg;
}

json text_encoder_config_from_shapes(const FileFormat& s) {
  const std::string lm = "model.language_model.";
  if (find(s, lm + "layers.0.self_attn.q_norm.weight")) return qwen3vl_config_from_shapes(s);
  const Shape emb = need(s, lm + "embed_tokens.weight", "text encoder");
  const int layers = count_indexed(s, lm + "layers.");
  if (layers == 0) throw CheckpointError(s.source + ": no model.language_model.layers.* tensors");
  const Shape k = need(s, lm + "layers.0.self_attn.k_proj.weight", "text encoder");
  const Shape gate = need(s, lm + "layers.0.mlp.gate_proj.weight", "text encoder");
  const int64_t hidden = dim(emb, 1), kv_dim = dim(k, 0);
  int64_t head_dim = 128;
  while (head_dim > 1 && (hidden % head_dim || kv_dim % head_dim)) head_dim /= 2;
  const int64_t half = head_dim / 2;
  json cfg{{"architectures", {"Qwen2_5_VLForConditionalGeneration"}},
           {"model_type", "qwen2_5_vl"},
           {"hidden_act", "silu"},
           {"hidden_size", hidden},
           {"intermediate_size", dim(gate, 0)},
           {"num_hidden_layers", layers},
           {"num_attention_heads", hidden / head_dim},
           {"num_key_value_heads", kv_dim / head_dim},
           {"vocab_size", dim(emb, 0)},
           {"rms_norm_eps", 1e-6},
           {"rope_theta", 1000000.0},
           {"rope_scaling",
            {{"mrope_section",
              {half / 4, (half - half / 4) / 2, half - half / 4 - (half - half / 4) / 2}},
             {"rope_type", "default"},
             {"type", "default"}}},
           {"max_position_embeddings", 128000},
           {"attention_dropout", 0.0},
           {"use_sliding_window", false},
           {"tie_word_embeddings", find(s, "lm_head.weight") == nullptr},
           {"bos_token_id", 151643},
           {"eos_token_id", 151645},
           {"image_token_id", 151655},
           {"video_token_id", 151656},
           {"vision_start_token_id", 151652},
           {"vision_end_token_id", 151653},
           {"vision_token_id", 151654}};
  const std::string vis = "model.visual.";
  const int depth = count_indexed(s, vis + "blocks.");
  if (depth > 0) {
    const Shape patch = need(s, vis + "patch_embed.proj.weight", "vision tower");
    const Shape vgate = need(s, vis + "blocks.0.mlp.gate_proj.weight", "vision tower");
    const Shape merger = need(s, vis + "merger.mlp.2.weight", "vision tower");
    const int64_t vh = dim(patch, 0);
    const int64_t vhead = vh % 80 == 0 ? 80 : vh % 64 == 0 ? 64 : 16;
    json full = json::array();
    for (int i = 0; i < depth; ++i)
      if (depth >= 8 ? (i + 1) % 8 == 0 : i == depth - 1) full.push_back(i);
    cfg["vision_config"] = {{"depth", depth},
                            {"hidden_size", vh},
                            {"hidden_act", "silu"},
                            {"intermediate_size", dim(vgate, 0)},
                            {"num_heads", vh / vhead},
                            {"in_channels", dim(patch, 1)},
                            {"patch_size", dim(patch, 4)},
                            {"temporal_patch_size", dim(patch, 2)},
                            {"spatial_merge_size", 2},
                            {"window_size", 112},
                            {"fullatt_block_indexes", full},
                            {"out_hidden_size", dim(merger, 0)},
                            {"tokens_per_second", 2}};
  }
  return cfg;
}

json vae_config_from_shapes(const FileFormat& s) {
  if (is_vae21_format(s)) return vae21_config_from_shapes(s);  // AutoencoderKLQwenImage21
  const Shape conv_in = need(s, "encoder.conv_in.weight", "VAE");
  const Shape pq = need(s, "post_quant_conv.weight", "VAE");
  const int64_t base = dim(conv_in, 0);
  const int blocks = count_indexed(s, "encoder.down_blocks.");
  json dim_mult = json::array(), temporal = json::array();
  int res_in_level = 0, num_res = -1;
  auto close_level = [&](int64_t channels) {
    if (num_res < 0) num_res = res_in_level;
    if (res_in_level != num_res)
      throw CheckpointError(s.source + ": VAE encoder levels have different block counts");
    dim_mult.push_back(channels / base);
    res_in_level = 0;
  };
  int64_t channels = base;
  for (int i = 0; i < blocks; ++i) {
    const std::string p = "encoder.down_blocks." + std::to_string(i) + ".";
    if (find(s, p + "resample.1.weight")) {
      close_level(channels);
      temporal.push_back(find(s, p + "time_conv.weight") != nullptr);
    } else {
      channels = dim(need(s, p + "conv1.weight", "VAE"), 0);
      ++res_in_level;
    }
  }
  if (res_in_level == 0)
    throw CheckpointError(s.source +
                          ": VAE encoder has no residual blocks after its last resample");
  close_level(channels);
  return json{{"_class_name", "AutoencoderKLQwenImage"},
              {"base_dim", base},
              {"z_dim", dim(pq, 0)},
              {"dim_mult", dim_mult},
              {"num_res_blocks", num_res},
              {"attn_scales", json::array()},
              {"temperal_downsample", temporal},
              {"dropout", 0.0},
              {"input_channels", dim(conv_in, 1)},
              {"latents_mean",
               {-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134,
                -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921}},
              {"latents_std",
               {2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526,
                2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160}}};
}

}  // namespace qwen::io
