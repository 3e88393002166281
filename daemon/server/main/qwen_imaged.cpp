// qwen-imaged: the persistent daemon (see docs/daemon.md). The server lives in qwen_server; this
// file only injects the real engine (and, for max_resident_models = auto, the device's memory).
#include "models/device_memory.h"
#include "pipelines/engine.h"
#include "server/job.h"
#include "server/server.h"

int main(int argc, char** argv) {
  qwen::server::set_device_memory_probe([](const std::string& device) -> std::optional<int64_t> {
    try {
      if (device.empty() && !torch::cuda::is_available()) return std::nullopt;
      const torch::Device d(device.empty() ? std::string("cuda") : device);
      if (d.is_cpu()) return std::nullopt;
      return qwen::models::device_available_bytes(d);
    } catch (const std::exception&) {
      return std::nullopt;
    }
  });
  return qwen::server::daemon_main(
      argc, argv, [](const qwen::EngineOptions& o) { return qwen::Engine::open(o); });
}
