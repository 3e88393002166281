#include "models/attention.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <torch/cuda.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>

namespace qwen::models {

torch::Tensor padding_mask_or_none(const torch::Tensor& mask) {
  if (!mask.defined()) return {};
  if (mask.numel() == 0 || mask.to(torch::kBool).all().item<bool>()) return {};
  return mask;
}

namespace {

struct Name {
  SdpaBackend backend;
  const char* name;
};
constexpr std::array<Name, 5> kNames{{{SdpaBackend::Auto, "auto"},
                                      {SdpaBackend::CuDNN, "cudnn"},
                                      {SdpaBackend::Flash, "flash"},
                                      {SdpaBackend::Efficient, "efficient"},
                                      {SdpaBackend::Math, "math"}}};

at::SDPBackend to_at(SdpaBackend b) {
  switch (b) {
    case SdpaBackend::CuDNN:
      return at::SDPBackend::cudnn_attention;
    case SdpaBackend::Flash:
      return at::SDPBackend::flash_attention;
    case SdpaBackend::Efficient:
      return at::SDPBackend::efficient_attention;
    case SdpaBackend::Math:
    case SdpaBackend::Auto:
      break;
  }
  return at::SDPBackend::math;
}

// The global SDPA switches this file changes, saved and restored as a whole.
struct SdpaFlags {
  bool flash, efficient, math, cudnn;
  std::array<at::SDPBackend, at::num_sdp_backends> order;

  static SdpaFlags current() {
    auto& c = at::globalContext();
    return {c.userEnabledFlashSDP(), c.userEnabledMemEfficientSDP(), c.userEnabledMathSDP(),
            c.userEnabledCuDNNSDP(), c.sDPPriorityOrder()};
  }
  void apply() const {
    auto& c = at::globalContext();
    c.setSDPUseFlash(flash);
    c.setSDPUseMemEfficient(efficient);
    c.setSDPUseMath(math);
    c.setSDPUseCuDNN(cudnn);
    std::vector<int64_t> o;
    for (auto b : order) o.push_back(static_cast<int64_t>(b));
    c.setSDPPriorityOrder(o);
  }
};

// Enables exactly one of the four backends.
void enable_only(SdpaBackend b) {
  auto& c = at::globalContext();
  c.setSDPUseFlash(b == SdpaBackend::Flash);
  c.setSDPUseMemEfficient(b == SdpaBackend::Efficient);
  c.setSDPUseMath(b == SdpaBackend::Math);
  c.setSDPUseCuDNN(b == SdpaBackend::CuDNN);
}

// Every backend enabled, `first` first, the others in their current relative order.
void make_first(SdpaBackend first) {
  SdpaFlags f = SdpaFlags::current();
  f.flash = f.efficient = f.math = f.cudnn = true;
  const at::SDPBackend want = to_at(first);
  std::array<at::SDPBackend, at::num_sdp_backends> order{};
  size_t n = 0;
  order[n++] = want;
  for (auto b : f.order)
    if (b != want && n < order.size()) order[n++] = b;
  f.order = order;
  f.apply();
}

void sync(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

std::string first_line(const std::string& s) {
  const auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

}  // namespace

SdpaBackend parse_sdpa_backend(const std::string& name) {
  for (const auto& n : kNames)
    if (name == n.name) return n.backend;
  throw std::invalid_argument("unknown SDPA backend '" + name +
                              "' (expected auto, cudnn, flash, efficient or math)");
}

const char* to_string(SdpaBackend backend) {
  for (const auto& n : kNames)
    if (n.backend == backend) return n.name;
  return "?";
}

std::vector<SdpaCandidate> sdpa_self_check(const torch::Device& device, const SdpaProbe& p,
                                           const std::vector<SdpaBackend>& candidates) {
  torch::NoGradGuard no_grad;
  // Inputs drawn on the CPU from a private generator: the process's default generators (which
  // seed nothing in the pipelines, but still) are left alone.
  auto gen = at::detail::createCPUGenerator(1234);
  auto draw = [&] {
    return torch::randn({p.batch, p.seq, p.heads, p.head_dim}, gen, torch::kFloat32)
        .to(device, p.dtype)
        .transpose(1, 2);
  };
  const auto q = draw(), k = draw(), v = draw();
  const SdpaFlags saved = SdpaFlags::current();
  std::vector<SdpaCandidate> out;
  try {
    // Reference: float32 math on the first (at most 2) heads.
    const int64_t rh = std::min<int64_t>(2, p.heads);
    enable_only(SdpaBackend::Math);
    auto head = [&](const torch::Tensor& t) { return t.narrow(1, 0, rh).to(torch::kFloat32); };
    const auto ref = at::scaled_dot_product_attention(head(q), head(k), head(v));
    const double ref_max = std::max(1.0, ref.abs().max().item<double>());
    for (SdpaBackend b : candidates) {
      SdpaCandidate c;
      c.backend = b;
      enable_only(b);
      try {
        auto o = at::scaled_dot_product_attention(q, k, v);  // warm-up (plans, workspaces)
        sync(device);
        c.available = true;
        c.max_abs_err = (o.narrow(1, 0, rh).to(torch::kFloat32) - ref).abs().max().item<double>();
        c.agrees = c.max_abs_err <= p.tolerance * ref_max;
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < p.iterations; ++i) o = at::scaled_dot_product_attention(q, k, v);
        sync(device);
        c.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                   .count() /
               std::max(1, p.iterations);
      } catch (const c10::Error& e) {
        c.available = false;
        c.error = first_line(e.what_without_backtrace());
      }
      out.push_back(c);
    }
  } catch (...) {
    saved.apply();
    throw;
  }
  saved.apply();
  return out;
}

SdpaChoice configure_sdpa(const std::string& requested, const torch::Device& device,
                          const SdpaProbe& probe) {
  std::string name = requested;
  if (name.empty()) {
    const char* env = std::getenv("QWEN_SDPA_BACKEND");
    name = env && *env ? env : "auto";
  }
  const SdpaBackend want = parse_sdpa_backend(name);
  if (!device.is_cuda()) {
    SdpaChoice c;
    c.reason = "torch's CPU kernels, unchanged";
    return c;
  }
  static std::mutex mu;
  static std::map<std::string, SdpaChoice> done;
  std::lock_guard<std::mutex> lock(mu);
  const std::string key = device.str() + "/" + name;
  if (auto it = done.find(key); it != done.end()) return it->second;

  SdpaChoice choice;
  if (want != SdpaBackend::Auto) {
    choice.backend = want;
    choice.reason = "requested";
  } else {
    choice.candidates = sdpa_self_check(
        device, probe, {SdpaBackend::CuDNN, SdpaBackend::Flash, SdpaBackend::Efficient});
    const SdpaCandidate* best = nullptr;
    for (const auto& c : choice.candidates)
      if (c.available && c.agrees && (!best || c.ms < best->ms)) best = &c;
    if (best) {
      choice.backend = best->backend;
      choice.reason = "fastest exact backend of the self-check";
    } else {
      choice.reason = "no fused backend passed the self-check: torch's default order";
    }
  }
  if (choice.backend) make_first(*choice.backend);
  done[key] = choice;
  return choice;
}

std::string describe(const SdpaChoice& choice) {
  std::string s = choice.backend ? to_string(*choice.backend) : "default";
  s += " (" + choice.reason;
  for (size_t i = 0; i < choice.candidates.size(); ++i) {
    const auto& c = choice.candidates[i];
    s += i == 0 ? ": " : ", ";
    s += to_string(c.backend);
    char buf[96];
    if (!c.available)
      std::snprintf(buf, sizeof buf, " unavailable");
    else if (!c.agrees)
      std::snprintf(buf, sizeof buf, " %.3f ms, disagrees (max err %.3g)", c.ms, c.max_abs_err);
    else
      std::snprintf(buf, sizeof buf, " %.3f ms", c.ms);
    s += buf;
  }
  return s + ")";
}

}  // namespace qwen::models
