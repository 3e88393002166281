#include "models/transformer21.h"

#include <cmath>
#include <functional>
#include <optional>
#include <stdexcept>

#include "io/checkpoint.h"
#include "models/attention.h"
#include "models/transformer_rope.h"
#include "models/weights.h"

namespace qwen::models {

// ---- KV cache ------------------------------------------------------------------------------

void Transformer21KVCache::clear() { *this = Transformer21KVCache(); }

int64_t Transformer21KVCache::bytes() const {
  int64_t n = 0;
  for (const auto& l : layers_)
    for (const auto* t : {&l.k, &l.v})
      if (t->defined()) n += t->numel() * t->element_size();
  return n;
}

namespace dit21 {

// ---- small layers --------------------------------------------------------------------------

ZeroCenterRMSNormImpl::ZeroCenterRMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::zeros({dim}), /*requires_grad=*/false);
}

torch::Tensor ZeroCenterRMSNormImpl::forward(const torch::Tensor& x) {
  // QwenImage21ZeroCenterRMSNorm.forward: (x * rsqrt(mean(x^2) + eps)) * (weight + 1) in float32.
  auto xf = x.to(torch::kFloat32);
  auto rrms = torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps_);
  return (xf * rrms * (weight.to(torch::kFloat32) + 1)).to(x.scalar_type());
}

TextProjectionImpl::TextProjectionImpl(int64_t context_dim, int64_t dim, double eps) {
  text_norm = register_module("text_norm", ZeroCenterRMSNorm(context_dim, eps));
  in_layer = register_module("in_layer", Linear(context_dim, dim, /*bias=*/false));
  out_layer = register_module("out_layer", Linear(dim, dim, /*bias=*/false));
}

torch::Tensor TextProjectionImpl::forward(const torch::Tensor& x) {
  return out_layer(torch::gelu(in_layer(text_norm(x)), "tanh"));
}

TimestepEmbedderImpl::TimestepEmbedderImpl(int64_t dim) {
  linear_1 = register_module("linear_1", Linear(256, dim, /*bias=*/false));
  linear_2 = register_module("linear_2", Linear(dim, dim, /*bias=*/false));
}

torch::Tensor TimestepEmbedderImpl::forward(const torch::Tensor& x) {
  return linear_2(torch::silu(linear_1(x)));
}

torch::Tensor timestep_sinusoid(const torch::Tensor& t) {
  // QwenImage21TemporalTimesteps(256, max_period 10000, time_factor 1000): freqs =
  // exp(-ln(10000) * arange(128) / 128) (float32); args = (1000 * t) * freqs; [cos, sin].
  constexpr int64_t half = 128;
  auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(t.device());
  auto freqs = torch::exp(torch::arange(0, half, opts) * (-std::log(10000.0)) / double(half));
  auto ts = 1000.0 * t.to(torch::kFloat32);
  auto args = ts.unsqueeze(1) * freqs.unsqueeze(0);
  return torch::cat({torch::cos(args), torch::sin(args)}, -1);
}

TimestepProjEmbeddingsImpl::TimestepProjEmbeddingsImpl(int64_t dim) {
  timestep_embedder = register_module("timestep_embedder", TimestepEmbedder(dim));
}

torch::Tensor TimestepProjEmbeddingsImpl::forward(const torch::Tensor& t, torch::Dtype dtype) {
  return timestep_embedder(timestep_sinusoid(t).to(dtype));
}

SwiGLUImpl::SwiGLUImpl(int64_t dim, int64_t hidden, bool fused) {
  if (fused) {
    gate_up = register_module("gate_up", Linear(dim, 2 * hidden, /*bias=*/false));
  } else {
    proj = register_module("proj", Linear(dim, hidden, /*bias=*/false));
    gate_layer = register_module("gate_layer", Linear(dim, hidden, /*bias=*/false));
  }
  out = register_module("out", Linear(hidden, dim, /*bias=*/false));
}

torch::Tensor SwiGLUImpl::forward(const torch::Tensor& x) {
  if (gate_up) {
    // [gate_layer; proj] stacked by rows: one GEMM, the same products per output channel.
    auto gu = gate_up(x).chunk(2, -1);
    return out(torch::silu(gu[0]) * gu[1]);
  }
  return out(torch::silu(gate_layer(x)) * proj(x));
}

AttentionImpl::AttentionImpl(int64_t dim, int64_t heads, int64_t head_dim, double eps)
    : head_dim_(head_dim) {
  const int64_t inner = heads * head_dim;
  to_q = register_module("to_q", Linear(dim, inner, /*bias=*/false));
  to_k = register_module("to_k", Linear(dim, inner, /*bias=*/false));
  to_v = register_module("to_v", Linear(dim, inner, /*bias=*/false));
  norm_q = register_module("norm_q", dit::RMSNorm(head_dim, eps));
  norm_k = register_module("norm_k", dit::RMSNorm(head_dim, eps));
  out = Linear(inner, dim, /*bias=*/false);
  to_out = register_module("to_out", torch::nn::ModuleList());
  to_out->push_back(out);
  to_out->push_back(torch::nn::Identity());  // dropout
}

std::array<torch::Tensor, 3> AttentionImpl::qkv(const torch::Tensor& x, const torch::Tensor& rope) {
  // _qwenimage21_prepare_qkv: split by head_dim, norm_q/norm_k then .to(value.dtype), RoPE.
  auto split = [&](const torch::Tensor& t) { return t.unflatten(-1, {-1, head_dim_}); };
  auto v = split(to_v(x));
  auto q = norm_q(split(to_q(x))).to(v.scalar_type());
  auto k = norm_k(split(to_k(x))).to(v.scalar_type());
  return {dit::apply_rope(q, rope), dit::apply_rope(k, rope), v};
}

namespace {

// SDPA over [B, S, H, Dh] tensors (the native backend of dispatch_attention_fn: transposed to
// [B, H, S, Dh] and back).
torch::Tensor sdpa(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                   const std::optional<torch::Tensor>& mask) {
  return at::scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                          mask)
      .transpose(1, 2);
}

// QwenImage21AttnProcessor's prefill of the prefix: every segment attends to the keys [0, end)
// under its mask (segment_masks).
torch::Tensor prefix_attention(const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const std::vector<qwen21::Segment>& segments,
                               const std::vector<std::optional<torch::Tensor>>& masks) {
  std::vector<torch::Tensor> outs;
  outs.reserve(segments.size());
  for (size_t i = 0; i < segments.size(); ++i) {
    const auto& s = segments[i];
    outs.push_back(sdpa(q.narrow(1, s.start, s.end - s.start), k.narrow(1, 0, s.end),
                        v.narrow(1, 0, s.end), masks[i]));
  }
  return torch::cat(outs, 1);
}

}  // namespace

std::vector<std::optional<torch::Tensor>> segment_masks(
    const std::vector<qwen21::Segment>& segments, const torch::Tensor& key_valid, int64_t batch,
    const torch::Device& device) {
  std::vector<std::optional<torch::Tensor>> masks;
  for (const auto& s : segments) {
    const int64_t len = s.end - s.start;
    std::optional<torch::Tensor> mask;
    if (s.text) {
      // cat([ones(len, start), tril(ones(len, len))], 1): query r sees keys 0..start + r.
      auto opts = torch::TensorOptions().dtype(torch::kInt64).device(device);
      auto kv = torch::arange(s.end, opts).unsqueeze(0);
      auto qi = (torch::arange(len, opts) + s.start).unsqueeze(1);
      mask = (kv <= qi).view({1, 1, len, s.end});
    }
    if (key_valid.defined()) {  // padded text keys dropped
      auto kvm = key_valid.narrow(1, 0, s.end).view({batch, 1, 1, s.end});
      mask = mask ? (*mask & kvm) : kvm;
    }
    masks.push_back(mask);
  }
  return masks;
}

TransformerBlockImpl::TransformerBlockImpl(int64_t dim, int64_t heads, int64_t head_dim,
                                           int64_t mlp_hidden, double eps_, bool fused_mlp)
    : eps(eps_) {
  // img_norm1 / img_norm2 are LayerNorms without parameters: nothing to register.
  attn = register_module("attn", Attention(dim, heads, head_dim, eps_));
  img_mlp = register_module("img_mlp", SwiGLU(dim, mlp_hidden, fused_mlp));
}

std::pair<torch::Tensor, torch::Tensor> TransformerBlockImpl::forward(
    const torch::Tensor& prefix_in, const torch::Tensor& target_in, const BlockContext& ctx,
    std::array<torch::Tensor, 2>* prefix_kv, bool cached, bool prefix_output) {
  // modulation.chunk(2) -> mod1, mod2; each .chunk(2) -> (scale, gate).
  const auto m = ctx.modulation.chunk(4, -1);
  const int64_t batch = target_in.size(0);
  // _select_modulation_rows: target tokens take their sample's row; with causal_condition the
  // prefix takes the trailing t = 0 row, else its sample's row too.
  auto target_rows = [&](const torch::Tensor& p) { return p.narrow(0, 0, batch).unsqueeze(1); };
  auto prefix_rows = [&](const torch::Tensor& p) {
    return ctx.causal_condition ? p.narrow(0, p.size(0) - 1, 1).unsqueeze(0) : p.unsqueeze(1);
  };
  auto norm = [&](const torch::Tensor& x) { return dit::layer_norm_no_affine(x, eps); };

  auto [qt, kt, vt] = attn->qkv(norm(target_in) * (1 + target_rows(m[0])), ctx.rope_target);
  torch::Tensor kp, vp, prefix_attn;
  if (cached) {
    kp = (*prefix_kv)[0];
    vp = (*prefix_kv)[1];
  } else {
    auto [qp, k, v] = attn->qkv(norm(prefix_in) * (1 + prefix_rows(m[0])), ctx.rope_prefix);
    kp = k;
    vp = v;
    if (prefix_kv) *prefix_kv = {kp, vp};
    if (prefix_output)
      prefix_attn = prefix_attention(qp, kp, vp, *ctx.segments, ctx.segment_masks)
                        .flatten(2, 3)
                        .to(qp.scalar_type());
  }
  // The target attends to the whole sequence: [prefix, target] keys, padded ones masked.
  std::optional<torch::Tensor> mask;
  if (ctx.key_valid.defined()) mask = ctx.key_valid.view({batch, 1, 1, ctx.key_valid.size(1)});
  auto target_attn = sdpa(qt, torch::cat({kp, kt}, 1), torch::cat({vp, vt}, 1), mask)
                         .flatten(2, 3)
                         .to(qt.scalar_type());

  auto finish = [&](const torch::Tensor& x_in, const torch::Tensor& a,
                    const std::function<torch::Tensor(const torch::Tensor&)>& rows) {
    auto x = x_in + torch::tanh(rows(m[1])) * attn->out(a);
    x = x + torch::tanh(rows(m[3])) * img_mlp(norm(x) * (1 + rows(m[2])));
    if (x.scalar_type() == torch::kHalf) x = x.clamp(-65504, 65504);
    return x;
  };
  auto target = finish(target_in, target_attn, target_rows);
  torch::Tensor prefix;
  if (prefix_attn.defined()) prefix = finish(prefix_in, prefix_attn, prefix_rows);
  return {prefix, target};
}

}  // namespace dit21

// ---- the model -----------------------------------------------------------------------------

QwenImage21Transformer2DModelImpl::QwenImage21Transformer2DModelImpl(
    const Transformer21Config& config, const torch::Device& build_device)
    : config_(config) {
  config_.validate();
  const int64_t d = config_.inner_dim();
  const int64_t p2 = config_.patch_size * config_.patch_size;
  time_text_embed = register_module("time_text_embed", dit21::TimestepProjEmbeddings(d));
  txt_in = register_module("txt_in", dit21::TextProjection(config_.context_in_dim, d, config_.eps));
  img_in = register_module("img_in", Linear(config_.in_channels * p2, d, /*bias=*/false));
  modulation_linear = Linear(d, 4 * d, /*bias=*/false);
  modulation = register_module("modulation", torch::nn::ModuleList());
  modulation->push_back(torch::nn::SiLU());
  modulation->push_back(modulation_linear);
  transformer_blocks = register_module("transformer_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    blocks_.emplace_back(d, config_.num_attention_heads, config_.attention_head_dim,
                         config_.mlp_hidden(), config_.eps, config_.fused_mlp);
    if (build_device != torch::Device(torch::kCPU)) blocks_.back()->to(build_device);
    transformer_blocks->push_back(blocks_.back());
  }
  norm_out = register_module("norm_out", std::make_shared<torch::nn::Module>());
  norm_out_linear = norm_out->register_module("linear", Linear(d, d, /*bias=*/false));
  proj_out = register_module("proj_out", Linear(d, p2 * config_.out_channels, /*bias=*/false));
  if (build_device != torch::Device(torch::kCPU)) this->to(build_device);
  for (auto& p : parameters()) p.set_requires_grad(false);
  // QwenImage21Rope.rope_params: 1 / theta^(arange(0, dim, 2) / dim), float32, theta 10000.
  for (int a = 0; a < 3; ++a) {
    const int64_t dim = config_.axes_dims_rope[a];
    auto exps = torch::arange(0, dim, 2, torch::kInt64).to(torch::kFloat32).div(double(dim));
    inv_freq_[a] = 1.0 / torch::pow(10000.0, exps);
  }
}

torch::Tensor QwenImage21Transformer2DModelImpl::rope_table(
    const std::vector<std::array<int64_t, 3>>& positions, const torch::Device& device) const {
  const int64_t n = static_cast<int64_t>(positions.size());
  auto pos = torch::empty({n, 3}, torch::kInt64);
  auto acc = pos.accessor<int64_t, 2>();
  for (int64_t i = 0; i < n; ++i)
    for (int a = 0; a < 3; ++a) acc[i][a] = positions[i][a];
  // outer(int positions, float32 inverse frequencies) per axis, polar, axes concatenated: the
  // table rows QwenImage21Rope.forward indexes (built on the CPU as the reference builds them).
  std::vector<torch::Tensor> parts;
  for (int a = 0; a < 3; ++a)
    parts.push_back(pos.select(1, a).to(torch::kFloat32).unsqueeze(1) * inv_freq_[a].unsqueeze(0));
  auto ang = torch::cat(parts, 1);
  return torch::polar(torch::ones_like(ang), ang).to(device);
}

torch::Tensor QwenImage21Transformer2DModelImpl::forward(
    const torch::Tensor& hidden_states, const torch::Tensor& encoder_hidden_states,
    const torch::Tensor& encoder_hidden_states_mask, const torch::Tensor& timestep,
    const std::vector<qwen21::Shape>& img_shapes, const std::vector<bool>& img_mask,
    Transformer21KVCache* cache) {
  const int64_t p2 = config_.patch_size * config_.patch_size;
  TORCH_CHECK(hidden_states.dim() == 3 && hidden_states.size(2) == config_.in_channels * p2,
              "Qwen-Image-2.1 transformer: hidden_states must be [B, S, ", config_.in_channels * p2,
              "], got ", hidden_states.sizes());
  const int64_t batch = hidden_states.size(0);
  TORCH_CHECK(timestep.dim() == 1 && timestep.size(0) == batch,
              "Qwen-Image-2.1 transformer: timestep must be [B] = [", batch, "], got ",
              timestep.sizes());
  if (cache && !config_.causal_condition)
    throw std::invalid_argument(
        "Qwen-Image-2.1 transformer: the KV cache needs causal_condition=true (text and condition "
        "tokens modulated at t = 0 are what makes their keys and values step-independent); this "
        "model has causal_condition=false: run it without the cache (--no-kv-cache)");
  const bool cached = cache && cache->filled();
  const bool extract = cache && !cached;

  const auto layout = qwen21::make_token_layout(img_mask, img_shapes);
  const int64_t P = layout.prefix_len, T = layout.target_len, S = layout.seq_len;
  int64_t image_tokens = 0;
  for (const auto& s : img_shapes) image_tokens += s[1] * s[2];
  TORCH_CHECK(hidden_states.size(1) == image_tokens || (cached && hidden_states.size(1) == T),
              "Qwen-Image-2.1 transformer: img_shapes describe ", image_tokens,
              " image tokens but hidden_states has ", hidden_states.size(1));
  if (cached) {
    if (cache->batch_ != batch || cache->img_mask_ != img_mask ||
        cache->img_shapes_ != img_shapes || cache->prefix_len_ != P || cache->target_len_ != T ||
        cache->layers_.size() != blocks_.size())
      throw std::invalid_argument(
          "Qwen-Image-2.1 transformer: the KV cache was filled for another prompt or image "
          "layout (prefix " +
          std::to_string(cache->prefix_len_) + " tokens, target " +
          std::to_string(cache->target_len_) + ", batch " + std::to_string(cache->batch_) +
          "); clear() it or use one cache per prompt");
  } else {
    TORCH_CHECK(
        encoder_hidden_states.defined() && encoder_hidden_states.dim() == 3 &&
            encoder_hidden_states.size(0) == batch &&
            encoder_hidden_states.size(2) == config_.context_in_dim,
        "Qwen-Image-2.1 transformer: encoder_hidden_states must be [B, L, ", config_.context_in_dim,
        "], got ",
        encoder_hidden_states.defined() ? encoder_hidden_states.sizes() : torch::IntArrayRef{});
    TORCH_CHECK(static_cast<int64_t>(img_mask.size()) == encoder_hidden_states.size(1) + T / 4,
                "Qwen-Image-2.1 transformer: img_mask has ", img_mask.size(),
                " slots, expected the ", encoder_hidden_states.size(1),
                " text-encoder positions plus ", T / 4, " target slots");
  }

  // Image tokens: img_in on the target rows (and the condition rows when the prefix is built).
  auto target = img_in(hidden_states.narrow(1, hidden_states.size(1) - T, T));
  const auto dtype = target.scalar_type();
  const auto device = target.device();
  if (cached && (cache->dtype_ != dtype || cache->device_ != device))
    throw std::invalid_argument(
        "Qwen-Image-2.1 transformer: the KV cache was filled in another dtype or on another "
        "device; clear() it first");

  // Timestep embedding and the one shared modulation: the timestep is cast to the model dtype
  // first (as the reference's `timestep.to(hidden_states.dtype)`), plus a t = 0 row.
  auto t = timestep.to(device).to(dtype);
  if (config_.causal_condition) t = torch::cat({t, torch::zeros({1}, t.options())}, 0);
  auto temb = time_text_embed(t, dtype);
  dit21::BlockContext ctx;
  ctx.modulation = modulation_linear(torch::silu(temb));
  ctx.causal_condition = config_.causal_condition;
  ctx.segments = &layout.segments;

  torch::Tensor prefix;
  if (cached) {
    ctx.rope_target = cache->rope_target_;
    ctx.key_valid = cache->key_valid_;
  } else {
    auto ids = [&](const std::vector<int64_t>& v) {
      return torch::tensor(v, torch::TensorOptions().dtype(torch::kInt64)).to(device);
    };
    const auto text_joint = ids(layout.text_joint), text_slot = ids(layout.text_slot);
    // The joint prefix: projected text at the text positions, condition latents at the image slots
    // (the reference's repeat_interleave + masked assignment; the slot rows are overwritten).
    auto txt = txt_in(encoder_hidden_states.to(device));
    prefix = torch::empty({batch, P, txt.size(2)}, txt.options());
    prefix.index_copy_(1, text_joint, txt.index_select(1, text_slot));
    if (!layout.condition_joint.empty())
      prefix.index_copy_(1, ids(layout.condition_joint),
                         img_in(hidden_states.narrow(1, 0, hidden_states.size(1) - T)));
    if (encoder_hidden_states_mask.defined()) {
      TORCH_CHECK(
          encoder_hidden_states_mask.dim() == 2 && encoder_hidden_states_mask.size(0) == batch &&
              encoder_hidden_states_mask.size(1) == encoder_hidden_states.size(1),
          "Qwen-Image-2.1 transformer: encoder_hidden_states_mask must be [B, L] = [", batch, ", ",
          encoder_hidden_states.size(1), "], got ", encoder_hidden_states_mask.sizes());
      // Padded prompt positions are masked as keys only, on every path.
      auto kv = torch::ones({batch, S}, torch::TensorOptions().dtype(torch::kBool).device(device));
      kv.index_copy_(
          1, text_joint,
          encoder_hidden_states_mask.to(device).to(torch::kBool).index_select(1, text_slot));
      ctx.key_valid = padding_mask_or_none(kv);
    }
    ctx.segment_masks = dit21::segment_masks(layout.segments, ctx.key_valid, batch, device);
    auto rope = rope_table(layout.positions, device);
    ctx.rope_prefix = rope.narrow(0, 0, P);
    ctx.rope_target = rope.narrow(0, P, T);
  }

  // Extract: the layers go into the cache only once every block ran (an exception midway leaves
  // it empty, not half filled).
  std::vector<Transformer21KVCache::Layer> fresh;
  if (extract) cache->clear();
  const size_t n = blocks_.size();
  BlockHooks* hooks = hooks_.get();
  try {
    for (size_t i = 0; i < n; ++i) {
      if (hooks) hooks->before_block(i);
      if (cached) {
        std::array<torch::Tensor, 2> kv{cache->layers_[i].k, cache->layers_[i].v};
        target = blocks_[i]->forward({}, target, ctx, &kv, /*cached=*/true, false).second;
      } else {
        std::array<torch::Tensor, 2> kv;
        std::tie(prefix, target) =
            blocks_[i]->forward(prefix, target, ctx, extract ? &kv : nullptr,
                                /*cached=*/false, /*prefix_output=*/i + 1 < n);
        if (extract) fresh.push_back({kv[0], kv[1]});
      }
      if (hooks) hooks->after_block(i);
    }
  } catch (...) {
    if (hooks) hooks->release_all();
    throw;
  }
  if (extract) {
    cache->layers_ = std::move(fresh);
    cache->prefix_len_ = P;
    cache->target_len_ = T;
    cache->batch_ = batch;
    cache->img_mask_ = img_mask;
    cache->img_shapes_ = img_shapes;
    cache->dtype_ = dtype;
    cache->device_ = device;
    cache->rope_target_ = ctx.rope_target;
    cache->key_valid_ = ctx.key_valid;
  }

  // QwenImage21AdaLayerNormContinuous on the target rows: LN(x) * (1 + linear(SiLU(temb))).
  auto scale = norm_out_linear(torch::silu(temb).to(dtype)).narrow(0, 0, batch).unsqueeze(1);
  return proj_out(dit::layer_norm_no_affine(target, config_.eps) * (1 + scale));
}

Transformer21Config transformer21_config(const io::ComponentWeights& weights) {
  auto cfg = Transformer21Config::from_json_text(weights.config.dump(),
                                                 weights.source + " (configuration)");
  cfg.fused_mlp = weights.format.find("transformer_blocks.0.img_mlp.gate_up.weight") != nullptr;
  return cfg;
}

QwenImage21Transformer2DModel load_transformer21(const io::ComponentWeights& weights,
                                                 torch::Dtype dtype, torch::Device device,
                                                 io::QuantizeMode quantize) {
  QwenImage21Transformer2DModel model(transformer21_config(weights));
  load_module(*model, weights, "transformer", dtype, device, {}, quantize);
  model->eval();
  return model;
}

}  // namespace qwen::models
