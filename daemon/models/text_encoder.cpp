#include "models/text_encoder.h"

#include <filesystem>
#include <stdexcept>
#include <string>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "models/causal_mask.h"
#include "models/weights.h"

namespace qwen::models {

torch::Tensor causal_padding_mask(const torch::Tensor& attention_mask, int64_t B, int64_t L,
                                  torch::Device dev) {
  if (!attention_mask.defined()) return {};
  if (attention_mask.dim() != 2 || attention_mask.size(0) != B || attention_mask.size(1) != L)
    throw std::invalid_argument("attention_mask must be [batch, length] like input_ids");
  auto valid = attention_mask.to(dev).to(torch::kBool);
  if (valid.all().item<bool>()) return {};
  auto causal = torch::ones({L, L}, torch::TensorOptions().dtype(torch::kBool).device(dev)).tril();
  auto m = causal.unsqueeze(0) & valid.unsqueeze(1);  // [B, L, L]
  auto empty = ~m.any(-1, /*keepdim=*/true);
  auto eye = torch::eye(L, torch::TensorOptions().dtype(torch::kBool).device(dev));
  return (m | (empty & eye.unsqueeze(0))).unsqueeze(1);
}

}  // namespace qwen::models

namespace qwen::models::qwenvl {

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
                                         std::vector<torch::Tensor>* hidden_states) {
  const int64_t B = inputs_embeds.size(0), L = inputs_embeds.size(1);
  const auto dev = inputs_embeds.device();
  auto [cos, sin] = mrope_cos_sin(position_ids.to(dev), cfg_.head_dim(), cfg_.rope_theta,
                                  cfg_.mrope_section, inputs_embeds.scalar_type());
  auto mask = causal_padding_mask(attention_mask, B, L, dev);  // undefined: plain causal
  auto x = inputs_embeds;
  for (size_t i = 0; i < layers->size(); ++i) {
    if (hidden_states) hidden_states->push_back(x);
    x = layers[i]->as<DecoderLayerImpl>()->forward(x, cos, sin, mask);
  }
  x = norm(x);
  if (hidden_states) hidden_states->push_back(x);
  return x;
}

QwenVLModelImpl::QwenVLModelImpl(const TextEncoderConfig& cfg, bool with_vision) {
  language_model = register_module("language_model", LanguageModel(cfg));
  if (with_vision) visual = register_module("visual", VisionTower(cfg.vision));
}

TextEncoderImpl::TextEncoderImpl(const TextEncoderConfig& cfg, bool with_vision) : cfg_(cfg) {
  if (with_vision && !cfg.has_vision)
    throw std::invalid_argument(
        "text encoder config has no vision_config: cannot build the "
        "vision tower needed for image inputs");
  model = register_module("model", QwenVLModel(cfg, with_vision));
  // Inference only: no parameter tracks gradients.
  for (auto& p : parameters()) p.set_requires_grad(false);
}

torch::Dtype TextEncoderImpl::dtype() const {
  return model->language_model->embed_weight.scalar_type();
}
torch::Device TextEncoderImpl::device() const {
  return model->language_model->embed_weight.device();
}

torch::Tensor TextEncoderImpl::encode_images(const torch::Tensor& pixel_values,
                                             const torch::Tensor& grid_thw) {
  if (!has_vision())
    throw std::invalid_argument("image inputs need the vision tower, which was not loaded");
  return model->visual(pixel_values, grid_thw);
}

TextEncoderOutput TextEncoderImpl::forward(const torch::Tensor& input_ids,
                                           const torch::Tensor& attention_mask,
                                           const torch::Tensor& pixel_values,
                                           const torch::Tensor& image_grid_thw,
                                           bool output_hidden_states) {
  torch::NoGradGuard no_grad;
  auto& lm = model->language_model;
  auto embeds = lm->embed(input_ids);
  const auto dev = embeds.device();
  auto ids = input_ids.to(dev, torch::kInt64);
  torch::Tensor grid;
  if (pixel_values.defined()) {
    if (!image_grid_thw.defined())
      throw std::invalid_argument("pixel_values given without image_grid_thw");
    grid = image_grid_thw;
    auto feats = encode_images(pixel_values, image_grid_thw).to(embeds.scalar_type());
    auto is_img = ids == cfg_.image_token_id;
    const int64_t n_tok = is_img.sum().item<int64_t>();
    if (n_tok != feats.size(0))
      throw std::invalid_argument(
          "image features and image tokens do not match: the prompts hold " +
          std::to_string(n_tok) + " <|image_pad|> tokens, the images give " +
          std::to_string(feats.size(0)) + " features");
    embeds = embeds.masked_scatter(is_img.unsqueeze(-1).expand_as(embeds), feats);
  }
  RopeTokenIds rid{cfg_.image_token_id, cfg_.video_token_id, cfg_.vision_start_token_id};
  auto rope =
      get_rope_index(ids, attention_mask.defined() ? attention_mask.to(dev) : attention_mask, grid,
                     rid, cfg_.vision.spatial_merge_size);
  TextEncoderOutput out;
  out.position_ids = rope.position_ids;
  out.rope_deltas = rope.rope_deltas;
  out.last_hidden_state = lm->forward(
      embeds, rope.position_ids, attention_mask.defined() ? attention_mask.to(dev) : attention_mask,
      output_hidden_states ? &out.hidden_states : nullptr);
  return out;
}

TextEncoder load_text_encoder(const std::string& dir, torch::Dtype dtype, torch::Device device,
                              bool with_vision) {
  return load_text_encoder(io::open_component(dir, io::ComponentKind::TextEncoder), dtype, device,
                           with_vision);
}

TextEncoder load_text_encoder(const io::ComponentWeights& weights, torch::Dtype dtype,
                              torch::Device device, bool with_vision) {
  // open_component has mapped legacy (transformers < 4.52) and ComfyUI layouts to the canonical
  // names the module uses.
  const auto cfg =
      TextEncoderConfig::from_json_text(weights.config.dump(), weights.source + " (configuration)");
  TextEncoder te(cfg, with_vision);
  std::vector<std::string> ignore = {"lm_head."};
  if (!with_vision) ignore.push_back("model.visual.");
  load_module(*te, weights, "text_encoder", dtype, device, ignore);
  te->eval();
  return te;
}

}  // namespace qwen::models::qwenvl
