#include "models/qwen3vl_text_encoder.h"

#include <filesystem>
#include <stdexcept>
#include <string>

#include "models/causal_mask.h"
#include "models/mrope.h"
#include "models/weights.h"

namespace qwen::models::qwen3vl {

std::pair<torch::Tensor, torch::Tensor> interleaved_mrope_cos_sin(
    const torch::Tensor& position_ids, int64_t head_dim, double theta,
    const std::array<int64_t, 3>& section, torch::Dtype dtype) {
  if (position_ids.dim() != 3 || position_ids.size(0) != 3)
    throw std::invalid_argument("position_ids must be [3, batch, length]");
  const int64_t half = head_dim / 2;
  const auto dev = position_ids.device();
  auto inv = qwenvl::rope_inv_freq(head_dim, theta).to(dev);
  auto freqs = position_ids.to(torch::kFloat32).unsqueeze(-1) * inv;  // [3, B, L, half]
  // recomposition_frequencies: start from axis t, overwrite slice(1, 3 * h, 3) with axis h and
  // slice(2, 3 * w, 3) with axis w.
  std::vector<int64_t> axis(static_cast<size_t>(half), 0);
  for (int64_t j = 0; j < half; ++j) {
    if (j % 3 == 1 && j < 3 * section[1]) axis[j] = 1;
    if (j % 3 == 2 && j < 3 * section[2]) axis[j] = 2;
  }
  auto idx = torch::tensor(axis, torch::kInt64).to(dev).view({1, 1, 1, half});
  auto f = freqs.gather(0, idx.expand({1, freqs.size(1), freqs.size(2), half})).squeeze(0);
  auto emb = torch::cat({f, f}, -1);
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

torch::Tensor rope_position_ids(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                const torch::Tensor& image_grid_thw, const TextEncoderConfig& cfg) {
  if (!input_ids.defined() || input_ids.dim() != 2)
    throw std::invalid_argument("input_ids must be [batch, length]");
  const int64_t B = input_ids.size(0), L = input_ids.size(1);
  if (!image_grid_thw.defined())
    return torch::arange(L, torch::TensorOptions().dtype(torch::kInt64).device(input_ids.device()))
        .view({1, 1, L})
        .expand({3, B, L})
        .contiguous();
  if (image_grid_thw.dim() != 2 || image_grid_thw.size(1) != 3)
    throw std::invalid_argument("image_grid_thw must be [n_images, 3]");
  if ((image_grid_thw.select(1, 0) != 1).any().item<bool>())
    throw std::invalid_argument("image_grid_thw: only single images (t = 1) are supported");
  // For images, Qwen3VLModel.get_rope_index gives what Qwen2.5-VL's gives (text one by one, an
  // image block (s, s + row, s + col), then s + max(h, w)) except for the padded slots (0, not 1).
  qwenvl::RopeTokenIds ids{cfg.image_token_id, cfg.video_token_id, cfg.vision_start_token_id};
  auto r = qwenvl::get_rope_index(input_ids, attention_mask, image_grid_thw, ids,
                                  cfg.vision.spatial_merge_size);
  auto pos = r.position_ids;
  if (attention_mask.defined())
    pos.masked_fill_((attention_mask.to(pos.device()) == 0).unsqueeze(0).expand_as(pos), 0);
  return pos;
}

TextAttentionImpl::TextAttentionImpl(const TextEncoderConfig& cfg)
    : heads_(cfg.num_attention_heads), kv_heads_(cfg.num_key_value_heads), head_dim_(cfg.head_dim) {
  const int64_t h = cfg.hidden_size;
  const bool bias = cfg.attention_bias;
  q_proj = register_module("q_proj", Linear(h, heads_ * head_dim_, bias));
  k_proj = register_module("k_proj", Linear(h, kv_heads_ * head_dim_, bias));
  v_proj = register_module("v_proj", Linear(h, kv_heads_ * head_dim_, bias));
  o_proj = register_module("o_proj", Linear(heads_ * head_dim_, h, bias));
  q_norm = register_module("q_norm", RMSNorm(head_dim_, cfg.rms_norm_eps));
  k_norm = register_module("k_norm", RMSNorm(head_dim_, cfg.rms_norm_eps));
}

torch::Tensor TextAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                         const torch::Tensor& sin, const torch::Tensor& mask) {
  const int64_t B = x.size(0), L = x.size(1);
  // Qwen3VLTextAttention: RMSNorm per head on q and k before the rotary embedding.
  auto q = q_norm(q_proj(x).view({B, L, heads_, head_dim_})).transpose(1, 2);
  auto k = k_norm(k_proj(x).view({B, L, kv_heads_, head_dim_})).transpose(1, 2);
  auto v = v_proj(x).view({B, L, kv_heads_, head_dim_}).transpose(1, 2);
  q = qwenvl::apply_rope(q, cos, sin);
  k = qwenvl::apply_rope(k, cos, sin);
  if (kv_heads_ != heads_) {
    const int64_t group = heads_ / kv_heads_;  // repeat_kv
    k = k.repeat_interleave(group, 1);
    v = v.repeat_interleave(group, 1);
  }
  auto o = qwenvl::sdpa(q, k, v, mask, /*causal=*/true);
  return o_proj(o.transpose(1, 2).reshape({B, L, heads_ * head_dim_}));
}

DecoderLayerImpl::DecoderLayerImpl(const TextEncoderConfig& cfg) {
  self_attn = register_module("self_attn", TextAttention(cfg));
  mlp = register_module("mlp", GatedMLP(cfg.hidden_size, cfg.intermediate_size, /*bias=*/false));
  input_layernorm = register_module("input_layernorm", RMSNorm(cfg.hidden_size, cfg.rms_norm_eps));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(cfg.hidden_size, cfg.rms_norm_eps));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                        const torch::Tensor& sin, const torch::Tensor& mask) {
  auto h = x + self_attn(input_layernorm(x), cos, sin, mask);
  return h + mlp(post_attention_layernorm(h));
}

LanguageModelImpl::LanguageModelImpl(const TextEncoderConfig& cfg) : cfg_(cfg) {
  embed_tokens = register_module("embed_tokens", std::make_shared<torch::nn::Module>());
  embed_weight = embed_tokens->register_parameter(
      "weight", torch::empty({cfg.vocab_size, cfg.hidden_size}), /*requires_grad=*/false);
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) layers->push_back(DecoderLayer(cfg));
  norm = register_module("norm", RMSNorm(cfg.hidden_size, cfg.rms_norm_eps));
}

torch::Tensor LanguageModelImpl::embed(const torch::Tensor& input_ids) {
  return qwenvl::embed_tokens_checked(embed_weight, input_ids);
}

torch::Tensor LanguageModelImpl::forward(const torch::Tensor& inputs_embeds,
                                         const torch::Tensor& position_ids,
                                         const torch::Tensor& attention_mask,
                                         const torch::Tensor& visual_pos_mask,
                                         const std::vector<torch::Tensor>& deepstack,
                                         std::vector<torch::Tensor>* hidden_states) {
  const int64_t B = inputs_embeds.size(0), L = inputs_embeds.size(1);
  const auto dev = inputs_embeds.device();
  auto [cos, sin] = interleaved_mrope_cos_sin(position_ids.to(dev), cfg_.head_dim, cfg_.rope_theta,
                                              cfg_.mrope_section, inputs_embeds.scalar_type());
  auto mask = causal_padding_mask(attention_mask, B, L, dev);
  torch::Tensor vis;
  if (!deepstack.empty()) {
    if (!visual_pos_mask.defined() || visual_pos_mask.sizes() != torch::IntArrayRef({B, L}))
      throw std::invalid_argument("deepstack features need a [batch, length] visual position mask");
    vis = visual_pos_mask.to(dev).to(torch::kBool);
  }
  auto x = inputs_embeds;
  for (size_t i = 0; i < layers->size(); ++i) {
    if (hidden_states) hidden_states->push_back(x);
    x = layers[i]->as<DecoderLayerImpl>()->forward(x, cos, sin, mask);
    // _deepstack_process: hidden[visual_pos_masks] += deepstack[i] after the first layers.
    if (i < deepstack.size()) {
      x = x.clone();
      x.index_put_({vis}, x.index({vis}) + deepstack[i].to(dev, x.scalar_type()));
    }
  }
  if (hidden_states) hidden_states->push_back(x);
  return x;
}

Qwen3VLModelImpl::Qwen3VLModelImpl(const TextEncoderConfig& cfg, bool with_vision) {
  language_model = register_module("language_model", LanguageModel(cfg));
  if (with_vision) visual = register_module("visual", VisionTower(cfg.vision));
}

TextEncoderImpl::TextEncoderImpl(const TextEncoderConfig& cfg, bool with_vision) : cfg_(cfg) {
  if (with_vision && !cfg.has_vision)
    throw std::invalid_argument(
        "text encoder config has no vision_config: cannot build the vision tower needed for "
        "reference images");
  model = register_module("model", Qwen3VLModel(cfg, with_vision));
  for (auto& p : parameters()) p.set_requires_grad(false);
}

torch::Dtype TextEncoderImpl::dtype() const {
  return model->language_model->embed_weight.scalar_type();
}
torch::Device TextEncoderImpl::device() const {
  return model->language_model->embed_weight.device();
}

VisionFeatures TextEncoderImpl::encode_images(const torch::Tensor& pixel_values,
                                              const torch::Tensor& grid_thw) {
  if (!has_vision())
    throw std::invalid_argument("image inputs need the vision tower, which was not loaded");
  torch::NoGradGuard no_grad;
  return model->visual(pixel_values, grid_thw);
}

TextEncoderOutput TextEncoderImpl::forward(const torch::Tensor& input_ids,
                                           const torch::Tensor& attention_mask,
                                           const torch::Tensor& pixel_values,
                                           const torch::Tensor& image_grid_thw,
                                           bool output_hidden_states) {
  if (!pixel_values.defined())
    return forward(input_ids, attention_mask, VisionFeatures{}, {}, output_hidden_states);
  if (!image_grid_thw.defined())
    throw std::invalid_argument("pixel_values given without image_grid_thw");
  return forward(input_ids, attention_mask, encode_images(pixel_values, image_grid_thw),
                 image_grid_thw, output_hidden_states);
}

TextEncoderOutput TextEncoderImpl::forward(const torch::Tensor& input_ids,
                                           const torch::Tensor& attention_mask,
                                           const VisionFeatures& images,
                                           const torch::Tensor& image_grid_thw,
                                           bool output_hidden_states) {
  torch::NoGradGuard no_grad;
  auto& lm = model->language_model;
  auto embeds = lm->embed(input_ids);
  const auto dev = embeds.device();
  auto ids = input_ids.to(dev, torch::kInt64);
  auto mask = attention_mask.defined() ? attention_mask.to(dev) : attention_mask;
  torch::Tensor grid, is_img;
  if (images.embeds.defined()) {
    if (!image_grid_thw.defined())
      throw std::invalid_argument("image features given without image_grid_thw");
    grid = image_grid_thw;
    is_img = ids == cfg_.image_token_id;
    const int64_t n_tok = is_img.sum().item<int64_t>();
    if (n_tok != images.embeds.size(0))
      throw std::invalid_argument(
          "image features and image tokens do not match: the prompts hold " +
          std::to_string(n_tok) + " <|image_pad|> tokens, the images give " +
          std::to_string(images.embeds.size(0)) + " features");
    embeds = embeds.masked_scatter(is_img.unsqueeze(-1).expand_as(embeds),
                                   images.embeds.to(dev, embeds.scalar_type()));
  }
  TextEncoderOutput out;
  out.position_ids = rope_position_ids(ids, mask, grid, cfg_);
  out.hidden = lm->forward(embeds, out.position_ids, mask, is_img,
                           grid.defined() ? images.deepstack : std::vector<torch::Tensor>{},
                           output_hidden_states ? &out.hidden_states : nullptr);
  if (output_hidden_states) out.last_hidden_state = lm->norm(out.hidden);
  return out;
}

VisionFeatures repeat_features(const VisionFeatures& f, int64_t times) {
  if (times < 1) throw std::invalid_argument("repeat_features: times must be >= 1");
  VisionFeatures r;
  r.embeds = f.embeds.defined() ? f.embeds.repeat({times, 1}) : f.embeds;
  for (const auto& d : f.deepstack) r.deepstack.push_back(d.repeat({times, 1}));
  return r;
}

TextEncoder load_text_encoder(const std::string& dir, torch::Dtype dtype, torch::Device device,
                              bool with_vision) {
  return load_text_encoder(io::open_component(dir, io::ComponentKind::TextEncoder), dtype, device,
                           with_vision);
}

TextEncoder load_text_encoder(const io::ComponentWeights& weights, torch::Dtype dtype,
                              torch::Device device, bool with_vision) {
  // A folder's config.json, or (single file) the configuration io derived from the shapes.
  std::error_code ec;
  const std::string label =
      std::filesystem::is_directory(weights.source, ec)
          ? weights.source + "/config.json"
          : weights.source + " (configuration derived from the tensor shapes)";
  const auto cfg = TextEncoderConfig::from_json_text(weights.config.dump(), label);
  TextEncoder te(cfg, with_vision);
  std::vector<std::string> ignore = {"lm_head."};
  if (!with_vision) ignore.push_back("model.visual.");
  load_module(*te, weights, "text_encoder", dtype, device, ignore);
  te->eval();
  return te;
}

}  // namespace qwen::models::qwen3vl
