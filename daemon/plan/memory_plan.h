// The memory planner: where each component of a model lives while jobs run, and the device memory
// that costs (issue #13). A pure function of sizes (torch-free, no device access): the inputs are
// the device memory, every component's tensors with their on-device bytes (from the weight files'
// metadata, plan/model_sizes.h, no weight is loaded), the image size and the batch; the output is a
// placement per component and the predicted peak.
//
// Placements
//   text encoder  gpu       resident on the device for the model's life
//                 offload   kept in (pinned) host memory, on the device only while encoding
//                 cpu       runs on the CPU (never on the device)
//   VAE           tiled or untiled decode (models/vae.h vae_should_tile; the planner predicts it)
//   transformer   resident            every weight on the device
//                 modulation          the timestep-only img_mod / txt_mod weights (a third of the
//                                     model) stay in host memory; their outputs for every step of
//                                     a job are computed once per job (same numbers) and kept
//                 stream              modulation as above, and only `resident_blocks` blocks stay
//                                     on the device; the others are copied in before use (next
//                                     block's copy overlapped on a side stream), two at a time
//
// Phases and the predicted peak: max over encode (prompt), modulation precompute, denoise and
// decode of what is on the device in that phase (weights + activations + a fixed reserve for the
// CUDA context and library workspaces).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace qwen::plan {

constexpr int64_t kGiB = int64_t(1) << 30;
constexpr int64_t kMiB = int64_t(1) << 20;

// One tensor as it will sit in device memory.
struct TensorSize {
  std::string name;     // canonical key (io/checkpoint.h)
  int64_t numel = 0;    // logical elements
  int64_t bytes = 0;    // bytes on the device once loaded (compute dtype, or quantised storage)
  bool linear = false;  // a 2-D Linear weight (what fp8 / GGUF files quantise)
  std::string storage;  // "BF16", "F8_E4M3", "Q4_K", ...
};

struct ComponentSize {
  std::string file;    // the file or folder that supplies it (messages)
  std::string format;  // storage of most of its bytes ("BF16", "F8_E4M3*scale", "Q4_K", ...)
  std::vector<TensorSize> tensors;
  int64_t bytes() const;  // all tensors
  // Sum of the tensors whose names start with `prefix` (and contain `part` when given).
  int64_t bytes_with_prefix(const std::string& prefix, const std::string& part = "") const;
  bool present() const { return !tensors.empty(); }
};

// Everything about a model the planner looks at.
struct ModelSizes {
  ComponentSize transformer, text_encoder, vae;
  int64_t dim = 3072;        // transformer inner dim
  int64_t layers = 60;       // transformer blocks
  bool zero_cond_t = false;  // Edit-2511: img modulation has twice the rows
  int64_t text_hidden = 3584, text_intermediate = 18944;
  bool edit = false;        // edit model (vision tower and condition images)
  int64_t dtype_bytes = 2;  // compute dtype (bfloat16 on CUDA)
  // Qwen-Image-2.1 (QwenImage21Pipeline, issue #15): one joint single-stream sequence (text with
  // the references' latents in its image slots, then the target), one shared modulation (nothing
  // timestep-only per block: `modulation` places the transformer as `resident`), the prefix's keys
  // and values kept for the whole job by the KV cache, and a Qwen3-VL text encoder whose sequence
  // holds 1,024 image slots per 1024x1024 reference.
  bool qwen21 = false;
  // The transformer's sizes are those of quantise-on-load to fp8 (`--quantize fp8`,
  // plan/model_sizes.h quantize_on_load): the advice then does not suggest it again.
  bool quantize_fp8 = false;

  int64_t modulation_bytes() const;  // img_mod + txt_mod of every block
  int64_t block_bytes() const;       // the largest block without its modulation
  int64_t non_block_bytes() const;   // transformer tensors outside the blocks
};

// The job the plan is for.
struct JobShape {
  int64_t width = 1024, height = 1024;
  int64_t batch = 1;  // images per job (prompts x images per prompt)
  bool cfg = true;    // true CFG (two sequential transformer passes; sizes unchanged)
  int64_t steps = 50;
  int64_t text_tokens = 512;     // prompt tokens (max_sequence_length)
  int64_t condition_images = 0;  // edit: condition images (each about 1024 x 1024 in latents)
  // Image frames of width x height in the transformer's sequence: 1, or layers + 2 for
  // Qwen-Image-Layered's decompose (the composite, the layers and the condition image).
  int64_t frames = 1;
  // Qwen-Image-2.1: the KV cache is wanted (the default; --no-kv-cache plans without it).
  bool kv_cache = true;
};

enum class TextEncoderPlace { Gpu, Offload, Cpu };
enum class TransformerPlace { Resident, Modulation, Stream };
const char* to_string(TextEncoderPlace);
const char* to_string(TransformerPlace);

// A named mode (`--memory MODE`, `memory =`): a fixed placement, or "auto".
struct MemoryMode {
  const char* name;
  TextEncoderPlace text_encoder;
  TransformerPlace transformer;
  const char* description;
};
// Every mode but "auto", in the order auto tries them (fastest first).
const std::vector<MemoryMode>& memory_modes();
// "auto" and every memory_modes() name, one per entry (plan --list-modes).
std::vector<std::string> memory_mode_names();
const MemoryMode* find_memory_mode(const std::string& name);
// Throws std::invalid_argument naming the value and the accepted names when `name` is neither
// "auto" nor a mode ("" counts as auto).
void check_memory_mode(const std::string& name);

struct MemoryPlan {
  std::string requested = "auto";  // the mode asked for
  std::string mode;                // the mode chosen (a memory_modes() name)
  TextEncoderPlace text_encoder = TextEncoderPlace::Gpu;
  TransformerPlace transformer = TransformerPlace::Resident;
  int64_t resident_blocks = 0;  // stream: blocks kept on the device (others copied per pass)
  bool vae_tiled = false;
  int64_t budget = 0;  // device bytes the plan may use
  // Predicted bytes per phase and the peak (max) including the reserve.
  int64_t encode_peak = 0, modulation_peak = 0, denoise_peak = 0, decode_peak = 0, peak = 0;
  int64_t transformer_device_bytes = 0;  // transformer weights resident on the device
  int64_t modulation_cache_bytes = 0;    // precomputed modulation outputs of one job
  int64_t streamed_bytes_per_pass = 0;   // stream: weight bytes copied per transformer pass
  // Qwen-Image-2.1: the KV cache on (its bytes on the device for the job's references, both CFG
  // branches), or off because it would not fit (kv_cache_bytes = what it would need; every step
  // then runs the whole sequence); swap_transformer: the transformer's weights go to pinned host
  // memory while the (offloaded) text encoder encodes, and come back for the denoising (what
  // diffusers' model CPU offload does; a 24 GB card cannot hold the 7.1B DiT and the 8B encoder).
  bool kv_cache = false;
  int64_t kv_cache_bytes = 0;
  bool swap_transformer = false;
  bool fits = false;
  double cost_seconds = 0;  // rough extra seconds per job over all-resident (auto's choice)
  std::string advice;       // when !fits: what would fit (a file / format, a smaller image)

  // One line per component ("text_encoder: offload (15.4 GiB in pinned host memory ...)") and the
  // last "predicted peak: X GiB".
  std::vector<std::string> lines(const ModelSizes& model) const;
  // One-line summary for logs and `status`: "mode modulation: text encoder offload, ...".
  std::string summary() const;
};

// Fixed bytes kept out of the budget: CUDA context, cuBLAS/cuDNN workspaces, allocator slack.
constexpr int64_t kDeviceReserve = 768 * kMiB;

// Plans `model` for `job` on a device with `device_bytes` of memory the process can use (driver
// free memory; `plan --vram`). `mode`: "auto" (or "") picks, among the memory_modes() that fit,
// the one with the least estimated extra time per job (copies at PCIe speed, CPU text encoding;
// ties go to the earlier mode); a named mode is evaluated as given (stream: as many resident
// blocks as fit). A plan that does not fit has fits = false and advice naming `--memory auto`, a
// transformer format (fp8, GGUF Q8_0 / Q4_K_M / ...) or a smaller image that would fit.
// Throws std::invalid_argument for an unknown mode.
MemoryPlan plan_memory(const ModelSizes& model, const JobShape& job, int64_t device_bytes,
                       const std::string& mode = "auto");

// Predicted activation bytes of one transformer pass / one text encoding / one untiled or tiled
// VAE decode (exposed for tests and benches).
int64_t transformer_activation_bytes(const ModelSizes& model, const JobShape& job);
int64_t text_encoder_activation_bytes(const ModelSizes& model, const JobShape& job);
int64_t vae_decode_bytes(const JobShape& job, int64_t dtype_bytes, bool tiled);
int64_t modulation_cache_bytes(const ModelSizes& model, const JobShape& job);
// Qwen-Image-2.1: bytes of the KV cache of one job (keys and values of the prefix, text plus
// 4,096 tokens per 1024x1024 reference, in every block, per CFG branch); 0 for other models.
int64_t kv_cache_bytes(const ModelSizes& model, const JobShape& job);

// The transformer as if stored in another format: every Linear weight at `bits_per_weight`
// (8 = fp8, 8.5 = Q8_0, 4.5 = Q4_K, ...), the other tensors unchanged.
ComponentSize reformat(const ComponentSize& c, double bits_per_weight, const std::string& storage);

// "24G", "24GB", "24GiB", "24576M", "24576MiB", "25769803776" -> bytes. Cards are sold in binary
// gigabytes (a "24 GB" card has 24 GiB), so G/GB/GiB all mean 2^30. Throws std::invalid_argument
// naming the value.
int64_t parse_size(const std::string& text);
// "23.4 GiB" (below 100 MiB: "12.5 MiB")
std::string format_gib(int64_t bytes);

}  // namespace qwen::plan
