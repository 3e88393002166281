// The Qwen-Image-2.1 transformer (QwenImage21Transformer2DModel, issue #15) with random weights at
// its real configuration: seconds per denoising step without and with the KV cache, achieved
// TFLOP/s and peak device memory, per image size.
//
// The real configuration is Transformer21Config's defaults = the constructor defaults of diffusers
// 0.42.1's QwenImage21Transformer2DModel: 32 single-stream blocks, 32 heads x 128 (inner 4096),
// context 4096 (Qwen3-VL-8B hidden size), SwiGLU 3x (12288), 64 latent channels, patch 1 (one token
// per 16x16 pixels), RoPE axes 16/56/56 = 7.08 B parameters; third-party ports of the released
// checkpoint (stable-diffusion.cpp's QwenImage21Config, detected from qwen_image_2.1_bf16's shapes)
// report the same numbers, and the "7.1B" and "2.7 PFLOP per 1024^2 image" agree with them.
//
//   bench_transformer21 [--device cpu|cuda] [--dtype float32|bfloat16] [--sizes 1024,2048]
//                       [--steps N] [--warmup N] [--txt-len T] [--cond N] [--cfg] [--reduced]
//                       [--layers L] [--heads H] [--threads T] [--weights dense|fp8]
//                       [--fp8-matmul auto|on|off]
//
// Per size: `uncached` = every step runs the whole sequence (`--no-kv-cache`); `kv cache` = step 0
// fills the cache (timed on its own), the timed steps run the target tokens only. TFLOP/s counts
// the work each mode does (Transformer21Config::forward_flops: linear layers + QK^T/AV over the
// keys each query may see). One RESULT line per size (bench/gpu/check.sh reads it).
#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "models/transformer21.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string device = "cpu", dtype;
  std::vector<int> sizes{1024, 2048};
  int steps = 3, warmup = 1, txt_len = 128, cond = 0, threads = 0, layers = 0, heads = 0;
  bool cfg = false, reduced = false;
  // Weights (issues #13/#15): dense in the compute dtype or fp8 e4m3 with a per-tensor scale
  // (bench_util.h quantize_linears_fp8); --fp8-matmul as the engines' fp8_matmul.
  std::string weights = "dense", fp8_matmul = "auto";
};

void usage() {
  std::fprintf(
      stderr,
      "usage: bench_transformer21 [--device cpu|cuda] [--dtype float32|bfloat16]\n"
      "         [--sizes 1024,2048] [--steps N] [--warmup N] [--txt-len T] [--cond N]\n"
      "         [--cfg] [--reduced] [--layers L] [--heads H] [--threads T]\n"
      "         [--weights dense|fp8] [--fp8-matmul auto|on|off]\n"
      "  default: the real 7.1B configuration (32 layers, 32 heads x 128), square images of\n"
      "  each size, text to image (no CFG, the 2.1 default); --cond N adds N condition\n"
      "  images of the target's size (an edit); --reduced: 2 layers x 4 heads (CPUs).\n");
}

bool parse(int argc, char** argv, Args& a) {
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", k.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (k == "--device") {
      a.device = value();
    } else if (k == "--dtype") {
      a.dtype = value();
    } else if (k == "--sizes") {
      a.sizes.clear();
      std::stringstream ss(value());
      for (std::string s; std::getline(ss, s, ',');) a.sizes.push_back(std::atoi(s.c_str()));
    } else if (k == "--steps") {
      a.steps = std::atoi(value().c_str());
    } else if (k == "--warmup") {
      a.warmup = std::atoi(value().c_str());
    } else if (k == "--txt-len") {
      a.txt_len = std::atoi(value().c_str());
    } else if (k == "--cond") {
      a.cond = std::atoi(value().c_str());
    } else if (k == "--threads") {
      a.threads = std::atoi(value().c_str());
    } else if (k == "--layers") {
      a.layers = std::atoi(value().c_str());
    } else if (k == "--heads") {
      a.heads = std::atoi(value().c_str());
    } else if (k == "--weights") {
      a.weights = value();
    } else if (k == "--fp8-matmul") {
      a.fp8_matmul = value();
    } else if (k == "--cfg") {
      a.cfg = true;
    } else if (k == "--reduced") {
      a.reduced = true;
    } else {
      return false;
    }
  }
  for (int s : a.sizes)
    if (s < 32 || s % 32 != 0) return false;
  return !a.sizes.empty() && a.steps >= 1 && a.warmup >= 0 && a.txt_len >= 1 && a.cond >= 0 &&
         (a.dtype.empty() || a.dtype == "float32" || a.dtype == "bfloat16") &&
         qwen::bench::valid_weights_arg(a.weights) &&
         qwen::bench::valid_fp8_matmul_arg(a.fp8_matmul);
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!parse(argc, argv, a)) {
    usage();
    return 2;
  }
  const auto target = qwen::bench::bench_target(a.device, a.dtype, a.threads);
  if (!target) return 1;
  const torch::Device device = target->device;
  const torch::Dtype dtype = target->dtype;
  qwen::models::Transformer21Config cfg;  // the released 7.1B configuration
  if (a.reduced) {
    cfg.num_layers = 2;
    cfg.num_attention_heads = 4;
  }
  if (a.layers > 0) cfg.num_layers = a.layers;
  if (a.heads > 0) cfg.num_attention_heads = a.heads;
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };

  torch::NoGradGuard ng;
  auto t0 = Clock::now();
  const auto old_dtype = c10::get_default_dtype();
  c10::set_default_dtype(caffe2::TypeMeta::fromScalarType(dtype));
  qwen::models::QwenImage21Transformer2DModel model(cfg, device);
  c10::set_default_dtype(old_dtype);
  for (auto& p : model->named_parameters()) {
    if (p.key().find("text_norm") != std::string::npos)
      p.value().zero_();  // zero-centred: gain 1
    else if (p.key().find("norm") != std::string::npos)
      p.value().fill_(1.0);
    else
      p.value().normal_(0.0, 0.02);
  }
  model->eval();
  if (a.weights == "fp8") {
    const int64_t n = qwen::bench::quantize_linears_fp8(*model);
    std::printf("weights: fp8 e4m3 with a per-tensor scale (%lld Linear layers, %.2f GB)\n",
                (long long)n, qwen::models::quantized_weight_bytes(*model) / 1e9);
  }
  const bool fp8_on = qwen::bench::apply_fp8_matmul(a.fp8_matmul, device, *model);
  sync();
  std::printf("config: %lld layers, %lld heads x %lld (%.2f B parameters), %s %s\n",
              (long long)cfg.num_layers, (long long)cfg.num_attention_heads,
              (long long)cfg.attention_head_dim, cfg.parameter_count() / 1e9, device.str().c_str(),
              target->dtype_name());
  std::printf("built in %.1f s\n", seconds_since(t0));

  auto opts = torch::TensorOptions().dtype(dtype).device(device);
  for (const int size : a.sizes) {
    const int64_t h = size / 16, w = size / 16, T = h * w;
    // The vision-language sequence: the prompt's text, then per condition image a few text slots
    // ("<imageN><|vision_start|>") and its T/4 slots and <|vision_end|>; then the target's slots.
    std::vector<bool> img_mask(size_t(a.txt_len), false);
    std::vector<qwen::models::qwen21::Shape> shapes;
    for (int c = 0; c < a.cond; ++c) {
      img_mask.insert(img_mask.end(), 2, false);
      img_mask.insert(img_mask.end(), size_t(T / 4), true);
      img_mask.push_back(false);
      shapes.push_back({1, h, w});
    }
    const int64_t L = int64_t(img_mask.size());
    img_mask.insert(img_mask.end(), size_t(T / 4), true);
    shapes.push_back({1, h, w});
    const auto layout = qwen::models::qwen21::make_token_layout(img_mask, shapes);
    const int64_t P = layout.prefix_len, S = layout.seq_len;
    const int64_t text = L - a.cond * T / 4;
    // Keys each query sees on average (the block-causal mask), for the FLOP count.
    double keys_uncached = double(T) * double(S);
    for (const auto& s : layout.segments)
      keys_uncached += s.text ? double(s.end - s.start) * double(s.start + s.end + 1) / 2.0
                              : double(s.end - s.start) * double(s.end);
    const int passes = a.cfg ? 2 : 1;
    const double flops_uncached = passes * cfg.forward_flops(S, keys_uncached / double(S), T, text);
    const double flops_cached = passes * cfg.forward_flops(T, double(S), T, 0);

    auto ehs = torch::randn({1, L, cfg.context_in_dim}, opts);
    auto neg = torch::randn({1, L, cfg.context_in_dim}, opts);
    auto cond = torch::randn({1, a.cond * T, cfg.in_channels}, opts);
    auto latents = torch::randn({1, T, cfg.in_channels}, opts);
    std::printf(
        "\nimage %dx%d (%lld tokens), text %lld tokens, %d condition image(s)%s: sequence "
        "%lld tokens (prefix %lld)\n",
        size, size, (long long)T, (long long)text, a.cond, a.cfg ? ", true CFG" : "", (long long)S,
        (long long)P);
    const int total = a.warmup + a.steps;
    auto t_of = [&](int i) { return torch::full({1}, 1.0 - 0.9 * i / total, opts); };
    auto step = [&](int i, qwen::models::Transformer21KVCache* c0,
                    qwen::models::Transformer21KVCache* c1) {
      auto x = a.cond > 0 ? torch::cat({cond, latents}, 1) : latents;
      const bool cached = c0 && c0->filled();
      auto in = cached ? latents : x;  // a cached step needs the target rows only
      auto v =
          model->forward(in, cached ? torch::Tensor() : ehs, {}, t_of(i), shapes, img_mask, c0);
      if (a.cfg) {
        auto vn =
            model->forward(in, cached ? torch::Tensor() : neg, {}, t_of(i), shapes, img_mask, c1);
        v = vn + 4.0 * (v - vn);
      }
      latents = latents - (0.9 / total) * v;
    };

    // Uncached (--no-kv-cache): warm-up, then the timed steps.
    for (int i = 0; i < a.warmup; ++i) step(i, nullptr, nullptr);
    sync();
    qwen::bench::reset_device_peak(device);
    auto s0 = Clock::now();
    for (int i = a.warmup; i < total; ++i) step(i, nullptr, nullptr);
    sync();
    const double uncached_s = seconds_since(s0) / a.steps;
    const auto peak_uncached = qwen::bench::device_peak(device);

    // KV cache: the extract step, then the cached steps.
    qwen::models::Transformer21KVCache cache, neg_cache;
    qwen::bench::reset_device_peak(device);
    s0 = Clock::now();
    step(0, &cache, &neg_cache);
    sync();
    const double extract_s = seconds_since(s0);
    s0 = Clock::now();
    for (int i = 1; i <= a.steps; ++i) step(i, &cache, &neg_cache);
    sync();
    const double cached_s = seconds_since(s0) / a.steps;
    const auto peak_cached = qwen::bench::device_peak(device);
    const double cache_gib = double(cache.bytes() + neg_cache.bytes()) / double(1u << 30);
    const bool finite = torch::isfinite(latents).all().item<bool>();

    std::printf("uncached: %.3f s/step, %.2f TFLOP/s (%.2f TFLOP per step)", uncached_s,
                flops_uncached / uncached_s / 1e12, flops_uncached / 1e12);
    if (peak_uncached) std::printf(", peak %.2f GiB allocated", peak_uncached->allocated_gib);
    std::printf(
        "\nkv cache: first step (fills the cache) %.3f s, then %.3f s/step, %.2f TFLOP/s "
        "(%.2f TFLOP per step), cache %.3f GiB",
        extract_s, cached_s, flops_cached / cached_s / 1e12, flops_cached / 1e12, cache_gib);
    if (peak_cached) std::printf(", peak %.2f GiB allocated", peak_cached->allocated_gib);
    const double image40 = extract_s + 39 * cached_s, image40_uncached = 40 * uncached_s;
    std::printf("\n40-step image: %.2f s with the KV cache, %.2f s without (%.2f PFLOP)\n", image40,
                image40_uncached, (flops_uncached + 39 * flops_cached) / 1e15);
    std::printf(
        "RESULT s_per_step=%.4f s_per_step_uncached=%.4f extract_s=%.4f tflops=%.2f "
        "tflops_uncached=%.2f peak_alloc_gib=%.2f peak_reserved_gib=%.2f "
        "peak_alloc_uncached_gib=%.2f cache_gib=%.3f image40_s=%.2f image40_uncached_s=%.2f "
        "size=%d cond=%d cfg=%d finite=%s weights=%s fp8_matmul=%s\n",
        cached_s, uncached_s, extract_s, flops_cached / cached_s / 1e12,
        flops_uncached / uncached_s / 1e12, peak_cached ? peak_cached->allocated_gib : -1.0,
        peak_cached ? peak_cached->reserved_gib : -1.0,
        peak_uncached ? peak_uncached->allocated_gib : -1.0, cache_gib, image40, image40_uncached,
        size, a.cond, a.cfg ? 1 : 0, finite ? "yes" : "no", a.weights.c_str(),
        fp8_on ? "on" : "off");
    std::fflush(stdout);
  }
  return 0;
}
