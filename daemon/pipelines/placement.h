// The engine's side of the memory modes (issue #13): which plan it follows and the text encoder's
// offload scope. The planner is plan/memory_plan.h; the machinery models/offload.h.
#pragma once

#include <torch/torch.h>

#include <string>

#include "io/checkpoint.h"
#include "io/quantize_on_load.h"
#include "models/offload.h"
#include "plan/memory_plan.h"

namespace qwen::pipelines {

// The plan for `model` under EngineOptions.memory `mode` ("" = auto), for the job sizes the
// pipelines default to at their largest (1328 x 1328, CFG, 50 steps; edit models: one condition
// image). On an accelerator the budget is the memory the process can still get
// (models::device_available_bytes). On the CPU there is no device memory to plan for: auto keeps
// everything resident, a named mode applies its most thorough form (host memory stands in for
// the device; stream modes stream every block), so the machinery runs in tests. Throws
// EngineError for an unknown mode.
// `quantize`: EngineOptions::quantize, the transformer's sizes as quantised on load.
plan::MemoryPlan plan_engine_memory(const io::ModelFolder& model, const std::string& mode,
                                    torch::Device device, torch::Dtype dtype,
                                    io::QuantizeMode quantize = io::QuantizeMode::None);
// EngineOptions::quantize ("" = none); throws EngineError naming the value and the accepted ones.
io::QuantizeMode engine_quantize_mode(const std::string& quantize);

// Keeps an offloaded text encoder (models::HostWeights; null = nothing to do) on the device while
// alive; released (back to host memory) when it goes out of scope, also on errors.
class TextEncoderOnDevice {
 public:
  explicit TextEncoderOnDevice(models::HostWeights* weights);
  ~TextEncoderOnDevice();
  TextEncoderOnDevice(const TextEncoderOnDevice&) = delete;
  TextEncoderOnDevice& operator=(const TextEncoderOnDevice&) = delete;

 private:
  models::HostWeights* weights_;
};

}  // namespace qwen::pipelines
