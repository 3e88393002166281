// Helpers of the torch benchmarks (dit_bench.cpp: bench_transformer, bench_edit; bench_attention,
// bench_fixtures).
#pragma once

#include <ATen/DeviceAccelerator.h>
#include <dlfcn.h>
#include <sys/resource.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>

#include "models/fp8_matmul.h"
#include "models/linear.h"
#include "models/quant.h"
#include "models/transformer.h"

namespace qwen::bench {

// True peak device memory from the CUDA caching allocator's statistics (what
// torch.cuda.max_memory_allocated / max_memory_reserved report): `allocated` is the peak of bytes
// held by live tensors, `reserved` the peak of what the allocator took from the driver (the
// footprint other processes see, less the CUDA context). Through at::accelerator (libtorch >= 2.9)
// so that no CUDA header is needed; every call is behind torch::cuda::is_available(), so a CPU
// build or a machine without a GPU gets std::nullopt.
struct DevicePeak {
  double allocated_gib = 0;
  double reserved_gib = 0;
};

inline bool cuda_device(const torch::Device& d) {
  return d.is_cuda() && torch::cuda::is_available();
}

// Initializes CUDA (and with it the caching allocator, whose statistics calls assert an
// initialized device) the way the first CUDA tensor would, then names the device.
inline c10::DeviceIndex device_index(const torch::Device& d) {
  at::globalContext().lazyInitDevice(c10::DeviceType::CUDA);
  return d.has_index() ? d.index() : at::accelerator::getDeviceIndex();
}

// Starts a new peak: call right before the region to measure.
inline void reset_device_peak(const torch::Device& d) {
  if (!cuda_device(d)) return;
  at::accelerator::resetPeakStats(device_index(d));
}

inline std::optional<DevicePeak> device_peak(const torch::Device& d) {
  if (!cuda_device(d)) return std::nullopt;
  const auto stats = at::accelerator::getDeviceStats(device_index(d));
  constexpr auto kAll = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
  constexpr double kGiB = double(1u << 30);
  return DevicePeak{double(stats.allocated_bytes[kAll].peak) / kGiB,
                    double(stats.reserved_bytes[kAll].peak) / kGiB};
}

// Device memory in use by this process as the driver sees it (caching allocator included).
// Looked up at run time so that the bench needs no CUDA headers.
inline double cuda_used_gib() {
  using Fn = int (*)(size_t*, size_t*);
  static Fn fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "cudaMemGetInfo"));
  if (!fn) {
    for (const char* lib : {"libcudart.so.13", "libcudart.so.12", "libcudart.so"}) {
      if (void* h = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD)) {
        fn = reinterpret_cast<Fn>(dlsym(h, "cudaMemGetInfo"));
        if (fn) break;
      }
    }
  }
  size_t free_b = 0, total_b = 0;
  if (!fn || fn(&free_b, &total_b) != 0) return -1;
  return double(total_b - free_b) / (1u << 30);
}

inline double host_peak_gib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) * 1024.0 / (1u << 30);
}

// Multiply-adds x2 of one transformer call: per block 24 S D^2 (QKV, out proj, 4x MLP) +
// 4 S^2 D (QK^T and AV), plus img_in / txt_in / proj_out / modulation.
inline double forward_flops(const qwen::models::TransformerConfig& c, int64_t s_img,
                            int64_t s_txt) {
  const double d = double(c.inner_dim());
  const double s = double(s_img + s_txt);
  double block = 24.0 * s * d * d + 4.0 * s * s * d + 2.0 * 2.0 * 6.0 * d * d;
  double top = 2.0 * s_img * c.in_channels * d + 2.0 * s_txt * c.joint_attention_dim * d +
               2.0 * s_img * d * c.patch_size * c.patch_size * c.out_channels;
  return top + c.num_layers * block;
}

// The --device / --dtype / --threads of the transformer benches (bench_transformer, bench_edit,
// bench_formats, bench_lora): torch's CPU threads (0 = every hardware thread), the device, and the
// compute dtype (empty = bfloat16 on CUDA, float32 on the CPU). nullopt, with a message, when CUDA
// is asked for and not available.
struct BenchTarget {
  torch::Device device;
  torch::Dtype dtype;
  const char* dtype_name() const { return dtype == torch::kBFloat16 ? "bfloat16" : "float32"; }
};

inline std::optional<BenchTarget> bench_target(const std::string& device_name,
                                               const std::string& dtype_name, int threads) {
  torch::set_num_threads(threads > 0 ? threads
                                     : static_cast<int>(std::thread::hardware_concurrency()));
  const torch::Device device(device_name);
  if (device.is_cuda() && !torch::cuda::is_available()) {
    std::fprintf(stderr, "CUDA is not available\n");
    return std::nullopt;
  }
  const torch::Dtype dtype = dtype_name.empty()
                                 ? (device.is_cuda() ? torch::kBFloat16 : torch::kFloat32)
                             : dtype_name == "bfloat16" ? torch::kBFloat16
                                                        : torch::kFloat32;
  return BenchTarget{device, dtype};
}

// A transformer of `cfg` with random weights, built block by block on `device` in `dtype` (the
// parameters are created uninitialized in that dtype, then filled there): norms 1, every other
// weight N(0, 0.02). In eval mode. The benches' stand-in for the real checkpoint.
inline qwen::models::QwenImageTransformer2DModel random_transformer(
    const qwen::models::TransformerConfig& cfg, const torch::Device& device, torch::Dtype dtype) {
  torch::NoGradGuard ng;
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
  return model;
}

// `--weights fp8`: every Linear weight of `module` quantised to float8 e4m3fn with a per-tensor
// scale amax / 448 (the layout of ComfyUI's scaled fp8 files and of quantise-on-load) and kept
// quantised on its device (LinearImpl::set_quantized), layer by layer so that only one float32
// copy of a weight exists at a time. Returns the number of layers quantised.
inline int64_t quantize_linears_fp8(torch::nn::Module& module) {
  torch::NoGradGuard ng;
  int64_t n = 0;
  for (const auto& m : module.modules(/*include_self=*/true)) {
    auto* l = dynamic_cast<qwen::models::LinearImpl*>(m.get());
    if (!l || l->quantized() || l->weight.dim() != 2) continue;
    const auto w = l->weight.to(torch::kFloat32);
    const auto scale = (w.abs().max() / 448.0).clamp_min(1e-12).reshape({});
    l->set_quantized(
        qwen::models::QuantizedWeight::fp8((w / scale).to(torch::kFloat8_e4m3fn), scale));
    ++n;
  }
  return n;
}

// `--weights dense|fp8` (dense: the compute dtype) and `--fp8-matmul auto|on|off`: whether the
// values are known.
inline bool valid_weights_arg(const std::string& w) { return w == "dense" || w == "fp8"; }
inline bool valid_fp8_matmul_arg(const std::string& m) {
  return m == "auto" || m == "on" || m == "off";
}

// Applies --fp8-matmul to `module` as the engines do (models/fp8_matmul.h) and prints their line.
inline bool apply_fp8_matmul(const std::string& mode, const torch::Device& device,
                             torch::nn::Module& module) {
  const auto applied = qwen::models::apply_fp8_matmul(qwen::models::parse_fp8_matmul_mode(mode),
                                                      device, {{"transformer", &module}});
  std::printf("%s\n", applied.line.c_str());
  return applied.on && applied.layers > 0;
}

}  // namespace qwen::bench
