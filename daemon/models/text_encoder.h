// Qwen2.5-VL text encoder as Qwen-Image uses it: language model (+ vision tower for the Edit
// models), returning the hidden states after the final RMSNorm. lm_head is not built.
// Module tree (= checkpoint keys, transformers >= 4.52 layout):
//   model.language_model.{embed_tokens.weight, layers.{i}.*, norm.weight}
//   model.visual.*                                  (only when built with the vision tower)
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "models/mrope.h"
#include "models/text_encoder_blocks.h"
#include "models/text_encoder_config.h"
#include "models/text_encoder_layer.h"
#include "models/vision.h"

namespace qwen::models::qwenvl {

struct TextEncoderOutput {
  torch::Tensor last_hidden_state;  // [B, L, hidden], output of the final RMSNorm
  // When requested: num_layers + 1 entries; [i] = input of decoder layer i, back() = the final
  // RMSNorm output (== last_hidden_state), as transformers' output_hidden_states.
  std::vector<torch::Tensor> hidden_states;
  torch::Tensor position_ids;  // int64 [3, B, L]
  torch::Tensor rope_deltas;   // int64 [B, 1]
};

class LanguageModelImpl : public torch::nn::Module {
 public:
  explicit LanguageModelImpl(const TextEncoderConfig& cfg);
  // Token embeddings [B, L, hidden]; throws std::invalid_argument for ids outside the vocabulary.
  torch::Tensor embed(const torch::Tensor& input_ids);
  // inputs_embeds [B, L, hidden]; position_ids int64 [3, B, L]; attention_mask [B, L] (1 = valid)
  // or undefined. Causal attention that also never attends padded keys. Appends the layer inputs
  // and the final output to `hidden_states` when given.
  torch::Tensor forward(const torch::Tensor& inputs_embeds, const torch::Tensor& position_ids,
                        const torch::Tensor& attention_mask,
                        std::vector<torch::Tensor>* hidden_states = nullptr);

  std::shared_ptr<torch::nn::Module> embed_tokens;  // holds `weight` [vocab, hidden]
  torch::Tensor embed_weight;
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};

 private:
  TextEncoderConfig cfg_;
};
TORCH_MODULE(LanguageModel);

class QwenVLModelImpl : public torch::nn::Module {
 public:
  QwenVLModelImpl(const TextEncoderConfig& cfg, bool with_vision);
  LanguageModel language_model{nullptr};
  VisionTower visual{nullptr};  // null without the vision tower
};
TORCH_MODULE(QwenVLModel);

class TextEncoderImpl : public torch::nn::Module {
 public:
  // Parameters are uninitialized until loaded (load_text_encoder / models::load_module).
  TextEncoderImpl(const TextEncoderConfig& cfg, bool with_vision);

  // input_ids int64 [B, L]; attention_mask [B, L] or undefined (all valid). With pixel_values
  // [N, 1176] and image_grid_thw [n, 3], the image features replace the <|image_pad|> embeddings
  // (their count must equal N/4) and positions follow get_rope_index.
  TextEncoderOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                            const torch::Tensor& pixel_values = {},
                            const torch::Tensor& image_grid_thw = {},
                            bool output_hidden_states = false);
  // Vision tower output [N/4, hidden] (requires the vision tower).
  torch::Tensor encode_images(const torch::Tensor& pixel_values, const torch::Tensor& grid_thw);

  const TextEncoderConfig& config() const { return cfg_; }
  bool has_vision() const { return !model->visual.is_empty(); }
  torch::Dtype dtype() const;
  torch::Device device() const;

  QwenVLModel model{nullptr};

 private:
  TextEncoderConfig cfg_;
};
TORCH_MODULE(TextEncoder);

// Builds and loads text_encoder/ (config.json + model.safetensors or a sharded index). Legacy key
// names (`model.layers.*`, `visual.*`) are mapped to the canonical ones; lm_head is ignored.
// Without `with_vision` the vision tensors are ignored. Throws io::CheckpointError /
// std::runtime_error with the folder and the problem.
TextEncoder load_text_encoder(const std::string& dir, torch::Dtype dtype, torch::Device device,
                              bool with_vision);
// The same from an opened component (io::ModelFolder::weights / io::open_component): the one
// loading path; the folder form above is this over io::open_component(dir).
TextEncoder load_text_encoder(const io::ComponentWeights& weights, torch::Dtype dtype,
                              torch::Device device, bool with_vision);

}  // namespace qwen::models::qwenvl
