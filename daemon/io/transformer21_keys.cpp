#include "io/transformer21_keys.h"

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "io/checkpoint.h"

namespace qwen::io {

namespace {

const std::vector<int64_t>& shape_of(const FileFormat& f, const std::string& name) {
  const TensorFormat* t = f.find(name);
  if (!t)
    throw CheckpointError(f.source +
                          ": cannot derive the Qwen-Image-2.1 transformer configuration: tensor '" +
                          name + "' is missing");
  return t->shape;
}

int64_t dim(const FileFormat& f, const std::string& name, size_t i, size_t rank) {
  const auto& s = shape_of(f, name);
  if (s.size() != rank)
    throw CheckpointError(f.source + ": tensor '" + name + "' has shape " + shape_to_string(s) +
                          ", expected " + std::to_string(rank) + " dimensions");
  return s[i];
}

}  // namespace

bool is_transformer21_format(const FileFormat& format) {
  return format.find("modulation.1.weight") != nullptr ||
         format.find("txt_in.in_layer.weight") != nullptr;
}

nlohmann::json transformer21_config_from_shapes(const FileFormat& f) {
  const int64_t inner = dim(f, "img_in.weight", 0, 2);
  const int64_t in_channels = dim(f, "img_in.weight", 1, 2);
  const int64_t out_channels = dim(f, "proj_out.weight", 0, 2);
  const int64_t context = dim(f, "txt_in.in_layer.weight", 1, 2);
  std::set<int> blocks;
  const std::string prefix = "transformer_blocks.";
  for (const auto& [name, t] : f.tensors) {
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string num =
        name.substr(prefix.size(), name.find('.', prefix.size()) - prefix.size());
    if (!num.empty() && num.size() <= 6 && std::all_of(num.begin(), num.end(), ::isdigit))
      blocks.insert(std::stoi(num));
  }
  if (blocks.empty())
    throw CheckpointError(f.source + ": no transformer_blocks.* tensors (not a transformer?)");
  const int layers = static_cast<int>(blocks.size());
  if (*blocks.rbegin() != layers - 1)
    throw CheckpointError(f.source + ": transformer blocks are not numbered 0.." +
                          std::to_string(layers - 1));
  const int64_t head_dim = dim(f, "transformer_blocks.0.attn.norm_q.weight", 0, 1);
  if (head_dim <= 0 || inner % head_dim != 0)
    throw CheckpointError(f.source + ": inner dimension " + std::to_string(inner) +
                          " is not a multiple of the head size " + std::to_string(head_dim));
  const bool fused = f.find("transformer_blocks.0.img_mlp.gate_up.weight") != nullptr;
  const int64_t hidden = fused ? dim(f, "transformer_blocks.0.img_mlp.gate_up.weight", 0, 2) / 2
                               : dim(f, "transformer_blocks.0.img_mlp.proj.weight", 0, 2);
  if (hidden % inner != 0)
    throw CheckpointError(f.source + ": SwiGLU width " + std::to_string(hidden) +
                          " is not a multiple of the inner dimension " + std::to_string(inner));
  // Not visible in shapes: even axes, 1/8 of the head for the frame (128 -> 16, 56, 56).
  const int64_t a0 = 2 * std::max<int64_t>(1, head_dim / 16), a1 = 2 * ((head_dim - a0) / 4);
  nlohmann::json axes = nlohmann::json::array({a0, a1, head_dim - a0 - a1});
  nlohmann::json cfg{{"_class_name", "QwenImage21Transformer2DModel"},
                     {"patch_size", 1},
                     {"in_channels", in_channels},
                     {"num_layers", layers},
                     {"attention_head_dim", head_dim},
                     {"num_attention_heads", inner / head_dim},
                     {"context_in_dim", context},
                     {"mlp_ratio", hidden / inner},
                     {"axes_dims_rope", axes},
                     {"eps", 1e-6},
                     {"causal_condition", true}};
  // out_channels only when it differs: diffusers writes null for "same as in_channels", and a
  // folder's config.json compared key by key with this one (ModelFolder::weights) must not
  // disagree over 64 vs null.
  if (out_channels != in_channels) cfg["out_channels"] = out_channels;
  return cfg;
}

}  // namespace qwen::io
