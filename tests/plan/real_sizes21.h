// Metadata-only descriptions of the released Qwen-Image-2.1 components at their real sizes
// (issue #15): what plan::model_sizes() returns for the published diffusers folder, without the
// download. The transformer is Transformer21Config's defaults (= diffusers 0.42.1's
// QwenImage21Transformer2DModel constructor defaults: 32 single-stream blocks of 32 heads x 128,
// context 4096, SwiGLU 3x, no biases; Transformer21Config::parameter_count() = 7,115,124,736);
// the text encoder Qwen3-VL-8B-Instruct's published configuration (language model 36 layers,
// hidden 4096, 32 / 8 heads, MLP 12288, vocab 151936, lm_head untied and not loaded; vision tower
// 27 blocks of 1152, MLP 4304, patch 16, a merger and three deepstack mergers to 4096); the VAE an
// approximation (its parameters are far below the planner's resolution: 0.5 GiB counted).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "plan/real_sizes.h"

namespace qwen::plan::testing {

// Tensor names and shapes as the released files have them.
using Shapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;

// QwenImage21Transformer2DModel at the released configuration (no biases).
inline Shapes qwen21_transformer_shapes() {
  Shapes v;
  const int64_t d = 4096, ctx = 4096, hidden = 3 * d;
  auto lin = [&](const std::string& n, int64_t in, int64_t out) {
    v.push_back({n + ".weight", {out, in}});
  };
  lin("img_in", 64, d);
  v.push_back({"txt_in.text_norm.weight", {ctx}});
  lin("txt_in.in_layer", ctx, d);
  lin("txt_in.out_layer", d, d);
  lin("time_text_embed.timestep_embedder.linear_1", 256, d);
  lin("time_text_embed.timestep_embedder.linear_2", d, d);
  lin("modulation.1", d, 4 * d);
  for (int b = 0; b < 32; ++b) {
    const std::string p = "transformer_blocks." + std::to_string(b) + ".";
    for (const char* n : {"to_q", "to_k", "to_v", "to_out.0"}) lin(p + "attn." + n, d, d);
    v.push_back({p + "attn.norm_q.weight", {128}});
    v.push_back({p + "attn.norm_k.weight", {128}});
    lin(p + "img_mlp.proj", d, hidden);
    lin(p + "img_mlp.gate_layer", d, hidden);
    lin(p + "img_mlp.out", hidden, d);
  }
  lin("norm_out.linear", d, d);
  lin("proj_out", d, 64);
  return v;
}

// Qwen3-VL-8B: the language model (with `lm_head` when `with_lm_head`: the file has it, the engine
// does not load it) and the vision tower.
inline Shapes qwen3vl_8b_shapes(bool with_lm_head) {
  Shapes s;
  const int64_t h = 4096, kv = 1024, inter = 12288, vocab = 151936;
  auto lin = [&](const std::string& n, int64_t in, int64_t out, bool bias) {
    s.push_back({n + ".weight", {out, in}});
    if (bias) s.push_back({n + ".bias", {out}});
  };
  s.push_back({"model.language_model.embed_tokens.weight", {vocab, h}});
  for (int l = 0; l < 36; ++l) {
    const std::string p = "model.language_model.layers." + std::to_string(l) + ".";
    lin(p + "self_attn.q_proj", h, h, false);
    lin(p + "self_attn.k_proj", h, kv, false);
    lin(p + "self_attn.v_proj", h, kv, false);
    lin(p + "self_attn.o_proj", h, h, false);
    s.push_back({p + "self_attn.q_norm.weight", {128}});
    s.push_back({p + "self_attn.k_norm.weight", {128}});
    lin(p + "mlp.gate_proj", h, inter, false);
    lin(p + "mlp.up_proj", h, inter, false);
    lin(p + "mlp.down_proj", inter, h, false);
    s.push_back({p + "input_layernorm.weight", {h}});
    s.push_back({p + "post_attention_layernorm.weight", {h}});
  }
  s.push_back({"model.language_model.norm.weight", {h}});
  const int64_t v = 1152, vi = 4304;
  s.push_back({"model.visual.patch_embed.proj.weight", {v, 3, 2, 16, 16}});
  s.push_back({"model.visual.patch_embed.proj.bias", {v}});
  s.push_back({"model.visual.pos_embed.weight", {2304, v}});
  for (int b = 0; b < 27; ++b) {
    const std::string p = "model.visual.blocks." + std::to_string(b) + ".";
    for (const char* n : {"norm1", "norm2"}) {
      s.push_back({p + n + ".weight", {v}});
      s.push_back({p + n + ".bias", {v}});
    }
    lin(p + "attn.qkv", v, 3 * v, true);
    lin(p + "attn.proj", v, v, true);
    lin(p + "mlp.linear_fc1", v, vi, true);
    lin(p + "mlp.linear_fc2", vi, v, true);
  }
  for (const std::string m : {"merger", "deepstack_merger_list.0", "deepstack_merger_list.1",
                              "deepstack_merger_list.2"}) {
    s.push_back({"model.visual." + m + ".norm.weight", {4 * v}});
    s.push_back({"model.visual." + m + ".norm.bias", {4 * v}});
    lin("model.visual." + m + ".linear_fc1", 4 * v, 4 * v, true);
    lin("model.visual." + m + ".linear_fc2", 4 * v, h, true);
  }
  if (with_lm_head) s.push_back({"lm_head.weight", {vocab, h}});
  return s;
}

inline ComponentSize component_of(const Shapes& shapes, const std::string& file, Storage s) {
  ComponentSize c;
  c.file = file;
  c.format = s == Storage::Bf16 ? "BF16" : s == Storage::Fp8 ? "F8_E4M3*scale" : "Q4_K";
  for (const auto& [name, shape] : shapes) add(c, name, shape, s);
  return c;
}

// QwenImage21Transformer2DModel at the released configuration:
// Transformer21Config::parameter_count() = 7,115,124,736.
inline ComponentSize qwen21_transformer(Storage s) {
  return component_of(qwen21_transformer_shapes(), "transformer", s);
}

// Qwen3-VL-8B as the engine loads it (lm_head left out; vision tower in: 2.1 always loads it).
inline ComponentSize qwen3vl_8b_text_encoder() {
  auto c = component_of(qwen3vl_8b_shapes(false), "text_encoder", Storage::Bf16);
  c.format = "BF16";
  return c;
}

inline ComponentSize qwen21_vae() {
  ComponentSize c;
  c.file = "vae";
  c.format = "BF16";
  add(c, "encoder.all", {int64_t(1) << 27}, Storage::Bf16);
  add(c, "decoder.all", {int64_t(1) << 27}, Storage::Bf16);
  return c;
}

inline ModelSizes qwen_image21(Storage transformer) {
  ModelSizes m;
  m.transformer = qwen21_transformer(transformer);
  m.text_encoder = qwen3vl_8b_text_encoder();
  m.vae = qwen21_vae();
  m.dim = 4096;
  m.layers = 32;
  m.text_hidden = 4096;
  m.text_intermediate = 12288;
  m.edit = true;
  m.qwen21 = true;
  return m;
}

}  // namespace qwen::plan::testing
