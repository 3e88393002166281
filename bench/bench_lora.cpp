// LoRA cost (issue #14): seconds per transformer call without LoRA, with a LoRA on every Linear of
// the blocks (as the Lightning LoRAs adapt them) as a side branch and as a merged working copy, for
// each rank, plus the time to switch LoRA sets (apply / clear) and the extra device memory. Random
// weights on the released configuration (--layers / --heads reduce it; the merged copy of every
// block Linear doubles their memory, so the default on CUDA is 24 of the 60 blocks: per-step
// numbers scale with the block count).
//
//   build/bench/bench_lora --device cuda --dtype bfloat16 --width 1024 --height 1024 --ranks
//   16,64,128 build/bench/bench_lora --device cpu --dtype float32 --reduced --layers 1 --heads 2
//   --width 64 --height 64
//
// Prints one line per configuration: RESULT mode=base|side|merge rank=R s_per_step=S overhead_pct=P
// switch_s=T extra_gib=G.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "models/linear.h"
#include "models/lora.h"
#include "models/transformer.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string device = "cpu", dtype;
  int layers = 0, heads = 0, width = 1024, height = 1024, txt_len = 64, steps = 3, warmup = 1,
      threads = 0;
  bool reduced = false;
  std::vector<int64_t> ranks{16, 64, 128};
};

void sync(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize();
}

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", s.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (s == "--device")
      a.device = next();
    else if (s == "--dtype")
      a.dtype = next();
    else if (s == "--layers")
      a.layers = std::atoi(next().c_str());
    else if (s == "--heads")
      a.heads = std::atoi(next().c_str());
    else if (s == "--width")
      a.width = std::atoi(next().c_str());
    else if (s == "--height")
      a.height = std::atoi(next().c_str());
    else if (s == "--txt-len")
      a.txt_len = std::atoi(next().c_str());
    else if (s == "--steps")
      a.steps = std::atoi(next().c_str());
    else if (s == "--warmup")
      a.warmup = std::atoi(next().c_str());
    else if (s == "--threads")
      a.threads = std::atoi(next().c_str());
    else if (s == "--reduced")
      a.reduced = true;
    else if (s == "--ranks") {
      a.ranks.clear();
      std::stringstream ss(next());
      for (std::string r; std::getline(ss, r, ',');) a.ranks.push_back(std::atoll(r.c_str()));
    } else {
      std::fprintf(stderr,
                   "usage: bench_lora [--device cpu|cuda] [--dtype float32|bfloat16] [--reduced] "
                   "[--layers N] [--heads N] [--width W] [--height H] [--txt-len N] [--steps N] "
                   "[--warmup N] [--ranks 16,64,128] [--threads N]\n");
      return 2;
    }
  }
  const auto target = qwen::bench::bench_target(a.device, a.dtype, a.threads);
  if (!target) return 1;
  const torch::Device device = target->device;
  const torch::Dtype dtype = target->dtype;
  qwen::models::TransformerConfig cfg;
  if (a.reduced) {
    cfg.num_layers = 2;
    cfg.num_attention_heads = 8;
  }
  cfg.num_layers = a.layers > 0 ? a.layers : device.is_cuda() && !a.reduced ? 24 : cfg.num_layers;
  if (a.heads > 0) cfg.num_attention_heads = a.heads;

  torch::NoGradGuard ng;
  c10::InferenceMode inference;
  auto model = qwen::bench::random_transformer(cfg, device, dtype);
  sync(device);

  const int64_t s_img = (a.height / 16) * (a.width / 16);
  auto opts = torch::TensorOptions().dtype(dtype).device(device);
  auto x = torch::randn({1, s_img, 64}, opts);
  auto txt = torch::randn({1, a.txt_len, cfg.joint_attention_dim}, opts);
  std::vector<qwen::models::ImageShape> shapes{{1, a.height / 16, a.width / 16}};
  std::printf(
      "config: %lld layers, %lld heads x %lld, %s %s; image %dx%d (%lld tokens), text %d tokens\n",
      (long long)cfg.num_layers, (long long)cfg.num_attention_heads,
      (long long)cfg.attention_head_dim, a.device.c_str(),
      dtype == torch::kBFloat16 ? "bfloat16" : "float32", a.width, a.height, (long long)s_img,
      a.txt_len);

  auto per_step = [&]() {
    for (int i = 0; i < a.warmup; ++i)
      model->forward(x, txt, {}, torch::full({1}, 0.5, opts), shapes);
    sync(device);
    const auto t = Clock::now();
    for (int i = 0; i < a.steps; ++i)
      model->forward(x, txt, {}, torch::full({1}, 0.9 - 0.1 * i, opts), shapes);
    sync(device);
    return since(t) / std::max(1, a.steps);
  };

  const double base = per_step();
  std::printf("RESULT mode=base rank=0 s_per_step=%.5f overhead_pct=0 switch_s=0 extra_gib=0\n",
              base);
  std::fflush(stdout);
  // The Linears of the blocks (attention q/k/v/out for both streams, both MLPs, img_mod/txt_mod).
  std::vector<std::pair<std::string, std::pair<int64_t, int64_t>>> targets;
  for (const auto& [name, shape] : qwen::models::linear_module_shapes(*model))
    if (name.rfind("transformer_blocks.", 0) == 0) targets.push_back({name, shape});
  for (const int64_t rank : a.ranks) {
    auto file = std::make_shared<qwen::models::LoraFile>();
    file->path = "random-rank-" + std::to_string(rank);
    for (const auto& [name, shape] : targets) {
      qwen::models::LoraModule m;
      m.module = name;
      m.down = torch::randn({rank, shape.second}, opts) * 0.01;
      m.up = torch::randn({shape.first, rank}, opts) * 0.01;
      m.alpha = m.r = static_cast<double>(rank);
      file->modules.push_back(std::move(m));
    }
    // Extra weight memory: the branches (side) or the merged copies (merge), both in `dtype`.
    double side_bytes = 0, merged_bytes = 0;
    const double elem = dtype == torch::kBFloat16 ? 2 : 4;
    for (const auto& [name, shape] : targets) {
      side_bytes += elem * rank * (shape.first + shape.second);
      merged_bytes += elem * shape.first * shape.second;
    }
    // The base again right before each rank (the numbers drift on a shared machine).
    const double base_now = per_step();
    for (const char* mode : {"side", "merge"}) {
      const bool merge = std::string(mode) == "merge";
      sync(device);
      auto t = Clock::now();
      const int64_t n = qwen::models::apply_loras(*model, {{file, 0.8}}, merge);
      sync(device);
      const double apply_s = since(t);
      const double extra = (merge ? merged_bytes : side_bytes) / double(1u << 30);
      const double s = per_step();
      t = Clock::now();
      qwen::models::clear_loras(*model);
      sync(device);
      const double clear_s = since(t);
      std::printf(
          "RESULT mode=%s rank=%lld s_per_step=%.5f overhead_pct=%.1f switch_s=%.4f extra_gib=%.2f "
          "(%lld layers; apply %.4f s, clear %.4f s)\n",
          mode, (long long)rank, s, 100.0 * (s - base_now) / base_now, apply_s + clear_s, extra,
          (long long)n, apply_s, clear_s);
      std::fflush(stdout);
    }
  }
  return 0;
}
