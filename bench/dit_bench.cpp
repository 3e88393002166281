#include "dit_bench.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>

#include "bench_util.h"
#include "models/offload.h"
#include "models/transformer.h"
#include "pipelines/latents.h"
#include "pipelines/scheduler.h"

namespace qwen::bench {

namespace {

struct Args {
  std::string device = "cpu";
  std::string dtype;
  int width = 1024, height = 1024;
  int steps = 3;
  int warmup = 1;
  int cond_width = 0, cond_height = 0;  // edit: 0 = the target size
  int txt_len = 0;                      // 0: 128 (t2i) / 256 (edit: template + vision tokens)
  bool cfg = true;
  bool reduced = false;
  int layers = 0, heads = 0;
  int threads = 0;
  // Edit bench: Qwen-Image-Layered's decompose (issue #16) with this many layers instead of an
  // edit: layers + 1 noise frames of the target size plus the condition, Layer3D RoPE and the
  // additional timestep embedding.
  int decompose = 0;
  bool zero_cond_t = false;
  // Memory placement (issue #13, models/offload.h): resident, modulation or stream (with
  // --resident-blocks N kept on the device, default 0).
  std::string memory = "resident";
  int resident_blocks = 0;
  // Weights (issues #13/#15): dense in the compute dtype, or fp8 e4m3 with a per-tensor scale
  // (bench_util.h quantize_linears_fp8); --fp8-matmul as the engines' fp8_matmul.
  std::string weights = "dense";
  std::string fp8_matmul = "auto";
};

void usage(bool edit) {
  std::fprintf(
      stderr,
      "usage: %s [--device cpu|cuda] [--dtype float32|bfloat16]\n"
      "         [--width W] [--height H]%s\n"
      "         [--steps N] [--warmup N] [--txt-len T] [--no-cfg]%s\n"
      "         [--reduced] [--layers L] [--heads H] [--threads T]\n"
      "         [--memory resident|modulation|stream] [--resident-blocks N]%s\n"
      "         [--weights dense|fp8] [--fp8-matmul auto|on|off]\n"
      "  default: the real 20.4B configuration (60 layers, 24 heads x 128), 1024x1024%s;\n"
      "  --reduced: 2 layers x 8 heads (for CPUs); --layers/--heads override.\n",
      edit ? "bench_edit" : "bench_transformer", edit ? " [--cond-width W] [--cond-height H]" : "",
      edit ? " [--zero-cond-t]" : "",
      edit ? "\n         [--decompose LAYERS]  (Qwen-Image-Layered: e.g. --width 640 --height "
             "640 --decompose 4)"
           : "",
      edit ? " target and condition" : "");
}

bool parse(int argc, char** argv, bool edit, Args& a) {
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&]() -> int {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", k.c_str());
        std::exit(2);
      }
      return std::atoi(argv[++i]);
    };
    if (k == "--device" && i + 1 < argc)
      a.device = argv[++i];
    else if (k == "--dtype" && i + 1 < argc)
      a.dtype = argv[++i];
    else if (k == "--width")
      a.width = next();
    else if (k == "--height")
      a.height = next();
    else if (edit && k == "--cond-width")
      a.cond_width = next();
    else if (edit && k == "--cond-height")
      a.cond_height = next();
    else if (edit && k == "--zero-cond-t")
      a.zero_cond_t = true;
    else if (edit && k == "--decompose")
      a.decompose = next();
    else if (k == "--steps")
      a.steps = next();
    else if (k == "--warmup")
      a.warmup = next();
    else if (k == "--txt-len")
      a.txt_len = next();
    else if (k == "--no-cfg")
      a.cfg = false;
    else if (k == "--reduced")
      a.reduced = true;
    else if (k == "--layers")
      a.layers = next();
    else if (k == "--heads")
      a.heads = next();
    else if (k == "--threads")
      a.threads = next();
    else if (k == "--memory" && i + 1 < argc)
      a.memory = argv[++i];
    else if (k == "--resident-blocks")
      a.resident_blocks = next();
    else if (k == "--weights" && i + 1 < argc)
      a.weights = argv[++i];
    else if (k == "--fp8-matmul" && i + 1 < argc)
      a.fp8_matmul = argv[++i];
    else
      return false;
  }
  if (a.txt_len == 0) a.txt_len = edit ? 256 : 128;
  if (a.cond_width == 0) a.cond_width = a.width;
  if (a.cond_height == 0) a.cond_height = a.height;
  return a.width >= 16 && a.height >= 16 && a.cond_width >= 16 && a.cond_height >= 16 &&
         a.steps >= 1 && a.txt_len >= 1 && a.warmup >= 0 &&
         (a.dtype.empty() || a.dtype == "float32" || a.dtype == "bfloat16") &&
         (a.memory == "resident" || a.memory == "modulation" || a.memory == "stream") &&
         a.resident_blocks >= 0 && (a.decompose == 0 || (a.decompose >= 2 && a.decompose <= 10)) &&
         valid_weights_arg(a.weights) && valid_fp8_matmul_arg(a.fp8_matmul);
}

}  // namespace

int run_dit_bench(int argc, char** argv, bool edit) {
  using Clock = std::chrono::steady_clock;
  const auto t_start = Clock::now();
  auto seconds_since = [](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  Args a;
  if (!parse(argc, argv, edit, a)) {
    usage(edit);
    return 2;
  }
  const auto target = qwen::bench::bench_target(a.device, a.dtype, a.threads);
  if (!target) return 1;
  const torch::Device device = target->device;
  const torch::Dtype dtype = target->dtype;
  qwen::models::TransformerConfig cfg;  // the released 20B configuration
  if (a.reduced) {
    cfg.num_layers = 2;
    cfg.num_attention_heads = 8;
  }
  if (a.layers > 0) cfg.num_layers = a.layers;
  if (a.heads > 0) cfg.num_attention_heads = a.heads;
  cfg.zero_cond_t = a.zero_cond_t;
  const bool decompose = a.decompose > 0;
  if (decompose) {  // the released Layered transformer: the 20B one plus these two flags
    cfg.use_layer3d_rope = cfg.use_additional_t_cond = true;
    a.cond_width = a.width;  // the condition is the picture at the layers' size
    a.cond_height = a.height;
  }

  torch::NoGradGuard ng;
  auto t0 = Clock::now();
  // Built on the device as for resident; a placement then moves its host part off the device
  // (models::TransformerPlacement: pinned host copies), as the engine does after loading.
  const bool placed = a.memory != "resident";
  auto model = qwen::bench::random_transformer(cfg, device, dtype);
  if (a.weights == "fp8") {
    const int64_t n = qwen::bench::quantize_linears_fp8(*model);
    std::printf("weights: fp8 e4m3 with a per-tensor scale (%lld Linear layers, %.2f GB)\n",
                (long long)n, qwen::models::quantized_weight_bytes(*model) / 1e9);
  }
  const bool fp8_on = qwen::bench::apply_fp8_matmul(a.fp8_matmul, device, *model);
  std::shared_ptr<qwen::models::TransformerPlacement> placement;
  if (placed) {
    placement = std::make_shared<qwen::models::TransformerPlacement>(
        *model, device, a.memory == "stream", a.resident_blocks);
    model->set_placement(placement);
  }
  if (device.is_cuda()) torch::cuda::synchronize();
  const double build_s = seconds_since(t0);

  const int64_t h = a.height / 16, w = a.width / 16;
  const int64_t hc = a.cond_height / 16, wc = a.cond_width / 16;
  const int64_t frames = decompose ? a.decompose + 1 : 1;  // Layered: composite + layers
  const int64_t s_img = frames * h * w;                    // target (noise) tokens
  const int64_t s_cond = edit ? hc * wc : 0;               // condition-image tokens
  const int64_t s_neg = std::max(1, a.txt_len / 4);
  auto opts = torch::TensorOptions().dtype(dtype).device(device);
  auto gen = qwen::pipelines::make_generator(0);
  auto latents = qwen::pipelines::randn(gen, {1, s_img, 64}, dtype, device);
  torch::Tensor cond_latents;
  if (edit) cond_latents = qwen::pipelines::randn(gen, {1, s_cond, 64}, dtype, device);
  auto txt = torch::randn({1, a.txt_len, cfg.joint_attention_dim}, opts);
  auto neg = torch::randn({1, s_neg, cfg.joint_attention_dim}, opts);
  qwen::pipelines::FlowMatchEulerScheduler sched(qwen::pipelines::SchedulerConfig::qwen_image());
  sched.set_timesteps(a.warmup + a.steps, qwen::pipelines::calculate_shift(s_img, sched.config()));
  auto ts = torch::tensor(sched.timesteps()).to(device);

  std::printf("config: %lld layers, %lld heads x %lld (%.2f B parameters), %s %s\n",
              (long long)cfg.num_layers, (long long)cfg.num_attention_heads,
              (long long)cfg.attention_head_dim, cfg.parameter_count() / 1e9, device.str().c_str(),
              dtype == torch::kBFloat16 ? "bfloat16" : "float32");
  if (decompose)
    std::printf(
        "decompose: %d layers, %lld frames of %dx%d (%lld tokens) + condition (%lld tokens)",
        a.decompose, (long long)frames, a.width, a.height, (long long)s_img, (long long)s_cond);
  else if (edit)
    std::printf("edit: target %dx%d (%lld tokens) + condition %dx%d (%lld tokens)", a.width,
                a.height, (long long)s_img, a.cond_width, a.cond_height, (long long)s_cond);
  else
    std::printf("image %dx%d (%lld tokens)", a.width, a.height, (long long)s_img);
  std::printf(", text %d tokens%s%s; built in %.1f s\n", a.txt_len,
              a.cfg ? " + negative (true CFG)" : "", a.zero_cond_t ? ", zero_cond_t" : "", build_s);

  // Modulation off the device: every step's timestep-only tensors computed once, before the loop
  // (as pipelines::denoise does per job), timed on their own.
  // Layered: additional_t_cond = 0 (the reference's is_rgb), the same tensor every call.
  torch::Tensor t_cond;
  if (decompose)
    t_cond = torch::zeros({1}, torch::TensorOptions().dtype(torch::kInt64).device(device));
  std::vector<torch::Tensor> step_t;
  for (int i = 0; i < a.warmup + a.steps; ++i) step_t.push_back(ts[i].expand({1}).to(dtype) / 1000);
  std::vector<qwen::models::TimestepModulation> precomputed;
  double precompute_s = 0;
  if (placement) {
    auto p0 = Clock::now();
    precomputed = placement->precompute_modulation(*model, step_t, dtype, t_cond);
    if (device.is_cuda()) torch::cuda::synchronize();
    precompute_s = seconds_since(p0);
    std::printf("modulation precomputed for %d steps in %.2f s (%.2f GB of weights copied)\n",
                a.warmup + a.steps, precompute_s, placement->stats().modulation_bytes / 1e9);
    if (placement->streamed_blocks() > 0)
      std::printf("streaming %lld of %lld blocks per pass\n",
                  (long long)placement->streamed_blocks(), (long long)cfg.num_layers);
  }
  int64_t streamed_before = 0;

  std::vector<qwen::models::ImageShape> shapes(size_t(frames), qwen::models::ImageShape{1, h, w});
  if (edit) shapes.push_back({1, hc, wc});
  double timed = 0, warm_s = 0;
  std::optional<DevicePeak> peak_before;  // build + warm-up
  for (int i = 0; i < a.warmup + a.steps; ++i) {
    if (device.is_cuda()) torch::cuda::synchronize();
    if (i == a.warmup) {  // the timed steps start: a fresh peak
      peak_before = device_peak(device);
      reset_device_peak(device);
      if (placement) streamed_before = placement->stats().streamed_bytes;
    }
    auto s0 = Clock::now();
    const auto& t = step_t[size_t(i)];
    auto x = edit ? torch::cat({latents, cond_latents}, 1) : latents;
    // As the pipelines' loop (pipelines::denoise): the timestep-only modulation is computed once
    // per step and shared by the CFG passes (or precomputed above).
    qwen::models::TimestepModulation local;
    auto& modulation = precomputed.empty() ? local : precomputed[size_t(i)];
    auto v = model->forward(x, txt, {}, t, shapes, t_cond, &modulation).slice(1, 0, s_img);
    if (a.cfg) {
      auto vn = model->forward(x, neg, {}, t, shapes, t_cond, &modulation).slice(1, 0, s_img);
      v = qwen::pipelines::true_cfg(v, vn, 4.0);
    }
    latents = sched.step(v, latents);
    if (device.is_cuda()) torch::cuda::synchronize();
    const double dt = seconds_since(s0);
    const bool warm = i < a.warmup;
    (warm ? warm_s : timed) += dt;
    std::printf("step %d%s: %.3f s\n", i + 1, warm ? " (warm-up)" : "", dt);
  }
  const auto peak_steps = device_peak(device);
  const bool finite = torch::isfinite(latents).all().item<bool>();
  const double per_step = timed / a.steps;
  double flops = forward_flops(cfg, s_img + s_cond, a.txt_len);
  if (a.cfg) flops += forward_flops(cfg, s_img + s_cond, s_neg);
  // Everything but the step loop: process start, weights, inputs, the final checks.
  const double outside_s = seconds_since(t_start) - timed - warm_s;
  std::printf("seconds per step: %.3f\n", per_step);
  std::printf("achieved: %.2f TFLOP/s (%.2f TFLOP per step)\n", flops / per_step / 1e12,
              flops / 1e12);
  std::printf("time outside the step loop: %.2f s (weights %.2f s), warm-up steps %.2f s\n",
              outside_s, build_s, warm_s);
  double peak_alloc = -1, peak_reserved = -1;
  if (peak_steps) {
    peak_alloc = peak_steps->allocated_gib;
    peak_reserved = peak_steps->reserved_gib;
    std::printf(
        "peak device memory (timed steps, caching allocator): %.2f GiB allocated, %.2f GiB "
        "reserved\n",
        peak_alloc, peak_reserved);
    if (peak_before)
      std::printf("peak device memory (weights + warm-up): %.2f GiB allocated, %.2f GiB reserved\n",
                  peak_before->allocated_gib, peak_before->reserved_gib);
    std::printf("device memory in use (driver): %.2f GiB\n", cuda_used_gib());
  }
  double streamed_gb_per_step = 0, stream_gbps = 0;
  if (placement) {
    streamed_gb_per_step = (placement->stats().streamed_bytes - streamed_before) / 1e9 / a.steps;
    stream_gbps = streamed_gb_per_step / per_step;
    std::printf(
        "memory %s: %.2f GB streamed per step (%.2f GB/s over the step time), host wait "
        "for copies %.2f s, modulation precompute %.2f s\n",
        a.memory.c_str(), streamed_gb_per_step, stream_gbps, placement->stats().wait_seconds,
        precompute_s);
  }
  const double rss = host_peak_gib();
  std::printf("peak host memory (RSS): %.2f GiB\n", rss);
  std::printf("finite output: %s\n", finite ? "yes" : "no");
  // One line for scripts (bench/gpu/check.sh): key=value, -1 = not measured on this device.
  std::printf(
      "RESULT s_per_step=%.4f tflops=%.2f peak_alloc_gib=%.2f peak_reserved_gib=%.2f "
      "peak_rss_gib=%.2f outside_loop_s=%.2f weights_s=%.2f warmup_s=%.2f finite=%s memory=%s "
      "streamed_gb_per_step=%.2f stream_gbps=%.2f precompute_s=%.2f weights=%s fp8_matmul=%s\n",
      per_step, flops / per_step / 1e12, peak_alloc, peak_reserved, rss, outside_s, build_s, warm_s,
      finite ? "yes" : "no", a.memory.c_str(), streamed_gb_per_step, stream_gbps, precompute_s,
      a.weights.c_str(), fp8_on ? "on" : "off");
  return 0;
}

}  // namespace qwen::bench
