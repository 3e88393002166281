// bench_transformer: the Qwen-Image MMDiT with random weights (no checkpoint) at a chosen size and
// precision. Runs N denoising steps (two transformer calls per step with --cfg, as true CFG does)
// and prints seconds per step, peak memory and achieved TFLOP/s.
//
//   bench_transformer --device cuda --dtype bfloat16 --width 1328 --height 1328 --steps 5
//   bench_transformer --reduced --width 512 --height 512 --steps 2 --threads 2     (CPU)
#include <dlfcn.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "bench_util.h"
#include "models/transformer.h"
#include "pipelines/latents.h"
#include "pipelines/scheduler.h"

using namespace qwen::bench;

namespace {

struct Args {
  std::string device = "cpu";
  std::string dtype;
  int width = 1024, height = 1024;
  int steps = 3;
  int warmup = 1;
  int txt_len = 128;
  bool cfg = true;
  bool reduced = false;
  int layers = 0, heads = 0;
  int threads = 0;
};

void usage() {
  std::fprintf(stderr,
               "usage: bench_transformer [--device cpu|cuda] [--dtype float32|bfloat16]\n"
               "         [--width W] [--height H] [--steps N] [--warmup N] [--txt-len T]\n"
               "         [--no-cfg] [--reduced] [--layers L] [--heads H] [--threads T]\n"
               "  default: the real 20.4B configuration (60 layers, 24 heads x 128);\n"
               "  --reduced: 2 layers x 8 heads (for CPUs); --layers/--heads override.\n");
}

bool parse(int argc, char** argv, Args& a) {
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", k.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (k == "--device")
      a.device = next();
    else if (k == "--dtype")
      a.dtype = next();
    else if (k == "--width")
      a.width = std::atoi(next());
    else if (k == "--height")
      a.height = std::atoi(next());
    else if (k == "--steps")
      a.steps = std::atoi(next());
    else if (k == "--warmup")
      a.warmup = std::atoi(next());
    else if (k == "--txt-len")
      a.txt_len = std::atoi(next());
    else if (k == "--no-cfg")
      a.cfg = false;
    else if (k == "--reduced")
      a.reduced = true;
    else if (k == "--layers")
      a.layers = std::atoi(next());
    else if (k == "--heads")
      a.heads = std::atoi(next());
    else if (k == "--threads")
      a.threads = std::atoi(next());
    else
      return false;
  }
  return a.width >= 16 && a.height >= 16 && a.steps >= 1 && a.txt_len >= 1 && a.warmup >= 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!parse(argc, argv, a)) {
    usage();
    return 2;
  }
  if (a.threads > 0)
    torch::set_num_threads(a.threads);
  else
    torch::set_num_threads(static_cast<int>(std::thread::hardware_concurrency()));
  const torch::Device device(a.device);
  if (device.is_cuda() && !torch::cuda::is_available()) {
    std::fprintf(stderr, "CUDA is not available\n");
    return 1;
  }
  const torch::Dtype dtype = a.dtype.empty()
                                 ? (device.is_cuda() ? torch::kBFloat16 : torch::kFloat32)
                             : a.dtype == "bfloat16" ? torch::kBFloat16
                                                     : torch::kFloat32;
  qwen::models::TransformerConfig cfg;  // the released 20B configuration
  if (a.reduced) {
    cfg.num_layers = 2;
    cfg.num_attention_heads = 8;
  }
  if (a.layers > 0) cfg.num_layers = a.layers;
  if (a.heads > 0) cfg.num_attention_heads = a.heads;

  torch::NoGradGuard ng;
  auto t0 = std::chrono::steady_clock::now();
  // Parameters are created directly in the target dtype, block by block on the target device.
  const auto old_dtype = c10::get_default_dtype();
  c10::set_default_dtype(caffe2::TypeMeta::fromScalarType(dtype));
  qwen::models::QwenImageTransformer2DModel model(cfg, device);
  c10::set_default_dtype(old_dtype);
  for (auto& p : model->named_parameters()) {
    if (p.key().find("norm") != std::string::npos)
      p.value().fill_(1.0);
    else
      p.value().normal_(0.0, 0.02);
  }
  model->eval();
  if (device.is_cuda()) torch::cuda::synchronize();
  const double build_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const int64_t h = a.height / 16, w = a.width / 16;
  const int64_t s_img = h * w;
  auto opts = torch::TensorOptions().dtype(dtype).device(device);
  auto gen = qwen::pipelines::make_generator(0);
  auto latents = qwen::pipelines::randn(gen, {1, s_img, 64}, dtype, device);
  auto txt = torch::randn({1, a.txt_len, cfg.joint_attention_dim}, opts);
  auto neg = torch::randn({1, std::max(1, a.txt_len / 4), cfg.joint_attention_dim}, opts);
  qwen::pipelines::FlowMatchEulerScheduler sched(qwen::pipelines::SchedulerConfig::qwen_image());
  sched.set_timesteps(a.warmup + a.steps, qwen::pipelines::calculate_shift(s_img, sched.config()));
  auto ts = torch::tensor(sched.timesteps()).to(device);

  std::printf("config: %lld layers, %lld heads x %lld (%.2f B parameters), %s %s\n",
              (long long)cfg.num_layers, (long long)cfg.num_attention_heads,
              (long long)cfg.attention_head_dim, cfg.parameter_count() / 1e9, device.str().c_str(),
              dtype == torch::kBFloat16 ? "bfloat16" : "float32");
  std::printf("image %dx%d (%lld tokens), text %d tokens%s; built in %.1f s\n", a.width, a.height,
              (long long)s_img, a.txt_len, a.cfg ? " + negative (true CFG)" : "", build_s);

  const std::vector<qwen::models::ImageShape> shapes{{1, h, w}};
  double timed = 0;
  for (int i = 0; i < a.warmup + a.steps; ++i) {
    if (device.is_cuda()) torch::cuda::synchronize();
    auto s0 = std::chrono::steady_clock::now();
    auto t = ts[i].expand({1}).to(dtype) / 1000;
    auto v = model->forward(latents, txt, {}, t, shapes);
    if (a.cfg) {
      auto vn = model->forward(latents, neg, {}, t, shapes);
      v = qwen::pipelines::true_cfg(v, vn, 4.0);
    }
    latents = sched.step(v, latents);
    if (device.is_cuda()) torch::cuda::synchronize();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
    const bool warm = i < a.warmup;
    if (!warm) timed += dt;
    std::printf("step %d%s: %.3f s\n", i + 1, warm ? " (warm-up)" : "", dt);
  }
  const double per_step = timed / a.steps;
  double flops = forward_flops(cfg, s_img, a.txt_len);
  if (a.cfg) flops += forward_flops(cfg, s_img, std::max(1, a.txt_len / 4));
  std::printf("seconds per step: %.3f\n", per_step);
  std::printf("achieved: %.2f TFLOP/s (%.2f TFLOP per step)\n", flops / per_step / 1e12,
              flops / 1e12);
  if (device.is_cuda()) std::printf("device memory in use: %.2f GiB\n", cuda_used_gib());
  std::printf("peak host memory (RSS): %.2f GiB\n", host_peak_gib());
  std::printf("finite output: %s\n", torch::isfinite(latents).all().item<bool>() ? "yes" : "no");
  return 0;
}
