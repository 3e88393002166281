// When fp8 weights are multiplied on fp8 tensor cores (issues #13/#15): the run-time mode
// `fp8_matmul` (EngineOptions::fp8_matmul, --fp8-matmul, daemon.conf), the decision it gives on a
// device, and the walker that sets it on a model's Linear layers (models/linear.h
// LinearImpl::set_fp8_matmul; the product itself is models/quant.h fp8_linear).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace qwen::models {

enum class Fp8MatmulMode { Auto, On, Off };

// "auto" (also ""), "on" or "off"; anything else throws std::invalid_argument naming the value
// and the choices.
Fp8MatmulMode parse_fp8_matmul_mode(const std::string& value);
const char* to_string(Fp8MatmulMode mode);

// The compute capability of a CUDA device as major * 10 + minor (8.9 = 89, 9.0 = 90); nullopt for
// another device or when it cannot be asked (a libtorch without CUDA).
std::optional<int> cuda_compute_capability(const torch::Device& device);

// Auto turns fp8 matmuls on only on a CUDA device of compute capability >= 8.9 (Ada, Hopper,
// Blackwell: the first with fp8 tensor cores; ComfyUI's model_management.supports_fp8_compute
// draws the same line); On forces them (on the CPU too: at::_scaled_mm has a CPU kernel, the
// tests use it); Off never.
struct Fp8MatmulDecision {
  bool on = false;
  std::string reason;  // e.g. "asked for", "auto: cuda:0 has compute capability 9.0 >= 8.9"
};
Fp8MatmulDecision decide_fp8_matmul(Fp8MatmulMode mode, const torch::Device& device);

// Sets LinearImpl::set_fp8_matmul(on) on every Linear of `module`. Returns how many of them hold
// a weight fp8_linear can take (fp8 e4m3, sides multiples of 16): those that change.
int64_t set_fp8_matmul(torch::nn::Module& module, bool on);

// What an engine does with its mode after loading: decides for `device`, sets the flag on every
// named module (set_fp8_matmul) and describes the outcome in one line for the engine's log, e.g.
// "fp8 matmul: on (auto: cuda:0 has compute capability 9.0 >= 8.9): 846 fp8 e4m3 layers
// (transformer 846) multiply on fp8 tensor cores (at::_scaled_mm)".
struct Fp8MatmulApplied {
  bool on = false;
  int64_t layers = 0;  // layers whose weight fp8_linear can take (on or off)
  std::string line;
};
Fp8MatmulApplied apply_fp8_matmul(
    Fp8MatmulMode mode, const torch::Device& device,
    const std::vector<std::pair<std::string, torch::nn::Module*>>& modules);

}  // namespace qwen::models
