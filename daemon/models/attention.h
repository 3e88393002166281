// Attention helpers shared by the models: the key-padding mask rule (no mask where no token is
// padded) and the choice of torch's scaled_dot_product_attention (SDPA) backend on CUDA.
//
// An all-true mask changes no number but keeps SDPA off the flash kernels (they take no mask),
// so callers drop it once per job with padding_mask_or_none(). The backend is process-wide state
// of libtorch (at::globalContext()): configure_sdpa() puts the chosen backend first in SDPA's
// priority order and leaves every backend enabled, so a call the chosen kernel cannot take
// (e.g. the VAE's single 384-wide head on cuDNN) falls back to the next one. The CPU is never
// touched: its kernels and arithmetic stay exactly torch's defaults.
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

namespace qwen::models {

// `mask`: [B, S] key-padding mask (1/true = valid), or undefined. Returns undefined when `mask` is
// undefined or every token is valid, else `mask` itself. One host synchronisation when defined:
// call it once per job, not per layer.
torch::Tensor padding_mask_or_none(const torch::Tensor& mask);

enum class SdpaBackend { Auto, CuDNN, Flash, Efficient, Math };
// "auto", "cudnn", "flash", "efficient", "math". Throws std::invalid_argument naming the value and
// the accepted names.
SdpaBackend parse_sdpa_backend(const std::string& name);
const char* to_string(SdpaBackend backend);

// The shapes the self-check times: the 20B transformer's joint attention at 1024x1024 (24 heads
// of 128, 4096 image + 150 text tokens), laid out as the model lays them out ([B, S, H, D]
// transposed to [B, H, S, D]).
struct SdpaProbe {
  int64_t batch = 1;
  int64_t heads = 24;
  int64_t seq = 4246;
  int64_t head_dim = 128;
  torch::Dtype dtype = torch::kBFloat16;
  int iterations = 5;       // timed calls after one warm-up call
  double tolerance = 2e-2;  // max |out - ref| / max(1, max |ref|) against float32 math
};

struct SdpaCandidate {
  SdpaBackend backend = SdpaBackend::Math;
  bool available = false;  // the backend ran on the probe
  bool agrees = false;     // within the probe's tolerance of the float32 math reference
  double max_abs_err = 0;
  double ms = 0;      // per call
  std::string error;  // why it could not run
};

// Runs every backend of `candidates` alone (the others disabled) on random probe inputs on
// `device`: availability, agreement with float32 math on the first heads, time per call. Restores
// the SDPA flags and priority order it found, also when a candidate throws.
std::vector<SdpaCandidate> sdpa_self_check(const torch::Device& device, const SdpaProbe& probe,
                                           const std::vector<SdpaBackend>& candidates);

struct SdpaChoice {
  std::optional<SdpaBackend> backend;     // first in the priority order; nullopt = torch's default
  std::string reason;                     // one line for the log
  std::vector<SdpaCandidate> candidates;  // the self-check, when one ran
};

// Configures SDPA for `device`. `requested`: a parse_sdpa_backend() name, or empty for
// $QWEN_SDPA_BACKEND, else "auto". Auto runs sdpa_self_check() on cudnn, flash and efficient and
// takes the fastest that agrees; a named backend is taken as is. The choice goes first in SDPA's
// priority order (all backends stay enabled). On the CPU nothing is changed (backend nullopt).
// Process-wide: the result for a (device, request) pair is computed once and reused.
SdpaChoice configure_sdpa(const std::string& requested, const torch::Device& device,
                          const SdpaProbe& probe = {});
// "flash (auto: cudnn 0.61 ms, flash 0.55 ms, efficient 0.98 ms)" style summary.
std::string describe(const SdpaChoice& choice);

}  // namespace qwen::models
