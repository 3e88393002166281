// Metadata-only descriptions of the released Qwen-Image components at their real sizes (tensor
// names and shapes of the diffusers checkpoints; spec transformer-and-pipelines.md §2,
// text-encoder-and-vae.md): what plan::model_sizes() returns for the published files, without a
// 57 GB download. Nothing is allocated.
#pragma once

#include <string>
#include <vector>

#include "plan/memory_plan.h"

namespace qwen::plan::testing {

// How the big Linear weights are stored: bf16 (2 bytes), fp8 (1 byte + a scale) or GGUF Q4_K
// (4.5 bits); everything else in the compute dtype (bf16).
enum class Storage { Bf16, Fp8, Q4 };

inline void add(ComponentSize& c, const std::string& name, std::vector<int64_t> shape, Storage s) {
  TensorSize t;
  t.name = name;
  t.numel = 1;
  for (auto v : shape) t.numel *= v;
  t.linear = shape.size() == 2 && name.size() > 7 && name.substr(name.size() - 7) == ".weight" &&
             name.find("embed_tokens") == std::string::npos;
  const bool quant = t.linear && t.numel >= (int64_t(1) << 20);
  if (quant && s == Storage::Fp8) {
    t.bytes = t.numel + 4;
    t.storage = "F8_E4M3*scale";
  } else if (quant && s == Storage::Q4) {
    t.bytes = t.numel / 256 * 144;
    t.storage = "Q4_K";
  } else {
    t.bytes = t.numel * 2;
    t.storage = "BF16";
  }
  c.tensors.push_back(t);
}

inline void linear(ComponentSize& c, const std::string& name, int64_t in, int64_t out, Storage s,
                   bool bias = true) {
  add(c, name + ".weight", {out, in}, s);
  if (bias) add(c, name + ".bias", {out}, Storage::Bf16);
}

// QwenImageTransformer2DModel, 60 blocks, D = 3072: 20,430,401,088 parameters.
inline ComponentSize qwen_image_transformer(Storage s) {
  ComponentSize c;
  c.file = "transformer";
  c.format = s == Storage::Bf16 ? "BF16" : s == Storage::Fp8 ? "F8_E4M3*scale" : "Q4_K";
  const int64_t d = 3072;
  linear(c, "img_in", 64, d, s);
  add(c, "txt_norm.weight", {3584}, s);
  linear(c, "txt_in", 3584, d, s);
  linear(c, "time_text_embed.timestep_embedder.linear_1", 256, d, s);
  linear(c, "time_text_embed.timestep_embedder.linear_2", d, d, s);
  for (int b = 0; b < 60; ++b) {
    const std::string p = "transformer_blocks." + std::to_string(b) + ".";
    linear(c, p + "img_mod.1", d, 6 * d, s);
    linear(c, p + "txt_mod.1", d, 6 * d, s);
    for (const char* n : {"to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj",
                          "to_out.0", "to_add_out"})
      linear(c, p + "attn." + n, d, d, s);
    for (const char* n : {"norm_q", "norm_k", "norm_added_q", "norm_added_k"})
      add(c, p + "attn." + n + ".weight", {128}, Storage::Bf16);
    for (const char* m : {"img_mlp", "txt_mlp"}) {
      linear(c, p + m + ".net.0.proj", d, 4 * d, s);
      linear(c, p + m + ".net.2", 4 * d, d, s);
    }
  }
  linear(c, "norm_out.linear", d, 2 * d, s);
  linear(c, "proj_out", d, 64, s);
  return c;
}

// Qwen2.5-VL-7B's language model (lm_head left out, as the engine loads it), with the vision
// tower for edit models.
inline ComponentSize qwen_text_encoder(bool with_vision, Storage s = Storage::Bf16) {
  ComponentSize c;
  c.file = "text_encoder";
  c.format = "BF16";
  const int64_t h = 3584, kv = 512, inter = 18944;
  add(c, "model.language_model.embed_tokens.weight", {152064, h}, s);
  for (int l = 0; l < 28; ++l) {
    const std::string p = "model.language_model.layers." + std::to_string(l) + ".";
    linear(c, p + "self_attn.q_proj", h, h, s);
    linear(c, p + "self_attn.k_proj", h, kv, s);
    linear(c, p + "self_attn.v_proj", h, kv, s);
    linear(c, p + "self_attn.o_proj", h, h, s, false);
    linear(c, p + "mlp.gate_proj", h, inter, s, false);
    linear(c, p + "mlp.up_proj", h, inter, s, false);
    linear(c, p + "mlp.down_proj", inter, h, s, false);
    add(c, p + "input_layernorm.weight", {h}, Storage::Bf16);
    add(c, p + "post_attention_layernorm.weight", {h}, Storage::Bf16);
  }
  add(c, "model.language_model.norm.weight", {h}, Storage::Bf16);
  if (with_vision) {
    const int64_t v = 1280, vi = 3420;
    add(c, "model.visual.patch_embed.proj.weight", {v, 3, 2, 14, 14}, Storage::Bf16);
    for (int b = 0; b < 32; ++b) {
      const std::string p = "model.visual.blocks." + std::to_string(b) + ".";
      add(c, p + "norm1.weight", {v}, Storage::Bf16);
      add(c, p + "norm2.weight", {v}, Storage::Bf16);
      linear(c, p + "attn.qkv", v, 3 * v, s);
      linear(c, p + "attn.proj", v, v, s);
      linear(c, p + "mlp.gate_proj", v, vi, s);
      linear(c, p + "mlp.up_proj", v, vi, s);
      linear(c, p + "mlp.down_proj", vi, v, s);
    }
    add(c, "model.visual.merger.ln_q.weight", {v}, Storage::Bf16);
    linear(c, "model.visual.merger.mlp.0", 4 * v, 4 * v, s);
    linear(c, "model.visual.merger.mlp.2", 4 * v, h, s);
  }
  return c;
}

// AutoencoderKLQwenImage: 126,892,531 parameters (convolutions; never quantised).
inline ComponentSize qwen_vae() {
  ComponentSize c;
  c.file = "vae";
  c.format = "BF16";
  add(c, "encoder.all", {54000000}, Storage::Bf16);
  add(c, "decoder.all", {126892531 - 54000000}, Storage::Bf16);
  return c;
}

inline ModelSizes qwen_image(Storage transformer, bool edit = false, bool zero_cond_t = false) {
  ModelSizes m;
  m.transformer = qwen_image_transformer(transformer);
  m.text_encoder = qwen_text_encoder(edit);
  m.vae = qwen_vae();
  m.edit = edit;
  m.zero_cond_t = zero_cond_t;
  return m;
}

}  // namespace qwen::plan::testing
