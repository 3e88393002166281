// y = x W^T + b under the checkpoint's names (`weight` [out, in], `bias` [out]), shared by the
// transformer, the text encoder and the vision tower.
//
// Unlike torch::nn::Linear the parameters are created uninitialized (torch::empty in the default
// dtype): no random initialisation runs and no page of memory is touched, because the checkpoint
// loader replaces every parameter (models/weights.h). Building the 20.4B transformer this way
// costs nothing, where torch::nn::Linear would fill 82 GB of float32 with random numbers before
// the first weight is read. Code that wants random weights (benchmarks) fills them explicitly.
//
// A checkpoint that stores `weight` quantised (fp8, scaled fp8, GGUF blocks) keeps it as stored:
// the loader calls set_quantized(), `weight` becomes an empty placeholder, and forward
// dequantises the weight just before use, in the input's dtype on the input's device
// (models/quant.h quantized_linear; ComfyUI-GGUF's GGMLLayer does the same per call).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

namespace qwen::models {

class QuantizedWeight;  // models/quant.h

// One LoRA on a Linear (models/lora.h): y += scale * up(down(x)), down [r, in], up [out, r], both
// in the compute dtype on the layer's device. `scale` is the user's strength times the factor
// diffusers/PEFT compute (lora_alpha / r, see lora.h).
struct LoraBranch {
  torch::Tensor down, up;
  double scale = 1.0;
};

class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in, int64_t out, bool bias = true);
  torch::Tensor forward(const torch::Tensor& x);

  // Keeps `w` (logical shape [out, in]) as the weight, in its stored form; `weight` becomes an
  // empty tensor of `weight`'s dtype on w's device.
  void set_quantized(QuantizedWeight w);
  // The quantised weight, or null for a plain one.
  const QuantizedWeight* quantized() const { return qweight_.get(); }
  // fp8 tensor-core matmul for an fp8 e4m3 weight (models/quant.h fp8_linear; set for a whole
  // model by models/fp8_matmul.h set_fp8_matmul). Off by default; kept across set_quantized() and
  // to(), so placements that swap the weight's copy keep it. Weights it does not suit are
  // dequantised as before.
  void set_fp8_matmul(bool on) { fp8_matmul_ = on; }
  bool fp8_matmul() const { return fp8_matmul_; }

  // Module::to also moves the quantised bytes; a dtype never casts them (only `bias` and the
  // placeholder follow it).
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, bool non_blocking = false) override;

  // LoRAs (models/lora.h apply_loras). Side branch (default): forward adds
  // `scale * up(down(x))` per branch after the base product, in the order given, as PEFT's
  // lora.Linear.forward does; the base weight (plain or quantised) is never touched. Merged:
  // forward uses a working copy W + sum scale * up @ down (computed in float32, rounded once to
  // the weight's dtype; quantised weights are dequantised for the copy), `weight` stays as
  // loaded. clear_lora() drops branches and copy: the layer is exactly the loaded one again.
  void set_lora(std::vector<LoraBranch> branches, bool merge);
  void clear_lora();
  const std::vector<LoraBranch>& lora() const { return lora_; }
  bool lora_merged() const { return merged_.defined(); }

  torch::Tensor weight, bias;

 private:
  std::shared_ptr<const QuantizedWeight> qweight_;
  std::vector<LoraBranch> lora_;
  torch::Tensor merged_;
  bool fp8_matmul_ = false;
};
TORCH_MODULE(Linear);

// Bytes of every quantised Linear weight of `module` (QuantizedWeight::storage_bytes, scales
// included), and of its parameters and buffers: together what the module holds resident.
int64_t quantized_weight_bytes(torch::nn::Module& module);
int64_t resident_bytes(torch::nn::Module& module);

}  // namespace qwen::models
