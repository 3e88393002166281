#include "pipelines/placement.h"

#include <limits>
#include <stdexcept>

#include "models/device_memory.h"
#include "pipelines/engine.h"
#include "plan/model_sizes.h"

namespace qwen::pipelines {

plan::MemoryPlan plan_engine_memory(const io::ModelFolder& model, const std::string& mode,
                                    torch::Device device, torch::Dtype dtype,
                                    io::QuantizeMode quantize) {
  try {
    plan::check_memory_mode(mode);
  } catch (const std::invalid_argument& e) {
    throw EngineError(e.what());
  }
  const auto sizes =
      plan::model_sizes(model, static_cast<int64_t>(c10::elementSize(dtype)), quantize);
  const plan::JobShape job = plan::planned_job(model, sizes);
  const bool named = !mode.empty() && mode != "auto";
  if (device.is_cpu()) {
    plan::MemoryPlan p = plan::plan_memory(sizes, job, std::numeric_limits<int64_t>::max() / 4,
                                           named ? mode : "resident");
    if (p.transformer == plan::TransformerPlace::Stream) {
      p.resident_blocks = 0;
      p.streamed_bytes_per_pass = sizes.layers * sizes.block_bytes();
    }
    // Qwen-Image-2.1 with an offloaded text encoder: the transformer also leaves the "device"
    // while encoding, so the swap runs in tests.
    if (sizes.qwen21 && p.text_encoder == plan::TextEncoderPlace::Offload &&
        p.transformer == plan::TransformerPlace::Resident)
      p.swap_transformer = true;
    p.budget = 0;
    p.requested = named ? mode : "auto";
    return p;
  }
  const auto available = models::device_available_bytes(device);
  if (!available)
    throw EngineError("cannot ask " + device.str() +
                      " how much memory is free (driver); pass a named --memory mode");
  return plan::plan_memory(sizes, job, *available, named ? mode : "auto");
}

io::QuantizeMode engine_quantize_mode(const std::string& quantize) {
  try {
    return io::parse_quantize_mode(quantize);
  } catch (const std::invalid_argument& e) {
    throw EngineError(e.what());
  }
}

TextEncoderOnDevice::TextEncoderOnDevice(models::HostWeights* weights) : weights_(weights) {
  if (!weights_) return;
  weights_->upload();
  weights_->wait();
}

TextEncoderOnDevice::~TextEncoderOnDevice() {
  if (weights_) weights_->release();
}

}  // namespace qwen::pipelines
