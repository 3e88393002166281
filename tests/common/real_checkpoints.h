// The released Qwen-Image transformer's tensors (spec §1.1), listed from the spec rather than from
// the project's module, as an independent check of the names and shapes the loader expects.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "common/st_writer.h"

namespace qwen::test {

using ShapeList = std::vector<std::pair<std::string, std::vector<int64_t>>>;

// Every tensor of the 60-layer, 20.4B-parameter transformer, with `prefix` before each key
// (ComfyUI files: "model.diffusion_model.").
inline ShapeList real_transformer_shapes(const std::string& prefix = "") {
  ShapeList top = {{"img_in.weight", {3072, 64}},
                   {"img_in.bias", {3072}},
                   {"txt_norm.weight", {3584}},
                   {"txt_in.weight", {3072, 3584}},
                   {"txt_in.bias", {3072}},
                   {"time_text_embed.timestep_embedder.linear_1.weight", {3072, 256}},
                   {"time_text_embed.timestep_embedder.linear_1.bias", {3072}},
                   {"time_text_embed.timestep_embedder.linear_2.weight", {3072, 3072}},
                   {"time_text_embed.timestep_embedder.linear_2.bias", {3072}},
                   {"norm_out.linear.weight", {6144, 3072}},
                   {"norm_out.linear.bias", {6144}},
                   {"proj_out.weight", {64, 3072}},
                   {"proj_out.bias", {64}}};
  const ShapeList block = {{"img_mod.1.weight", {18432, 3072}},
                           {"img_mod.1.bias", {18432}},
                           {"txt_mod.1.weight", {18432, 3072}},
                           {"txt_mod.1.bias", {18432}},
                           {"attn.to_q.weight", {3072, 3072}},
                           {"attn.to_q.bias", {3072}},
                           {"attn.to_k.weight", {3072, 3072}},
                           {"attn.to_k.bias", {3072}},
                           {"attn.to_v.weight", {3072, 3072}},
                           {"attn.to_v.bias", {3072}},
                           {"attn.add_q_proj.weight", {3072, 3072}},
                           {"attn.add_q_proj.bias", {3072}},
                           {"attn.add_k_proj.weight", {3072, 3072}},
                           {"attn.add_k_proj.bias", {3072}},
                           {"attn.add_v_proj.weight", {3072, 3072}},
                           {"attn.add_v_proj.bias", {3072}},
                           {"attn.norm_q.weight", {128}},
                           {"attn.norm_k.weight", {128}},
                           {"attn.norm_added_q.weight", {128}},
                           {"attn.norm_added_k.weight", {128}},
                           {"attn.to_out.0.weight", {3072, 3072}},
                           {"attn.to_out.0.bias", {3072}},
                           {"attn.to_add_out.weight", {3072, 3072}},
                           {"attn.to_add_out.bias", {3072}},
                           {"img_mlp.net.0.proj.weight", {12288, 3072}},
                           {"img_mlp.net.0.proj.bias", {12288}},
                           {"img_mlp.net.2.weight", {3072, 12288}},
                           {"img_mlp.net.2.bias", {3072}},
                           {"txt_mlp.net.0.proj.weight", {12288, 3072}},
                           {"txt_mlp.net.0.proj.bias", {12288}},
                           {"txt_mlp.net.2.weight", {3072, 12288}},
                           {"txt_mlp.net.2.bias", {3072}}};
  ShapeList shapes;
  for (const auto& [k, s] : top) shapes.push_back({prefix + k, s});
  for (int i = 0; i < 60; ++i)
    for (const auto& [k, s] : block)
      shapes.push_back({prefix + "transformer_blocks." + std::to_string(i) + "." + k, s});
  return shapes;
}

// A BF16 safetensors file with these tensors whose data is a hole (sparse: no disk used, reads as
// zeros). Returns the number of parameters.
inline uint64_t write_sparse_bf16(const std::filesystem::path& p, const ShapeList& shapes) {
  nlohmann::json h = nlohmann::json::object();
  uint64_t off = 0, params = 0;
  for (const auto& [k, s] : shapes) {
    uint64_t n = 1;
    for (auto d : s) n *= d;
    params += n;
    h[k] = {{"dtype", "BF16"}, {"shape", s}, {"data_offsets", {off, off + 2 * n}}};
    off += 2 * n;
  }
  std::string header = h.dump();
  while (header.size() % 8) header.push_back(' ');  // like the reference writer: aligned data
  const std::string bytes = st_raw(header, "");
  write_file(p, bytes);
  if (::truncate(p.c_str(), static_cast<off_t>(bytes.size() + off)) != 0)
    throw std::runtime_error("cannot extend " + p.string());
  return params;
}

}  // namespace qwen::test
