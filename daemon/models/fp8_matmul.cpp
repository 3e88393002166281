#include "models/fp8_matmul.h"

#include <cstdio>
#include <stdexcept>

#include "models/linear.h"
#include "models/quant.h"

// QWEN_WITH_C10_CUDA: set by daemon/models/CMakeLists.txt when libtorch comes with c10_cuda (a
// CUDA build), as for device_memory.cpp; a CPU-only libtorch compiles the fallback.
#if defined(QWEN_WITH_C10_CUDA) && __has_include(<c10/cuda/CUDAFunctions.h>) && \
    __has_include(<cuda_runtime_api.h>)
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>
#define QWEN_FP8_MATMUL_CUDA 1
#endif

namespace qwen::models {

Fp8MatmulMode parse_fp8_matmul_mode(const std::string& value) {
  if (value.empty() || value == "auto") return Fp8MatmulMode::Auto;
  if (value == "on") return Fp8MatmulMode::On;
  if (value == "off") return Fp8MatmulMode::Off;
  throw std::invalid_argument("fp8_matmul '" + value + "' is not one of auto, on, off");
}

const char* to_string(Fp8MatmulMode mode) {
  switch (mode) {
    case Fp8MatmulMode::Auto:
      return "auto";
    case Fp8MatmulMode::On:
      return "on";
    case Fp8MatmulMode::Off:
      return "off";
  }
  return "?";
}

std::optional<int> cuda_compute_capability(const torch::Device& device) {
  if (!device.is_cuda()) return std::nullopt;
#ifdef QWEN_FP8_MATMUL_CUDA
  const int index = device.has_index() ? device.index() : c10::cuda::current_device();
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, index) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, index) != cudaSuccess) {
    (void)cudaGetLastError();
    return std::nullopt;
  }
  return major * 10 + minor;
#else
  return std::nullopt;
#endif
}

Fp8MatmulDecision decide_fp8_matmul(Fp8MatmulMode mode, const torch::Device& device) {
  switch (mode) {
    case Fp8MatmulMode::On:
      return {true, "asked for"};
    case Fp8MatmulMode::Off:
      return {false, "asked for"};
    case Fp8MatmulMode::Auto:
      break;
  }
  if (!device.is_cuda())
    return {false, "auto: the device is " + device.str() +
                       " (fp8 tensor cores need a CUDA device of compute capability >= 8.9)"};
  const auto cc = cuda_compute_capability(device);
  if (!cc) return {false, "auto: the compute capability of " + device.str() + " is unknown"};
  char buf[16];
  std::snprintf(buf, sizeof buf, "%d.%d", *cc / 10, *cc % 10);
  if (*cc >= 89)
    return {true, "auto: " + device.str() + " has compute capability " + buf + " >= 8.9"};
  return {false, "auto: " + device.str() + " has compute capability " + buf +
                     " (fp8 tensor cores need >= 8.9)"};
}

int64_t set_fp8_matmul(torch::nn::Module& module, bool on) {
  int64_t n = 0;
  for (const auto& m : module.modules(/*include_self=*/true)) {
    auto* l = dynamic_cast<LinearImpl*>(m.get());
    if (!l) continue;
    l->set_fp8_matmul(on);
    const QuantizedWeight* q = l->quantized();
    if (!q || q->kind() != QuantizedWeight::Kind::Fp8 ||
        q->storage().scalar_type() != torch::kFloat8_e4m3fn || q->shape().size() != 2)
      continue;
    if (q->shape()[0] % 16 == 0 && q->shape()[1] % 16 == 0) ++n;
  }
  return n;
}

Fp8MatmulApplied apply_fp8_matmul(
    Fp8MatmulMode mode, const torch::Device& device,
    const std::vector<std::pair<std::string, torch::nn::Module*>>& modules) {
  const Fp8MatmulDecision d = decide_fp8_matmul(mode, device);
  Fp8MatmulApplied r;
  r.on = d.on;
  std::string per_module;
  for (const auto& [name, m] : modules) {
    if (!m) continue;
    const int64_t n = set_fp8_matmul(*m, d.on);
    r.layers += n;
    if (n > 0) per_module += (per_module.empty() ? "" : ", ") + name + " " + std::to_string(n);
  }
  r.line = std::string("fp8 matmul: ") + (d.on ? "on" : "off") + " (" + d.reason + ")";
  if (!d.on) {
    if (r.layers > 0)
      r.line += ": " + std::to_string(r.layers) +
                " fp8 e4m3 layers are dequantised per call and multiplied in the compute dtype";
  } else if (r.layers > 0) {
    r.line += ": " + std::to_string(r.layers) + " fp8 e4m3 layers (" + per_module +
              ") multiply on fp8 tensor cores (at::_scaled_mm)";
  } else {
    r.line += ", but no layer holds an fp8 e4m3 weight: nothing changes";
  }
  return r;
}

}  // namespace qwen::models
