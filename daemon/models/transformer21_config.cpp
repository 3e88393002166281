#include "models/transformer21_config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "io/config_json.h"

namespace qwen::models {

Transformer21Config Transformer21Config::from_json_text(const std::string& text,
                                                        const std::string& label) {
  const auto j = io::parse_config_object(text, label);
  if (auto it = j.find("_class_name");
      it != j.end() && it->is_string() && it->get<std::string>() != "QwenImage21Transformer2DModel")
    throw std::runtime_error(label + ": key '_class_name' is '" + it->get<std::string>() +
                             "', expected 'QwenImage21Transformer2DModel' (a Qwen-Image-2.1 "
                             "transformer)");
  Transformer21Config c;
  io::read_key(j, "patch_size", c.patch_size, label);
  io::read_key(j, "in_channels", c.in_channels, label);
  c.out_channels = c.in_channels;  // `out_channels or in_channels`
  io::read_key(j, "out_channels", c.out_channels, label);
  if (c.out_channels == 0) c.out_channels = c.in_channels;
  io::read_key(j, "num_layers", c.num_layers, label);
  io::read_key(j, "attention_head_dim", c.attention_head_dim, label);
  io::read_key(j, "num_attention_heads", c.num_attention_heads, label);
  io::read_key(j, "context_in_dim", c.context_in_dim, label);
  io::read_key(j, "mlp_ratio", c.mlp_ratio, label);
  io::read_key(j, "eps", c.eps, label);
  io::read_key(j, "causal_condition", c.causal_condition, label);
  if (auto it = j.find("axes_dims_rope"); it != j.end() && !it->is_null()) {
    if (!it->is_array() || it->size() != 3 || !(*it)[0].is_number_integer() ||
        !(*it)[1].is_number_integer() || !(*it)[2].is_number_integer())
      throw std::runtime_error(label + ": key 'axes_dims_rope' must be a list of 3 integers, got " +
                               it->dump());
    for (int a = 0; a < 3; ++a) c.axes_dims_rope[a] = (*it)[a].get<int64_t>();
  }
  try {
    c.validate();
  } catch (const std::exception& e) {
    throw std::runtime_error(label + ": " + e.what());
  }
  return c;
}

Transformer21Config Transformer21Config::from_json_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f)
    throw std::runtime_error("cannot open the Qwen-Image-2.1 transformer config '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return from_json_text(ss.str(), path);
}

void Transformer21Config::validate() const {
  auto positive = [](int64_t v, const char* name) {
    if (v <= 0)
      throw std::invalid_argument(std::string("key '") + name + "' must be positive, got " +
                                  std::to_string(v));
  };
  positive(patch_size, "patch_size");
  positive(in_channels, "in_channels");
  positive(out_channels, "out_channels");
  positive(num_layers, "num_layers");
  positive(attention_head_dim, "attention_head_dim");
  positive(num_attention_heads, "num_attention_heads");
  positive(context_in_dim, "context_in_dim");
  positive(mlp_ratio, "mlp_ratio");
  for (int a = 0; a < 3; ++a)
    if (axes_dims_rope[a] <= 0 || axes_dims_rope[a] % 2 != 0)
      throw std::invalid_argument("key 'axes_dims_rope' entries must be positive and even, got " +
                                  std::to_string(axes_dims_rope[a]));
  if (axes_dims_rope[0] + axes_dims_rope[1] + axes_dims_rope[2] != attention_head_dim)
    throw std::invalid_argument("key 'axes_dims_rope' must sum to attention_head_dim (" +
                                std::to_string(attention_head_dim) + ")");
  if (!(eps > 0)) throw std::invalid_argument("key 'eps' must be positive");
}

int64_t Transformer21Config::parameter_count() const {
  const int64_t d = inner_dim(), dh = attention_head_dim, h = mlp_hidden();
  const int64_t block = 4 * d * d + 2 * dh + 3 * d * h;              // q k v out, norm_q/k, SwiGLU
  const int64_t top = in_channels * patch_size * patch_size * d      // img_in
                      + context_in_dim + context_in_dim * d + d * d  // txt_in
                      + 256 * d + d * d                              // timestep embedder
                      + d * 4 * d                                    // modulation
                      + d * d + d * patch_size * patch_size * out_channels;  // norm_out, proj_out
  return top + num_layers * block;
}

double Transformer21Config::forward_flops(int64_t queries, double mean_keys, int64_t targets,
                                          int64_t text) const {
  const double d = double(inner_dim());
  const double block = 2.0 * double(queries) * (4.0 * d * d + 3.0 * d * double(mlp_hidden())) +
                       4.0 * double(queries) * mean_keys * d;
  const double top = 2.0 * double(queries) * double(in_channels * patch_size * patch_size) * d +
                     2.0 * double(text) * (double(context_in_dim) * d + d * d) +
                     2.0 * double(targets) * d * double(patch_size * patch_size * out_channels);
  return top + double(num_layers) * block;
}

}  // namespace qwen::models
