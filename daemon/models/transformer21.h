// QwenImage21Transformer2DModel: the 7.1B single-stream, block-causal DiT of Qwen-Image-2.1
// (diffusers 0.42.1 models/transformers/transformer_qwenimage21.py). Registered parameter names are
// the diffusers checkpoint keys (ComfyUI's fused `img_mlp.gate_up` when the config says
// fused_mlp), so models::load_module() fills it straight from transformer/*.safetensors or a
// single file; load_transformer21() does that from an opened component.
//
// One joint sequence: text (condition-image latents written into the vision-language encoder's
// image slots, 4 tokens per slot), then the target image's tokens. Block-causal attention (text
// causal, every image block bidirectional inside, the target sees everything, the prefix never
// sees the target, padded prompt keys masked); with causal_condition, text and condition tokens are
// modulated at t = 0, so their keys and values do not depend on the step: the KV cache keeps them
// from the first step and later steps run only the target tokens.
#pragma once

#include <torch/torch.h>

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "io/quantize_on_load.h"
#include "models/block_hooks.h"
#include "models/linear.h"
#include "models/transformer21_config.h"
#include "models/transformer21_layout.h"
#include "models/transformer_layers.h"

namespace qwen::io {
struct ComponentWeights;
}

namespace qwen::models {

// The prefix (text + condition) keys and values of every block, post q/k-norm and post-RoPE, as
// QwenImage21KVCache holds them, plus what the cached steps reuse (the target's RoPE table and
// the key-padding mask). One per denoising job and per CFG branch (prompt). Empty: the next
// forward() computes the whole sequence and fills it ("extract"); filled: forward() runs only the
// target tokens against [cached prefix, target] ("cached").
class Transformer21KVCache {
 public:
  bool filled() const { return !layers_.empty(); }
  void clear();
  // Bytes held by the cached keys and values.
  int64_t bytes() const;
  int64_t prefix_len() const { return prefix_len_; }

 private:
  friend class QwenImage21Transformer2DModelImpl;
  struct Layer {
    torch::Tensor k, v;  // [B, prefix, heads, head_dim]
  };
  std::vector<Layer> layers_;
  // The layout the cache was filled for: a cached step must have the same one.
  int64_t prefix_len_ = 0, target_len_ = 0, batch_ = 0;
  std::vector<bool> img_mask_;
  std::vector<qwen21::Shape> img_shapes_;
  torch::Dtype dtype_ = torch::kFloat32;
  torch::Device device_ = torch::kCPU;
  torch::Tensor rope_target_;  // complex [target, head_dim / 2]
  torch::Tensor key_valid_;    // bool [B, prefix + target] or undefined (no padding)
};

namespace dit21 {

// `txt_in.text_norm` (QwenImage21ZeroCenterRMSNorm): the stored weight is scale - 1; computed in
// float32, cast back to the input's dtype.
class ZeroCenterRMSNormImpl : public torch::nn::Module {
 public:
  ZeroCenterRMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(ZeroCenterRMSNorm);

// `txt_in` (QwenImage21TextProjection): text_norm -> in_layer -> GELU(tanh) -> out_layer.
class TextProjectionImpl : public torch::nn::Module {
 public:
  TextProjectionImpl(int64_t context_dim, int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  ZeroCenterRMSNorm text_norm{nullptr};
  Linear in_layer{nullptr}, out_layer{nullptr};
};
TORCH_MODULE(TextProjection);

// `time_text_embed` (QwenImage21TimestepProjEmbeddings): 256-channel sinusoid of 1000 t (cos
// first, max period 10000) -> timestep_embedder.linear_1 -> SiLU -> linear_2, bias-free.
class TimestepEmbedderImpl : public torch::nn::Module {
 public:
  explicit TimestepEmbedderImpl(int64_t dim);
  torch::Tensor forward(const torch::Tensor& x);
  Linear linear_1{nullptr}, linear_2{nullptr};
};
TORCH_MODULE(TimestepEmbedder);

class TimestepProjEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit TimestepProjEmbeddingsImpl(int64_t dim);
  // `t`: [N] in [0, 1] (timestep / 1000), already in the model dtype as the reference casts it.
  torch::Tensor forward(const torch::Tensor& t, torch::Dtype dtype);
  TimestepEmbedder timestep_embedder{nullptr};
};
TORCH_MODULE(TimestepProjEmbeddings);

// QwenImage21TemporalTimesteps: float32 [N, 256] = [cos(1000 t f), sin(1000 t f)].
torch::Tensor timestep_sinusoid(const torch::Tensor& t);

// `img_mlp` (QwenImage21SwiGLUFeedForward): out(SiLU(gate_layer(x)) * proj(x)), or with the fused
// layout out(SiLU(g) * u) where [g; u] = gate_up(x).
class SwiGLUImpl : public torch::nn::Module {
 public:
  SwiGLUImpl(int64_t dim, int64_t hidden, bool fused);
  torch::Tensor forward(const torch::Tensor& x);
  Linear proj{nullptr}, gate_layer{nullptr}, gate_up{nullptr}, out{nullptr};
};
TORCH_MODULE(SwiGLU);

// `attn` (QwenImage21Attention): to_q/k/v, norm_q/k (RMSNorm over the head), to_out.0.
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t dim, int64_t heads, int64_t head_dim, double eps);
  // (q, k, v) [B, S, H, Dh] of `x` [B, S, D]: projected, q/k normed and cast to v's dtype, rotated
  // by `rope` (complex [S, Dh / 2]).
  std::array<torch::Tensor, 3> qkv(const torch::Tensor& x, const torch::Tensor& rope);
  Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr}, out{nullptr};
  dit::RMSNorm norm_q{nullptr}, norm_k{nullptr};
  torch::nn::ModuleList to_out{nullptr};  // [Linear, dropout]

 private:
  int64_t head_dim_;
};
TORCH_MODULE(Attention);

// What a block needs besides its input: the shared modulation rows and the attention structure.
struct BlockContext {
  torch::Tensor modulation;      // [B (+1 with causal_condition), 4D]
  bool causal_condition = true;  // prefix rows take the last (t = 0) modulation row
  torch::Tensor rope_prefix, rope_target;
  const std::vector<qwen21::Segment>* segments = nullptr;
  std::vector<std::optional<torch::Tensor>> segment_masks;  // per segment (segment_masks())
  torch::Tensor key_valid;  // bool [B, prefix + target] or undefined
};

// The attention mask of every prefix segment (QwenImage21AttnProcessor's prefill): text segments
// see the keys [0, start + r] from their row r, image segments all keys [0, end); padded keys
// (`key_valid` false, bool [B, S] or undefined) dropped. nullopt: no mask. Built once per forward.
std::vector<std::optional<torch::Tensor>> segment_masks(
    const std::vector<qwen21::Segment>& segments, const torch::Tensor& key_valid, int64_t batch,
    const torch::Device& device);

// QwenImage21TransformerBlock over the sequence split in two: the prefix (text + condition
// tokens; undefined in a cached step) and the target tokens. Per-token work runs on each part;
// attention joins them exactly as the reference's block-causal mask does.
class TransformerBlockImpl : public torch::nn::Module {
 public:
  TransformerBlockImpl(int64_t dim, int64_t heads, int64_t head_dim, int64_t mlp_hidden, double eps,
                       bool fused_mlp);
  // `prefix_kv`: in a cached step the cached (k, v) of the prefix, used instead of computing them
  // (prefix undefined); otherwise filled with the prefix's (k, v) when not null. `prefix_output`:
  // false skips the prefix rows' work after their keys and values (the last block: nothing reads
  // them). Returns (prefix, target).
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& prefix,
                                                  const torch::Tensor& target,
                                                  const BlockContext& ctx,
                                                  std::array<torch::Tensor, 2>* prefix_kv,
                                                  bool cached, bool prefix_output);
  Attention attn{nullptr};
  SwiGLU img_mlp{nullptr};
  double eps;
};
TORCH_MODULE(TransformerBlock);

}  // namespace dit21

class QwenImage21Transformer2DModelImpl : public torch::nn::Module {
 public:
  // Parameters are created uninitialised (models/linear.h) in the default dtype; with
  // `build_device` other than the CPU every block is moved there as it is built.
  explicit QwenImage21Transformer2DModelImpl(const Transformer21Config& config,
                                             const torch::Device& build_device = torch::kCPU);

  // The reference forward (QwenImage21Transformer2DModel.forward) for one prompt batch:
  // hidden_states [B, S_img, in*p*p]: condition latents then the target's (packed, row-major);
  // encoder_hidden_states [B, L, context_in_dim] (its image-slot rows are replaced by latents);
  // encoder_hidden_states_mask [B, L] (true = valid) or undefined; timestep [B] = t / 1000;
  // img_shapes: condition images then the target, (1, h, w) in latent tokens; img_mask: the
  // vision-language sequence's image-slot flags (L entries) plus T/4 target slots (row 0 of the
  // reference's `img_mask`: every sample shares the layout).
  // `cache`: null = uncached (the reference without kv_cache, `--no-kv-cache`); empty = compute
  // everything and fill it (kv_cache_mode "extract"); filled = only the target tokens against the
  // cached prefix ("cached"; hidden_states may then hold the target rows only, and
  // encoder_hidden_states is not read). A cache needs causal_condition and the layout it was filled
  // for (else std::invalid_argument).
  // Returns the target tokens' prediction [B, T, p*p*out_channels] — the rows the pipeline keeps
  // (`noise_pred[:, -T:]`); the reference also computes the prefix rows, which nothing reads.
  torch::Tensor forward(const torch::Tensor& hidden_states,
                        const torch::Tensor& encoder_hidden_states,
                        const torch::Tensor& encoder_hidden_states_mask,
                        const torch::Tensor& timestep, const std::vector<qwen21::Shape>& img_shapes,
                        const std::vector<bool>& img_mask, Transformer21KVCache* cache = nullptr);

  // RoPE table (complex64 [S, head_dim / 2], float32 angles as QwenImage21Rope builds them) of
  // `positions` [S, 3] int64, on `device`.
  torch::Tensor rope_table(const std::vector<std::array<int64_t, 3>>& positions,
                           const torch::Device& device) const;

  const Transformer21Config& config() const { return config_; }
  // Memory modes (issue #13): hooks called around every block of forward() (block streaming,
  // models/block_stream.h); release_all() when a forward fails part-way. Null: none.
  void set_block_hooks(std::shared_ptr<BlockHooks> hooks) { hooks_ = std::move(hooks); }
  BlockHooks* block_hooks() const { return hooks_.get(); }

  torch::nn::ModuleList modulation{nullptr};  // [SiLU, Linear(D, 4D)]
  dit21::TimestepProjEmbeddings time_text_embed{nullptr};
  dit21::TextProjection txt_in{nullptr};
  Linear img_in{nullptr}, modulation_linear{nullptr}, proj_out{nullptr};
  torch::nn::ModuleList transformer_blocks{nullptr};
  std::shared_ptr<torch::nn::Module> norm_out;  // `norm_out.linear` only
  Linear norm_out_linear{nullptr};

 private:
  Transformer21Config config_;
  std::vector<dit21::TransformerBlock> blocks_;
  std::shared_ptr<BlockHooks> hooks_;
  std::array<torch::Tensor, 3> inv_freq_;
};
TORCH_MODULE(QwenImage21Transformer2DModel);

// The configuration of an opened transformer component (io::open_component /
// ModelFolder::weights): its config (config.json, or derived from the shapes of a single file),
// with fused_mlp from the tensor names. Throws std::runtime_error naming the source.
Transformer21Config transformer21_config(const io::ComponentWeights& weights);
// Builds and loads a 2.1 transformer from an opened component, in `dtype` on `device`, eval mode;
// `quantize` as models::load_module (quantise-on-load, models/quantize.h).
QwenImage21Transformer2DModel load_transformer21(const io::ComponentWeights& weights,
                                                 torch::Dtype dtype, torch::Device device,
                                                 io::QuantizeMode quantize = io::QuantizeMode::None);

}  // namespace qwen::models
