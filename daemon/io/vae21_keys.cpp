#include "io/vae21_keys.h"

#include <algorithm>
#include <cctype>
#include <set>

namespace qwen::io {

using nlohmann::json;

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

// "<digits>." at `from`: the number, and the position after the dot (npos when absent).
size_t take_index(const std::string& s, size_t from, int* n) {
  const size_t dot = s.find('.', from);
  if (dot == std::string::npos || dot == from || dot - from > 4) return std::string::npos;
  for (size_t i = from; i < dot; ++i)
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return std::string::npos;
  *n = std::stoi(s.substr(from, dot - from));
  return dot + 1;
}

// Wan ResidualBlock's Sequential (residual.0 RMS_norm, .2 conv, .3 RMS_norm, .6 conv) and
// shortcut -> diffusers names.
std::string residual_name(const std::string& t) {
  static const std::pair<const char*, const char*> kMap[] = {{"residual.0.", "norm1."},
                                                             {"residual.2.", "conv1."},
                                                             {"residual.3.", "norm2."},
                                                             {"residual.6.", "conv2."},
                                                             {"shortcut.", "conv_shortcut."}};
  for (const auto& [from, to] : kMap)
    if (starts_with(t, from)) return to + t.substr(std::string(from).size());
  return t;
}

}  // namespace

bool is_wan22_vae_layout(const std::vector<std::string>& names) {
  for (const auto& n : names) {
    int i = 0;
    for (const char* side : {"encoder.downsamples.", "decoder.upsamples."}) {
      if (!starts_with(n, side)) continue;
      const size_t rest = take_index(n, std::string(side).size(), &i);
      const std::string inner = side[0] == 'e' ? "downsamples." : "upsamples.";
      if (rest != std::string::npos && n.compare(rest, inner.size(), inner) == 0) return true;
    }
  }
  return false;
}

std::string wan22_vae_key_to_diffusers(const std::string& key) {
  if (starts_with(key, "conv1.")) return "quant_conv." + key.substr(6);
  if (starts_with(key, "conv2.")) return "post_quant_conv." + key.substr(6);
  const bool enc = starts_with(key, "encoder."), dec = starts_with(key, "decoder.");
  if (!enc && !dec) return key;
  const std::string side = key.substr(0, 8);
  const std::string r = key.substr(8);
  if (starts_with(r, "conv1.")) return side + "conv_in." + r.substr(6);
  if (starts_with(r, "head.0.")) return side + "norm_out." + r.substr(7);
  if (starts_with(r, "head.2.")) return side + "conv_out." + r.substr(7);
  if (starts_with(r, "middle.0."))
    return side + "mid_block.resnets.0." + residual_name(r.substr(9));
  if (starts_with(r, "middle.1.")) return side + "mid_block.attentions.0." + r.substr(9);
  if (starts_with(r, "middle.2."))
    return side + "mid_block.resnets.1." + residual_name(r.substr(9));
  const std::string outer = enc ? "downsamples." : "upsamples.";
  if (!starts_with(r, outer)) return key;
  int level = 0, inner = 0;
  const size_t a = take_index(r, outer.size(), &level);
  if (a == std::string::npos || r.compare(a, outer.size(), outer) != 0) return key;
  const size_t b = take_index(r, a + outer.size(), &inner);
  if (b == std::string::npos) return key;
  const std::string block =
      side + (enc ? "down_blocks." : "up_blocks.") + std::to_string(level) + ".";
  const std::string t = r.substr(b);
  if (starts_with(t, "resample.") || starts_with(t, "time_conv."))
    return block + (enc ? "downsampler." : "upsampler.") + t;
  return block + "resnets." + std::to_string(inner) + "." + residual_name(t);
}

namespace {

const std::vector<int64_t>& need(const FileFormat& f, const std::string& name) {
  const TensorFormat* t = f.find(name);
  if (!t)
    throw CheckpointError(f.source +
                          ": cannot derive the Qwen-Image-2.1 VAE configuration: tensor '" + name +
                          "' is missing");
  if (t->shape.size() < 2)
    throw CheckpointError(f.source + ": tensor '" + name + "' has shape " +
                          shape_to_string(t->shape) + ", expected a convolution weight");
  return t->shape;
}

int count_indexed(const FileFormat& f, const std::string& prefix) {
  std::set<int> seen;
  for (const auto& [name, t] : f.tensors) {
    if (!starts_with(name, prefix)) continue;
    int n = 0;
    if (take_index(name, prefix.size(), &n) != std::string::npos) seen.insert(n);
  }
  const int count = seen.empty() ? 0 : *seen.rbegin() + 1;
  if (int(seen.size()) != count)
    throw CheckpointError(f.source + ": the tensors '" + prefix + "N.*' do not number 0.." +
                          std::to_string(count - 1));
  return count;
}

}  // namespace

bool is_vae21_format(const FileFormat& format) {
  return format.find("encoder.down_blocks.0.resnets.0.conv1.weight") != nullptr;
}

json vae21_config_from_shapes(const FileFormat& s) {
  const auto& conv_in = need(s, "encoder.conv_in.weight");
  const auto& pq = need(s, "post_quant_conv.weight");
  const auto& dec_out = need(s, "decoder.conv_out.weight");
  const int64_t base = conv_in[0];
  const int levels = count_indexed(s, "encoder.down_blocks.");
  if (levels < 2)
    throw CheckpointError(s.source +
                          ": a Qwen-Image-2.1 VAE has at least 2 encoder levels, found " +
                          std::to_string(levels));
  const int num_res = count_indexed(s, "encoder.down_blocks.0.resnets.");
  json dim_mult = json::array(), temporal = json::array();
  for (int i = 0; i < levels; ++i) {
    const std::string p = "encoder.down_blocks." + std::to_string(i) + ".";
    const auto& conv1 = need(s, p + "resnets.0.conv1.weight");
    dim_mult.push_back(conv1[0] / base);
    if (i + 1 < levels) temporal.push_back(s.find(p + "downsampler.time_conv.weight") != nullptr);
  }
  // The decoder's last level has decoder_base_dim * dim_mult[0] channels.
  const int64_t dec_base = dec_out[1] / dim_mult[0].get<int64_t>();
  static const double kMean[] = {
      0.5126,  0.7721,  -0.0631, 1.3506,  -0.7855, -2.1025, -0.3458, 1.3722,  1.8873,  -1.7177,
      -0.6510, 0.2732,  0.7562,  -0.6163, -1.0277, 3.8363,  2.0210,  0.0472,  0.9320,  2.0087,
      2.4954,  -0.1391, -1.4249, 1.8464,  -0.5236, 1.2826,  3.7046,  -1.3035, 2.7286,  -1.4518,
      -1.9036, -1.9955, -0.0342, -1.0265, -0.7636, 3.0555,  0.0746,  -3.0751, -0.1076, 1.7376,
      -1.0914, -1.9435, -0.2784, -1.3680, 0.4809,  -0.4433, 0.3764,  0.5729,  -2.0595, 1.0960,
      -1.3260, -2.0211, -5.0179, 0.5275,  4.0162,  1.8505,  0.3026,  1.9373,  1.4937,  0.2632,
      0.5547,  -1.7121, -0.1562, 0.0304};
  static const double kStd[] = {
      3.2001, 3.2936, 3.4321, 3.0091, 3.1061, 4.0379, 4.0705, 3.7910, 3.0785, 3.6500, 3.9308,
      3.0904, 2.8778, 3.7675, 3.7320, 5.0756, 3.2864, 4.0397, 3.1317, 4.0443, 2.9249, 3.9454,
      3.0988, 4.2489, 3.4896, 3.8513, 3.9323, 3.4719, 3.7498, 4.2830, 3.5694, 4.2467, 3.9037,
      3.2947, 5.0770, 3.5075, 3.2700, 3.4767, 2.8063, 5.1125, 3.5327, 4.7833, 3.1286, 4.1819,
      3.8527, 3.8312, 3.5605, 4.3875, 3.9624, 4.0168, 3.5643, 4.0550, 5.5614, 4.2963, 4.4080,
      3.4959, 3.8747, 3.7608, 3.5735, 3.1490, 3.7662, 3.6746, 3.4563, 3.8161};
  // The file does not hold the latent statistics: those of the released model (64 channels),
  // else 0 / 1 (a folder's vae/config.json replaces them: io::ModelFolder::weights).
  const int64_t z = pq[0];
  std::vector<double> mean(std::begin(kMean), std::end(kMean)),
      stdv(std::begin(kStd), std::end(kStd));
  if (z != 64) {
    mean.assign(size_t(z), 0.0);
    stdv.assign(size_t(z), 1.0);
  }
  return json{{"_class_name", "AutoencoderKLQwenImage21"},
              {"base_dim", base},
              {"decoder_base_dim", dec_base},
              {"z_dim", z},
              {"dim_mult", dim_mult},
              {"num_res_blocks", num_res},
              {"attn_scales", json::array()},
              {"temperal_downsample", temporal},
              {"dropout", 0.0},
              {"is_residual", true},
              {"in_channels", conv_in[1]},
              {"out_channels", dec_out[0]},
              {"patch_size", nullptr},
              {"latents_mean", mean},
              {"latents_std", stdv}};
}

}  // namespace qwen::io
