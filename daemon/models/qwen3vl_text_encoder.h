// Qwen3-VL text encoder (transformers Qwen3VLForConditionalGeneration without lm_head) as
// Qwen-Image-2.1 uses it (diffusers QwenImage21Pipeline._get_qwen_prompt_embeds): the language
// model's LAST decoder layer output BEFORE the final RMSNorm, with the vision tower's features in
// the <|image_pad|> slots and its DeepStack features added after the first text layers.
// Module tree (= checkpoint keys): model.language_model.{embed_tokens.weight, layers.{i}.*,
// norm.weight}, model.visual.* (only when built with the vision tower). The released checkpoint's
// lm_head is ignored.
//
// Differences from the Qwen2.5-VL encoder (models/text_encoder.h), whose pieces are reused:
// per-head q_norm / k_norm RMSNorms, no q/k/v bias, explicit head_dim; the interleaved M-RoPE; the
// vision tower of models/qwen3vl_vision.h; text-only prompts take positions 0..L-1 whatever the
// padding (transformers 5 computes 3-D positions only with images).
#pragma once

#include <torch/torch.h>

#include <array>
#include <string>
#include <utility>
#include <vector>

#include "io/checkpoint.h"
#include "models/qwen3vl_config.h"
#include "models/qwen3vl_vision.h"
#include "models/text_encoder_blocks.h"

namespace qwen::models::qwen3vl {

using qwenvl::GatedMLP;
using qwenvl::RMSNorm;

// Qwen3VLTextRotaryEmbedding: cos/sin [B, L, head_dim] for position_ids [3, B, L], computed in
// float32 and cast to `dtype`; frequency j < head_dim/2 takes axis h when j % 3 == 1 and
// j < 3 * section[1], axis w when j % 3 == 2 and j < 3 * section[2], else t; doubled.
std::pair<torch::Tensor, torch::Tensor> interleaved_mrope_cos_sin(
    const torch::Tensor& position_ids, int64_t head_dim, double theta,
    const std::array<int64_t, 3>& mrope_section, torch::Dtype dtype);

// Position ids int64 [3, B, L] of Qwen3VLModel: without images (image_grid_thw undefined) 0..L-1
// on every axis for every row, padding included (the model's own arange: transformers 5 builds
// 3-D positions only for multimodal inputs). With images: get_rope_index over the valid tokens
// (text continues one by one; an image block of the merged h x w grid takes (s, s + row, s + col)
// and advances s by max(h, w)), padded slots 0. Images only (grid t == 1); throws
// std::invalid_argument when tokens and grids disagree.
torch::Tensor rope_position_ids(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                const torch::Tensor& image_grid_thw, const TextEncoderConfig& cfg);

class TextAttentionImpl : public torch::nn::Module {
 public:
  explicit TextAttentionImpl(const TextEncoderConfig& cfg);
  // x [B, L, hidden]; cos/sin [B, L, head_dim]; mask bool [B, 1, L, L] or undefined (causal).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask);

  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  RMSNorm q_norm{nullptr}, k_norm{nullptr};

 private:
  int64_t heads_, kv_heads_, head_dim_;
};
TORCH_MODULE(TextAttention);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  explicit DecoderLayerImpl(const TextEncoderConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask);

  TextAttention self_attn{nullptr};
  GatedMLP mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

class LanguageModelImpl : public torch::nn::Module {
 public:
  explicit LanguageModelImpl(const TextEncoderConfig& cfg);
  // Token embeddings [B, L, hidden]; throws std::invalid_argument for ids outside the vocabulary.
  torch::Tensor embed(const torch::Tensor& input_ids);
  // Qwen3VLTextModel.forward up to (not including) the final norm: returns the last decoder
  // layer's output. `visual_pos_mask` bool [B, L] and `deepstack` (features in mask order) add
  // deepstack[i] at the visual positions after layer i. Appends each layer's input and the result
  // to `hidden_states` when given.
  torch::Tensor forward(const torch::Tensor& inputs_embeds, const torch::Tensor& position_ids,
                        const torch::Tensor& attention_mask,
                        const torch::Tensor& visual_pos_mask = {},
                        const std::vector<torch::Tensor>& deepstack = {},
                        std::vector<torch::Tensor>* hidden_states = nullptr);

  std::shared_ptr<torch::nn::Module> embed_tokens;  // holds `weight` [vocab, hidden]
  torch::Tensor embed_weight;
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};

 private:
  TextEncoderConfig cfg_;
};
TORCH_MODULE(LanguageModel);

class Qwen3VLModelImpl : public torch::nn::Module {
 public:
  Qwen3VLModelImpl(const TextEncoderConfig& cfg, bool with_vision);
  LanguageModel language_model{nullptr};
  VisionTower visual{nullptr};  // null without the vision tower
};
TORCH_MODULE(Qwen3VLModel);

struct TextEncoderOutput {
  // [B, L, hidden]: the last decoder layer's output before the final RMSNorm (what
  // QwenImage21Pipeline reads as hidden_states[-1]).
  torch::Tensor hidden;
  // When output_hidden_states: num_layers + 1 entries, [i] = input of decoder layer i, back() =
  // `hidden`; and the final RMSNorm's output (transformers' last_hidden_state).
  std::vector<torch::Tensor> hidden_states;
  torch::Tensor last_hidden_state;
  torch::Tensor position_ids;  // int64 [3, B, L]
};

class TextEncoderImpl : public torch::nn::Module {
 public:
  // Parameters are uninitialized until loaded (load_text_encoder / models::load_module).
  TextEncoderImpl(const TextEncoderConfig& cfg, bool with_vision);

  // input_ids int64 [B, L]; attention_mask [B, L] (1 = valid) or undefined. With pixel_values
  // [N, C*2*p*p] and image_grid_thw [n, 3], the merged image features replace the <|image_pad|>
  // embeddings (their count must equal N/4) and the DeepStack features are added after the first
  // text layers.
  TextEncoderOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                            const torch::Tensor& pixel_values = {},
                            const torch::Tensor& image_grid_thw = {},
                            bool output_hidden_states = false);
  // The same with the vision tower's output computed beforehand (encode_images over the images
  // of image_grid_thw, in placeholder order): one tower run can serve several calls (a prompt and
  // its negative, or a batch of prompts with the same images: repeat_features).
  TextEncoderOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                            const VisionFeatures& images, const torch::Tensor& image_grid_thw,
                            bool output_hidden_states = false);
  // The vision tower's merged features and DeepStack features (requires the vision tower).
  VisionFeatures encode_images(const torch::Tensor& pixel_values, const torch::Tensor& grid_thw);

  const TextEncoderConfig& config() const { return cfg_; }
  bool has_vision() const { return !model->visual.is_empty(); }
  torch::Dtype dtype() const;
  torch::Device device() const;

  Qwen3VLModel model{nullptr};

 private:
  TextEncoderConfig cfg_;
};
TORCH_MODULE(TextEncoder);

// The features of `times` copies of the same image set, in order (what the processor's repeated
// images give).
VisionFeatures repeat_features(const VisionFeatures& features, int64_t times);

// Builds and loads text_encoder/ (config.json + model.safetensors or a sharded index) through
// io::open_component, the one loading path (quantised formats included). lm_head is ignored;
// without `with_vision` the vision tensors are too. Throws io::CheckpointError /
// std::runtime_error naming the folder, file and key.
TextEncoder load_text_encoder(const std::string& dir, torch::Dtype dtype, torch::Device device,
                              bool with_vision);
TextEncoder load_text_encoder(const io::ComponentWeights& weights, torch::Dtype dtype,
                              torch::Device device, bool with_vision);

}  // namespace qwen::models::qwen3vl
