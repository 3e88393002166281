#include "models/transformer.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "io/config_json.h"

namespace qwen::models {

TransformerConfig TransformerConfig::from_json_text(const std::string& text,
                                                    const std::string& label) {
  const auto j = io::parse_config_object(text, label);
  TransformerConfig c;
  io::read_key(j, "patch_size", c.patch_size, label);
  io::read_key(j, "in_channels", c.in_channels, label);
  io::read_key(j, "out_channels", c.out_channels, label);
  io::read_key(j, "num_layers", c.num_layers, label);
  io::read_key(j, "attention_head_dim", c.attention_head_dim, label);
  io::read_key(j, "num_attention_heads", c.num_attention_heads, label);
  io::read_key(j, "joint_attention_dim", c.joint_attention_dim, label);
  io::read_key(j, "guidance_embeds", c.guidance_embeds, label);
  io::read_key(j, "zero_cond_t", c.zero_cond_t, label);
  io::read_key(j, "use_additional_t_cond", c.use_additional_t_cond, label);
  io::read_key(j, "use_layer3d_rope", c.use_layer3d_rope, label);
  if (auto it = j.find("axes_dims_rope"); it != j.end()) {
    if (!it->is_array() || it->size() != 3)
      throw std::runtime_error(label + ": 'axes_dims_rope' must be a list of 3 integers");
    for (int a = 0; a < 3; ++a) c.axes_dims_rope[a] = (*it)[a].get<int64_t>();
  }
  try {
    c.validate();
  } catch (const std::exception& e) {
    throw std::runtime_error(label + ": " + e.what());
  }
  return c;
}

TransformerConfig TransformerConfig::from_json_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open transformer config '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return from_json_text(ss.str(), path);
}

void TransformerConfig::validate() const {
  auto positive = [](int64_t v, const char* name) {
    if (v <= 0) throw std::invalid_argument(std::string(name) + " must be positive");
  };
  positive(patch_size, "patch_size");
  positive(in_channels, "in_channels");
  positive(out_channels, "out_channels");
  positive(num_layers, "num_layers");
  positive(attention_head_dim, "attention_head_dim");
  positive(num_attention_heads, "num_attention_heads");
  positive(joint_attention_dim, "joint_attention_dim");
  if (axes_dims_rope[0] + axes_dims_rope[1] + axes_dims_rope[2] != attention_head_dim)
    throw std::invalid_argument("axes_dims_rope must sum to attention_head_dim");
  if (guidance_embeds)
    throw std::invalid_argument(
        "guidance_embeds=true is not supported (no released Qwen-Image model uses it)");
}

int64_t TransformerConfig::parameter_count() const {
  const int64_t d = inner_dim(), dh = attention_head_dim, ctx = joint_attention_dim;
  auto lin = [](int64_t in, int64_t out) { return in * out + out; };
  int64_t block = 2 * lin(d, 6 * d)                       // img_mod, txt_mod
                  + 6 * lin(d, d) + 4 * dh                // q/k/v x 2 streams, 4 QK norms
                  + 2 * lin(d, d)                         // to_out.0, to_add_out
                  + 2 * (lin(d, 4 * d) + lin(4 * d, d));  // img_mlp, txt_mlp
  int64_t top = lin(in_channels, d) + ctx + lin(ctx, d) + lin(256, d) + lin(d, d) + lin(d, 2 * d) +
                lin(d, patch_size * patch_size * out_channels);
  if (use_additional_t_cond) top += 2 * d;
  return top + num_layers * block;
}

QwenImageTransformer2DModelImpl::QwenImageTransformer2DModelImpl(const TransformerConfig& config,
                                                                 const torch::Device& build_device)
    : config_(config), rope_(config.axes_dims_rope, 10000.0, config.use_layer3d_rope) {
  config_.validate();
  const int64_t d = config_.inner_dim();
  img_in = register_module("img_in", Linear(config_.in_channels, d));
  txt_norm = register_module("txt_norm", dit::RMSNorm(config_.joint_attention_dim));
  txt_in = register_module("txt_in", Linear(config_.joint_attention_dim, d));
  time_text_embed = register_module("time_text_embed",
                                    dit::TimestepProjEmbeddings(d, config_.use_additional_t_cond));
  transformer_blocks = register_module("transformer_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    blocks_.emplace_back(d, config_.num_attention_heads, config_.attention_head_dim,
                         config_.zero_cond_t);
    if (build_device != torch::Device(torch::kCPU)) blocks_.back()->to(build_device);
    transformer_blocks->push_back(blocks_.back());
  }
  norm_out = register_module("norm_out", std::make_shared<torch::nn::Module>());
  norm_out_linear = norm_out->register_module("linear", Linear(d, 2 * d));
  proj_out = register_module(
      "proj_out", Linear(d, config_.patch_size * config_.patch_size * config_.out_channels));
  if (build_device != torch::Device(torch::kCPU)) this->to(build_device);
  // Inference only: no parameter tracks gradients (torch::nn::Embedding registers its table with
  // requires_grad; every parameter of our own modules is registered without).
  for (auto& p : parameters()) p.set_requires_grad(false);
}

void QwenImageTransformer2DModelImpl::compute_modulation(const torch::Tensor& timestep,
                                                         const torch::Tensor& additional_t_cond,
                                                         torch::Dtype dtype,
                                                         TimestepModulation& out) {
  auto t = timestep.to(dtype);
  if (config_.zero_cond_t) t = torch::cat({t, t * 0}, 0);
  out.model = this;
  out.timestep = timestep;
  out.additional_t_cond = additional_t_cond;
  out.dtype = dtype;
  out.temb = time_text_embed(t, dtype, additional_t_cond);
  out.blocks.clear();
  for (auto& block : blocks_) out.blocks.push_back(block->modulation(out.temb));
  // AdaLayerNormContinuous's linear(SiLU(temb)) on the real-timestep rows.
  auto temb = config_.zero_cond_t ? out.temb.chunk(2, 0)[0] : out.temb;
  out.norm_out = norm_out_linear(torch::silu(temb).to(dtype));
  ++modulation_computations_;
}

std::vector<TimestepModulation> QwenImageTransformer2DModelImpl::compute_modulations(
    const std::vector<torch::Tensor>& timesteps, torch::Dtype dtype,
    const std::function<void(size_t, bool)>& around_block, const torch::Tensor& additional_t_cond) {
  // compute_modulation() for every timestep, block-major so that each block's weights are needed
  // once: the same ops on the same inputs.
  std::vector<TimestepModulation> out(timesteps.size());
  for (size_t s = 0; s < timesteps.size(); ++s) {
    auto t = timesteps[s].to(dtype);
    if (config_.zero_cond_t) t = torch::cat({t, t * 0}, 0);
    out[s].model = this;
    out[s].timestep = timesteps[s];
    out[s].dtype = dtype;
    out[s].additional_t_cond = additional_t_cond;
    out[s].temb = time_text_embed(t, dtype, additional_t_cond);
  }
  for (size_t b = 0; b < blocks_.size(); ++b) {
    if (around_block) around_block(b, true);
    for (auto& m : out) m.blocks.push_back(blocks_[b]->modulation(m.temb));
    if (around_block) around_block(b, false);
  }
  for (auto& m : out) {
    auto temb = config_.zero_cond_t ? m.temb.chunk(2, 0)[0] : m.temb;
    m.norm_out = norm_out_linear(torch::silu(temb).to(dtype));
  }
  return out;
}

torch::Tensor QwenImageTransformer2DModelImpl::forward(
    const torch::Tensor& hidden_states, const torch::Tensor& encoder_hidden_states,
    const torch::Tensor& encoder_hidden_states_mask, const torch::Tensor& timestep,
    const std::vector<ImageShape>& img_shapes, const torch::Tensor& additional_t_cond,
    TimestepModulation* modulation) {
  TORCH_CHECK(hidden_states.dim() == 3 && hidden_states.size(2) == config_.in_channels,
              "transformer: hidden_states must be [B, S, ", config_.in_channels, "], got ",
              hidden_states.sizes());
  TORCH_CHECK(encoder_hidden_states.dim() == 3 &&
                  encoder_hidden_states.size(0) == hidden_states.size(0) &&
                  encoder_hidden_states.size(2) == config_.joint_attention_dim,
              "transformer: encoder_hidden_states must be [B, S_txt, ", config_.joint_attention_dim,
              "], got ", encoder_hidden_states.sizes());
  const int64_t batch = hidden_states.size(0);
  TORCH_CHECK(timestep.dim() == 1 && timestep.size(0) == batch,
              "transformer: timestep must be [B], got ", timestep.sizes());
  int64_t img_tokens = 0;
  for (const auto& s : img_shapes) img_tokens += s[0] * s[1] * s[2];
  TORCH_CHECK(img_tokens == hidden_states.size(1), "transformer: img_shapes describe ", img_tokens,
              " tokens but hidden_states has ", hidden_states.size(1));

  auto x = img_in(hidden_states);
  const auto dtype = x.scalar_type();
  torch::Tensor modulate_index;
  if (config_.zero_cond_t) {
    const int64_t first = img_shapes[0][0] * img_shapes[0][1] * img_shapes[0][2];
    // Built on the device: a host tensor copied per call would synchronise the stream.
    auto row =
        torch::ones({img_tokens}, torch::TensorOptions().dtype(torch::kInt32).device(x.device()));
    row.slice(0, 0, first).zero_();
    modulate_index = row.unsqueeze(0).expand({batch, img_tokens});
  }
  auto c = txt_in(txt_norm(encoder_hidden_states));
  const int64_t s_txt = c.size(1);

  TimestepModulation local;
  TimestepModulation& mod = modulation ? *modulation : local;
  const bool reuse =
      mod.model == this && mod.dtype == dtype && mod.timestep.defined() &&
      mod.timestep.is_same(timestep) &&
      mod.additional_t_cond.defined() == additional_t_cond.defined() &&
      (!additional_t_cond.defined() || mod.additional_t_cond.is_same(additional_t_cond)) &&
      mod.blocks.size() == blocks_.size();
  if (!reuse) compute_modulation(timestep, additional_t_cond, dtype, mod);
  auto [img_freqs, txt_freqs] = rope_.tables(img_shapes, s_txt, x.device());

  torch::Tensor key_mask;
  if (encoder_hidden_states_mask.defined()) {
    TORCH_CHECK(encoder_hidden_states_mask.dim() == 2 &&
                    encoder_hidden_states_mask.size(0) == batch &&
                    encoder_hidden_states_mask.size(1) == s_txt,
                "transformer: encoder_hidden_states_mask must be [B, S_txt] = [", batch, ", ",
                s_txt, "], got ", encoder_hidden_states_mask.sizes());
    auto txt_mask = encoder_hidden_states_mask.to(x.device()).to(torch::kBool);
    auto img_mask = torch::ones({batch, img_tokens},
                                torch::TensorOptions().dtype(torch::kBool).device(x.device()));
    key_mask = torch::cat({txt_mask, img_mask}, 1);
  }

  PlacementHooks* hooks = placement_.get();
  for (size_t i = 0; i < blocks_.size(); ++i) {
    if (hooks) hooks->before_block(i);
    std::tie(c, x) =
        blocks_[i]->forward(x, c, mod.blocks[i], img_freqs, txt_freqs, key_mask, modulate_index);
    if (hooks) hooks->after_block(i);
  }

  // AdaLayerNormContinuous: (scale, shift) = chunk(linear(SiLU(temb))), scale first.
  auto parts = mod.norm_out.chunk(2, 1);
  auto y = dit::layer_norm_no_affine(x) * (1 + parts[0].unsqueeze(1)) + parts[1].unsqueeze(1);
  return proj_out(y);
}

}  // namespace qwen::models
