// Loading a placed transformer (issue #13): the released 20B configuration with L real-shape
// blocks, written with constant weights as a safetensors file, then loaded for a memory mode the
// way the engine does (--path host: models::HostLoad, what the placement keeps in host memory goes
// from the file straight into one host buffer, page-locked on an accelerator) or the way it did
// before (--path plain: loaded on the host, then the placement copies into host memory). Prints
// the load and placement seconds, the host bytes the placement holds and copied, and the peak
// host memory (VmHWM, reset before loading: the file's mapped pages count while mapped).
//
//   bench_load --layers 2 --memory stream --path host  [--dtype bfloat16] [--device cuda]
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "io/safetensors.h"
#include "models/offload.h"
#include "models/transformer.h"
#include "models/weights.h"

namespace {

struct Args {
  int64_t layers = 2;
  std::string memory = "stream", path = "host", dtype = "bfloat16", device = "cpu";
  std::string file = "/tmp/bench_load.safetensors";
  bool keep = false;
};

double vm_hwm_gib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / (1 << 20);  // kB
  return -1;
}

void reset_peak() {
  std::ofstream("/proc/self/clear_refs") << "5";  // resets VmHWM to the current RSS (Linux >= 4.0)
}

// Every parameter of `model` as BF16 (the released checkpoints' dtype), 1.0 everywhere.
void write_checkpoint(torch::nn::Module& model, const std::string& path) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  int64_t offset = 0;
  std::vector<std::pair<std::string, int64_t>> order;
  for (const auto& p : model.named_parameters()) {
    const int64_t n = p.value().numel() * 2;
    header[p.key()] = {{"dtype", "BF16"},
                       {"shape", p.value().sizes().vec()},
                       {"data_offsets", {offset, offset + n}}};
    order.emplace_back(p.key(), n);
    offset += n;
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  std::ofstream out(path, std::ios::binary);
  const uint64_t len = h.size();
  out.write(reinterpret_cast<const char*>(&len), 8);
  out.write(h.data(), static_cast<std::streamsize>(h.size()));
  std::vector<uint16_t> chunk(size_t(1) << 22, 0x3F80);  // bf16 1.0
  for (int64_t left = offset; left > 0;) {
    const int64_t n = std::min<int64_t>(left, int64_t(chunk.size()) * 2);
    out.write(reinterpret_cast<const char*>(chunk.data()), n);
    left -= n;
  }
  if (!out) throw std::runtime_error("cannot write " + path);
}

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(k + " needs a value");
      return argv[++i];
    };
    if (k == "--layers")
      a.layers = std::stoll(next());
    else if (k == "--memory")
      a.memory = next();
    else if (k == "--path")
      a.path = next();
    else if (k == "--dtype")
      a.dtype = next();
    else if (k == "--device")
      a.device = next();
    else if (k == "--file")
      a.file = next();
    else if (k == "--keep")
      a.keep = true;
    else {
      std::fprintf(
          stderr,
          "usage: bench_load [--layers L] [--memory stream|modulation] [--path host|plain]\n"
          "                  [--dtype bfloat16|float32] [--device cpu|cuda] [--file F] "
          "[--keep]\n");
      return 2;
    }
  }
  if ((a.memory != "stream" && a.memory != "modulation") ||
      (a.path != "host" && a.path != "plain")) {
    std::fprintf(stderr, "bench_load: --memory stream|modulation, --path host|plain\n");
    return 2;
  }
  const torch::Device device(a.device);
  const torch::Dtype dtype = a.dtype == "float32" ? torch::kFloat32 : torch::kBFloat16;
  const bool stream = a.memory == "stream";
  qwen::models::TransformerConfig cfg;  // the released 20B configuration
  cfg.num_layers = a.layers;
  torch::NoGradGuard no_grad;
  if (!std::filesystem::exists(a.file) || !a.keep) {
    qwen::models::QwenImageTransformer2DModel shapes(cfg);
    write_checkpoint(*shapes, a.file);
  }
  const auto file_bytes = std::filesystem::file_size(a.file);
  double load_s = 0, place_s = 0, peak = 0;
  int64_t host_bytes = 0, copied = 0, meter_host = 0;
  {
    auto store = qwen::io::TensorStore::open(a.file);
    qwen::models::QwenImageTransformer2DModel model(cfg);
    reset_peak();
    const double base = vm_hwm_gib();
    const auto t0 = std::chrono::steady_clock::now();
    qwen::models::LoadMeter meter;
    {
      std::optional<qwen::models::HostLoad> placed;
      if (a.path == "host")
        placed.emplace(device, [&](const std::string& n) {
          return qwen::models::TransformerPlacement::host_tensor(n, stream, 0);
        });
      qwen::models::load_module(*model, store, "transformer", dtype, torch::kCPU);
    }
    load_s = since(t0);
    const auto t1 = std::chrono::steady_clock::now();
    qwen::models::TransformerPlacement placement(*model, device, stream, 0);
    place_s = since(t1);
    peak = vm_hwm_gib() - base;
    host_bytes = placement.host_bytes();
    copied = placement.copied_host_bytes();
    meter_host = meter.host_bytes();
  }
  std::printf(
      "%s %s, %lld real-shape blocks (%.2f GB file), %s on %s: load %.2f s, placement %.2f s, "
      "host weights %.2f GB (%.2f GB of them copied by the placement, %.2f GB loaded straight "
      "there), peak host memory +%.2f GiB\n",
      a.memory.c_str(), a.path.c_str(), (long long)a.layers, file_bytes / 1e9, a.dtype.c_str(),
      device.str().c_str(), load_s, place_s, host_bytes / 1e9, copied / 1e9, meter_host / 1e9,
      peak);
  std::printf(
      "RESULT memory=%s path=%s load_s=%.3f place_s=%.3f host_gb=%.3f copied_gb=%.3f "
      "peak_gib=%.3f\n",
      a.memory.c_str(), a.path.c_str(), load_s, place_s, host_bytes / 1e9, copied / 1e9, peak);
  if (!a.keep) std::filesystem::remove(a.file);
  return 0;
}
