// bench_attention: times each scaled-dot-product-attention backend of libtorch (flash,
// memory-efficient, cuDNN, math) on the MMDiT's joint attention shapes: one sample, 24 heads x 128,
// sequence = image tokens + text tokens:
//   t2i-1024  1024x1024 text to image   64x64 latent patches = 4096 + 128 text   = 4224
//   t2i-1328  1328x1328 text to image   83x83                = 6889 + 128 text   = 7017
//   edit-1024 1024x1024 edit            4096 target + 4096 condition + 256 text  = 8448
// Each backend is enabled alone (at::globalContext().setSDPUse*), so a backend that cannot take
// the inputs reports "n/a" instead of silently falling back. Every output is checked against the
// math backend in float32 on the same inputs (relative error ||o - ref|| / ||ref||). With
// --with-mask each backend is timed again with an all-true boolean key mask [1, 1, 1, S] (what
// the transformer passes when it passes a mask), to show what a mask costs.
//
//   bench_attention --device cuda --dtype bfloat16                 (the real shapes)
//   bench_attention --device cpu --dtype float32 --heads 4 --seq small:256,mid:512 --iters 3
//
// Prints one table and one "RESULT ..." line per run; exit code 1 when a backend's output is off
// (relative error above 2e-2 in bfloat16, 1e-4 in float32), when the math backend fails, or when
// no backend ran.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string device = "cuda";
  std::string dtype = "bfloat16";
  int64_t heads = 24, head_dim = 128;
  std::string seq = "t2i-1024:4224,t2i-1328:7017,edit-1024:8448";
  std::string backends = "flash,efficient,cudnn,math";
  int iters = 20, warmup = 3;
  bool with_mask = false;
  int threads = 0;
};

void usage() {
  std::fprintf(stderr,
               "usage: bench_attention [--device cuda|cpu] [--dtype bfloat16|float32]\n"
               "         [--heads H] [--head-dim D] [--seq name:S,name:S,...]\n"
               "         [--backends flash,efficient,cudnn,math] [--iters N] [--warmup N]\n"
               "         [--with-mask] [--threads T]\n");
}

bool parse(int argc, char** argv, Args& a) {
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--with-mask") {
      a.with_mask = true;
      continue;
    }
    if (i + 1 >= argc) return false;
    const std::string v = argv[++i];
    if (k == "--device")
      a.device = v;
    else if (k == "--dtype")
      a.dtype = v;
    else if (k == "--heads")
      a.heads = std::atoll(v.c_str());
    else if (k == "--head-dim")
      a.head_dim = std::atoll(v.c_str());
    else if (k == "--seq")
      a.seq = v;
    else if (k == "--backends")
      a.backends = v;
    else if (k == "--iters")
      a.iters = std::atoi(v.c_str());
    else if (k == "--warmup")
      a.warmup = std::atoi(v.c_str());
    else if (k == "--threads")
      a.threads = std::atoi(v.c_str());
    else
      return false;
  }
  return (a.dtype == "bfloat16" || a.dtype == "float32") && a.heads > 0 && a.head_dim > 0 &&
         a.iters > 0 && a.warmup >= 0;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);)
    if (!item.empty()) out.push_back(item);
  return out;
}

// Enables exactly one SDPA backend; restores the previous switches when destroyed.
class OnlyBackend {
 public:
  explicit OnlyBackend(const std::string& name) {
    auto& c = at::globalContext();
    saved_ = {c.userEnabledFlashSDP(), c.userEnabledMemEfficientSDP(), c.userEnabledCuDNNSDP(),
              c.userEnabledMathSDP()};
    c.setSDPUseFlash(name == "flash");
    c.setSDPUseMemEfficient(name == "efficient");
    c.setSDPUseCuDNN(name == "cudnn");
    c.setSDPUseMath(name == "math");
  }
  ~OnlyBackend() {
    auto& c = at::globalContext();
    c.setSDPUseFlash(saved_[0]);
    c.setSDPUseMemEfficient(saved_[1]);
    c.setSDPUseCuDNN(saved_[2]);
    c.setSDPUseMath(saved_[3]);
  }
  OnlyBackend(const OnlyBackend&) = delete;
  OnlyBackend& operator=(const OnlyBackend&) = delete;

 private:
  std::vector<bool> saved_;
};

void sync(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize();
}

std::string first_line(const std::string& s) {
  auto l = s.substr(0, s.find('\n'));
  if (l.size() > 110) l = l.substr(0, 110) + "...";
  return l;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!parse(argc, argv, a)) {
    usage();
    return 2;
  }
  torch::set_num_threads(a.threads > 0 ? a.threads : torch::get_num_threads());
  const torch::Device device(a.device);
  if (device.is_cuda() && !torch::cuda::is_available()) {
    std::fprintf(stderr, "bench_attention: --device %s but CUDA is not available\n",
                 a.device.c_str());
    return 1;
  }
  // The float32 reference must be IEEE float32.
  at::globalContext().setAllowTF32CuBLAS(false);
  at::globalContext().setFloat32MatmulPrecision("highest");
  const torch::Dtype dtype = a.dtype == "bfloat16" ? torch::kBFloat16 : torch::kFloat32;
  const double tol = dtype == torch::kBFloat16 ? 2e-2 : 1e-4;
  torch::InferenceMode guard;
  torch::manual_seed(0);

  std::printf(
      "SDPA backends on %s %s, %lld heads x %lld, %d iterations (median) after %d warm-up\n",
      a.device.c_str(), a.dtype.c_str(), (long long)a.heads, (long long)a.head_dim, a.iters,
      a.warmup);
  std::printf("%-10s %6s %-10s %-4s %10s %9s %10s %9s  %s\n", "case", "seq", "backend", "mask",
              "ms", "TFLOP/s", "rel_err", "peak_MiB", "note");
  bool ok = true, any = false;
  for (const auto& spec : split(a.seq, ',')) {
    const auto colon = spec.find(':');
    const std::string name = colon == std::string::npos ? spec : spec.substr(0, colon);
    const int64_t s =
        std::atoll(colon == std::string::npos ? spec.c_str() : spec.c_str() + colon + 1);
    if (s <= 0) {
      std::fprintf(stderr, "bench_attention: bad --seq entry '%s' (name:length)\n", spec.c_str());
      return 2;
    }
    auto opts = torch::TensorOptions().dtype(dtype).device(device);
    // Fresh random inputs per case, scaled like normed q/k (never zeros).
    auto q = torch::randn({1, a.heads, s, a.head_dim}, opts);
    auto k = torch::randn({1, a.heads, s, a.head_dim}, opts);
    auto v = torch::randn({1, a.heads, s, a.head_dim}, opts);
    torch::Tensor ref;
    {
      OnlyBackend only("math");
      ref = at::scaled_dot_product_attention(q.to(torch::kFloat32), k.to(torch::kFloat32),
                                             v.to(torch::kFloat32));
    }
    auto key_mask =
        torch::ones({1, 1, 1, s}, torch::TensorOptions().dtype(torch::kBool).device(device));
    const double flops = 4.0 * double(a.heads) * double(s) * double(s) * double(a.head_dim);
    for (bool masked : {false, true}) {
      if (masked && !a.with_mask) continue;
      for (const auto& backend : split(a.backends, ',')) {
        double ms = -1, err = -1, peak_mib = -1;
        std::string note;
        try {
          OnlyBackend only(backend);
          std::optional<torch::Tensor> mask;
          if (masked) mask = key_mask;
          torch::Tensor o;
          for (int i = 0; i < a.warmup; ++i) o = at::scaled_dot_product_attention(q, k, v, mask);
          sync(device);
          qwen::bench::reset_device_peak(device);
          std::vector<double> times;
          for (int i = 0; i < a.iters; ++i) {
            const auto t0 = Clock::now();
            o = at::scaled_dot_product_attention(q, k, v, mask);
            sync(device);
            times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
          }
          std::sort(times.begin(), times.end());
          ms = times[times.size() / 2] * 1e3;
          if (auto p = qwen::bench::device_peak(device)) peak_mib = p->allocated_gib * 1024.0;
          err = ((o.to(torch::kFloat32) - ref).norm() / ref.norm()).item<double>();
          any = true;
          if (!(err <= tol)) {
            note = "OUTPUT OFF";
            ok = false;
          }
        } catch (const c10::Error& e) {
          note = "n/a: " + first_line(e.what_without_backtrace());
          if (backend == "math") ok = false;
        }
        const double tflops = ms > 0 ? flops / (ms * 1e-3) / 1e12 : -1;
        std::printf("%-10s %6lld %-10s %-4s %10.3f %9.1f %10.2e %9.0f  %s\n", name.c_str(),
                    (long long)s, backend.c_str(), masked ? "yes" : "no", ms, tflops, err, peak_mib,
                    note.c_str());
        std::printf(
            "RESULT case=%s seq=%lld backend=%s mask=%s ms=%.4f tflops=%.1f rel_err=%.3g "
            "peak_mib=%.0f ok=%s\n",
            name.c_str(), (long long)s, backend.c_str(), masked ? "yes" : "no", ms, tflops, err,
            peak_mib, note.empty() ? "yes" : (ms < 0 ? "n/a" : "no"));
        std::fflush(stdout);
      }
    }
  }
  if (!any) std::fprintf(stderr, "bench_attention: no backend ran\n");
  return ok && any ? 0 : 1;
}
