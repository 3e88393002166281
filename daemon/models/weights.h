// Loads checkpoint tensors into torch::nn::Module parameters by name.
// Module code registers its submodules/parameters with the checkpoint's key names, so loading is a
// lookup: module.named_parameters() (and named_buffers() that are persistent) <-> TensorStore keys.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/quantize_on_load.h"
#include "io/safetensors.h"
#include "models/device_memory.h"

namespace qwen::models {

struct LoadReport {
  std::vector<std::string> missing;     // parameters the module has, the checkpoint lacks
  std::vector<std::string> unexpected;  // checkpoint tensors the module does not have
  int64_t bytes = 0;                    // checkpoint bytes (as stored) moved into the module
  int64_t staged = 0;                   // of which through the staged device copies (load_staged)
  int64_t host = 0;                     // of which straight into host memory (HostLoad)
  double seconds = 0;                   // wall time of moving them (until resident on the device)
};

// Load statistics of everything load_module() loads on this thread while the meter lives (meters
// nest; each sees the loads inside its lifetime), e.g. one component of the engine: the load rate
// of a component whose loader returns only the module (load_vae, load_text_encoder).
class LoadMeter {
 public:
  LoadMeter();
  ~LoadMeter();
  LoadMeter(const LoadMeter&) = delete;
  LoadMeter& operator=(const LoadMeter&) = delete;
  int64_t bytes() const { return bytes_; }
  int64_t staged_bytes() const { return staged_; }
  int64_t host_bytes() const { return host_; }
  double seconds() const { return seconds_; }
  double gb_per_s() const { return seconds_ > 0 ? bytes_ / seconds_ / 1e9 : 0.0; }
  // "40.86 GB in 10.21 s (4.00 GB/s, pinned double-buffered copies to cuda:0)" style.
  std::string summary(const torch::Device& device) const;
  static void add(const LoadReport& report);  // what load_module() calls

 private:
  int64_t bytes_ = 0, staged_ = 0, host_ = 0;
  double seconds_ = 0;
  LoadMeter* outer_;
};

// Host -> device loading of checkpoint tensors (the accelerator path of load_module): in file
// order, through two staging buffers (page-locked when `pinned`) that alternate: while the device
// copies one buffer on a side stream, the host fills the other from the file mapping (a parallel
// memcpy), and the next tensor's pages are already being read ahead
// (SafetensorsFile::will_need). Events order buffer reuse; conversion to the wanted dtype runs on
// the device after the bytes arrive; the caller's stream waits for the side stream at the end, and
// the host waits too (the data is resident when this returns). Tensors larger than a buffer go in
// buffer-sized chunks. On the CPU the same path runs synchronously into fresh tensors (tests).
struct StagingOptions {
  int64_t buffer_bytes = int64_t(64) << 20;  // per buffer
  bool pinned = true;
};
struct StagedTensor {
  const io::TensorRef* ref = nullptr;
  torch::Dtype dtype = torch::kFloat32;  // wanted dtype (converted on the device)
};
std::vector<torch::Tensor> load_staged(const std::vector<StagedTensor>& items, torch::Device device,
                                       const StagingOptions& options = {});

// Loading of weights that live in host memory and go to `device` only while used (a streamed
// transformer block, an offloaded text encoder): in file order, each tensor from the file mapping
// straight into one host_buffer() (models/device_memory.h) for all of them (page-locked for an
// accelerator), in `dtype` (converted on the way when stored otherwise): one pass, no pageable
// copy first, no second host copy. The tensors are views of that buffer.
std::vector<torch::Tensor> load_to_host(const std::vector<StagedTensor>& items,
                                        const torch::Device& device);

// A placement's load (issue #13): while a HostLoad lives on this thread, load_module(..., device
// = CPU) loads for a placement on `device`: the plain tensors whose names (the module's, e.g.
// "transformer_blocks.7.attn.to_q.weight") `host` accepts (every one when empty) go to host
// memory with load_to_host(), the others straight to `device` (load_staged on an accelerator, the
// file mapping on the CPU), where the placement would move them. models::HostWeights adopts such
// host tensors as they are. Quantised weights stay as load_module keeps them on the CPU
// (HostWeights pins them in one copy). The innermost scope applies.
class HostLoad {
 public:
  explicit HostLoad(torch::Device device, std::function<bool(const std::string&)> host = {});
  ~HostLoad();
  HostLoad(const HostLoad&) = delete;
  HostLoad& operator=(const HostLoad&) = delete;
  static const HostLoad* current();
  const torch::Device& device() const { return device_; }
  bool host(const std::string& name) const { return !host_ || host_(name); }

 private:
  torch::Device device_;
  std::function<bool(const std::string&)> host_;
  const HostLoad* outer_;
};

// Loads the plain (not quantised) `targets` of a placed load (HostLoad::current(), non-null) and
// points each at its tensor: one load_to_host() for the host ones, one load_staged() for the
// device ones; adds the bytes to `report` (staged / host). Used by both load_module()s.
struct PlacedTarget {
  std::string name;
  torch::Tensor* tensor;
  const io::TensorRef* ref;
  torch::Dtype dtype;
};
void load_placed(const std::vector<PlacedTarget>& targets, const std::string& component,
                 const std::string& source, LoadReport& report);

// Copies (or, when dtype/device allow, maps without a second host copy) every parameter of `module`
// from `store`. Shape mismatches and missing tensors throw io::CheckpointError naming the
// component, the tensor, the expected and the found shape, and listing all missing/unexpected
// names. Floating-point parameters/buffers are converted to `dtype`, integer ones keep their type.
// Buffers the checkpoint lacks are treated as computed by the module: kept (moved to `device`,
// dtype kept). On CPU, a tensor stored in `dtype` aliases the file mapping (copy-on-write pages:
// in-place updates are private to the process). On CUDA the stored bytes go from the mapping
// through two pinned staging buffers to the device (load_staged) and are converted there (no
// second full host copy). Returned report (also added to the LoadMeters alive on this thread):
// `unexpected` lists the ignored (prefix-matched) names; `missing` is empty. `ignore_unexpected`:
// key prefixes that may be present without a parameter (e.g. "visual." when the vision tower is not
// loaded, "lm_head.").
LoadReport load_module(torch::nn::Module& module, const io::TensorStore& store,
                       const std::string& component, torch::Dtype dtype, torch::Device device,
                       const std::vector<std::string>& ignore_unexpected = {});

// The same from an opened component (io::open_component / io::ModelFolder::weights), in any format
// of io/tensor_format.h; the loading path of the engine (models/weights_format.cpp). Plain tensors
// load exactly as above. A quantised (fp8, scaled fp8, GGUF) 2-D weight of a models::Linear stays
// quantised: a QuantizedWeight (zero-copy over the mapping on CPU, the stored bytes only on
// another device) that the Linear dequantises per forward (LinearImpl::set_quantized). Any other
// quantised tensor (1-D norms / biases, convolutions, embedding tables) is dequantised at load in
// float32 and converted to `dtype`, as ComfyUI-GGUF does for small tensors. Shapes are checked
// against the logical (dequantised) shapes. `quantize` = Fp8 (quantise-on-load, models/quantize.h):
// the plain floating-point 2-D Linear weights io::quantize_on_load_selects picks are read on the
// host, quantised there (quantize_fp8) and kept as fp8 QuantizedWeights; only their fp8 bytes go
// to `device` (the device never holds them in bf16).
LoadReport load_module(torch::nn::Module& module, const io::ComponentWeights& weights,
                       const std::string& component, torch::Dtype dtype, torch::Device device,
                       const std::vector<std::string>& ignore_unexpected = {},
                       io::QuantizeMode quantize = io::QuantizeMode::None);

// One tensor from the store, converted to `dtype` on `device` (F32/F16/BF16/F8*/I64/I32/U8/BOOL).
torch::Tensor to_tensor(const io::TensorRef& ref, torch::Dtype dtype,
                        torch::Device device = torch::kCPU);
// As stored (no conversion); zero-copy over the mapping when aligned, else a copy.
torch::Tensor to_tensor_raw(const io::TensorRef& ref);

}  // namespace qwen::models
