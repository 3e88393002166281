// bench_vae21: the Qwen-Image-2.1 RGBA VAE (AutoencoderKLQwenImage21, the released configuration:
// 96 / 144 base channels, dim_mult [1, 2, 4, 8, 8], 64 latent channels, 16x) with random weights
// (no file): decode (what every 2.1 image ends with) and optionally encode (each edit reference)
// of one image, seconds per call and peak memory.
//
//   bench_vae21 --device cuda --dtype bfloat16 --width 1024 --height 1024 [--encode] [--repeat 3]
//   bench_vae21 --device cpu --width 256 --height 256 --threads 2
//
// Prints one line per operation and a "RESULT ..." line.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "bench_util.h"
#include "models/vae21.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string device = "cuda", dtype;
  int64_t width = 1024, height = 1024, batch = 1;
  int repeat = 3, threads = 0;
  bool encode = false;
};

void usage() {
  std::fprintf(stderr,
               "usage: bench_vae21 [--device cuda|cpu] [--dtype bfloat16|float32] [--width W]\n"
               "         [--height H] [--batch B] [--repeat N] [--encode] [--threads T]\n"
               "  W and H: multiples of 16 (default 1024 x 1024)\n");
}

bool parse(int argc, char** argv, Args& a) {
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--encode") {
      a.encode = true;
      continue;
    }
    if (i + 1 >= argc) return false;
    const std::string v = argv[++i];
    try {
      if (k == "--device")
        a.device = v;
      else if (k == "--dtype")
        a.dtype = v;
      else if (k == "--width")
        a.width = std::stoll(v);
      else if (k == "--height")
        a.height = std::stoll(v);
      else if (k == "--batch")
        a.batch = std::stoll(v);
      else if (k == "--repeat")
        a.repeat = std::stoi(v);
      else if (k == "--threads")
        a.threads = std::stoi(v);
      else
        return false;
    } catch (const std::exception&) {
      std::fprintf(stderr, "bad value '%s' for %s\n", v.c_str(), k.c_str());
      return false;
    }
  }
  if (a.width <= 0 || a.height <= 0 || a.width % 16 || a.height % 16) {
    std::fprintf(stderr, "--width and --height must be positive multiples of 16\n");
    return false;
  }
  return a.repeat > 0 && a.batch > 0 &&
         (a.dtype.empty() || a.dtype == "bfloat16" || a.dtype == "float32");
}

void sync(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize();
}

struct Timing {
  double min_s = 0, median_s = 0;
  std::optional<qwen::bench::DevicePeak> peak;
};

template <typename F>
Timing time_it(const torch::Device& device, int repeat, F&& f) {
  f();  // warm-up (cuDNN algorithm choice, allocator growth)
  sync(device);
  qwen::bench::reset_device_peak(device);
  std::vector<double> s;
  for (int i = 0; i < repeat; ++i) {
    const auto t0 = Clock::now();
    f();
    sync(device);
    s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(s.begin(), s.end());
  return Timing{s.front(), s[s.size() / 2], qwen::bench::device_peak(device)};
}

std::string peak_str(const Timing& t) {
  if (!t.peak) return "n/a";
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.2f GiB allocated, %.2f GiB reserved", t.peak->allocated_gib,
                t.peak->reserved_gib);
  return buf;
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
  torch::NoGradGuard ng;
  qwen::models::Vae21Config cfg;  // the released configuration (diffusers defaults)
  cfg.latents_mean.assign(64, 0.0);
  cfg.latents_std.assign(64, 1.0);
  qwen::models::AutoencoderKLQwenImage21 vae(cfg);
  {
    torch::manual_seed(0);
    for (auto& item : vae->named_parameters()) {
      torch::Tensor& p = item.value();
      const bool gamma = item.key().find("gamma") != std::string::npos;
      if (gamma)
        p.fill_(1.0);
      else if (p.dim() >= 2)
        p.normal_(0.0, 1.0 / std::sqrt(double(p[0].numel())));
      else
        p.zero_();
    }
  }
  vae->to(target->device, target->dtype);
  vae->eval();
  vae->prepare_for_inference();
  int64_t params = 0;
  for (const auto& p : vae->parameters()) params += p.numel();
  std::printf(
      "bench_vae21: AutoencoderKLQwenImage21 (released configuration, %.1f M parameters, "
      "random weights) on %s, %s, %lld x %lld x %lld, %d repeats\n",
      params / 1e6, target->device.str().c_str(), target->dtype_name(),
      static_cast<long long>(a.batch), static_cast<long long>(a.width),
      static_cast<long long>(a.height), a.repeat);
  const auto opts = torch::TensorOptions().device(target->device).dtype(target->dtype);
  const int64_t h = a.height / 16, w = a.width / 16;
  const torch::Tensor z = torch::randn({a.batch, 64, 1, h, w}, opts);
  const Timing dec = time_it(target->device, a.repeat, [&] { (void)vae->decode(z); });
  std::printf("decode %lldx%lld: %.3f s (min %.3f s), peak device memory %s\n",
              static_cast<long long>(a.width), static_cast<long long>(a.height), dec.median_s,
              dec.min_s, peak_str(dec).c_str());
  Timing enc;
  if (a.encode) {
    const torch::Tensor x = torch::rand({a.batch, 4, 1, a.height, a.width}, opts) * 2 - 1;
    enc = time_it(target->device, a.repeat, [&] { (void)vae->encode(x); });
    std::printf("encode %lldx%lld: %.3f s (min %.3f s), peak device memory %s\n",
                static_cast<long long>(a.width), static_cast<long long>(a.height), enc.median_s,
                enc.min_s, peak_str(enc).c_str());
  }
  std::printf("host peak RSS %.2f GiB\n", qwen::bench::host_peak_gib());
  std::printf(
      "RESULT bench_vae21 device=%s dtype=%s width=%lld height=%lld batch=%lld decode_s=%.4f "
      "decode_peak_alloc_gib=%.3f encode_s=%.4f encode_peak_alloc_gib=%.3f\n",
      target->device.str().c_str(), target->dtype_name(), static_cast<long long>(a.width),
      static_cast<long long>(a.height), static_cast<long long>(a.batch), dec.median_s,
      dec.peak ? dec.peak->allocated_gib : -1.0, a.encode ? enc.median_s : -1.0,
      a.encode && enc.peak ? enc.peak->allocated_gib : -1.0);
  return 0;
}
