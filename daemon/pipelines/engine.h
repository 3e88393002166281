// The engine: loads one model folder once and runs generation / editing jobs on it.
// This header is torch-free so that the CLI front-end, the daemon and the tests can include it
// cheaply.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "image/image.h"

namespace qwen {

// Every user-facing failure (bad input, broken checkpoint, cancelled job) is an EngineError with a
// message a person can act on.
struct EngineError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct CancelledError : EngineError {
  CancelledError() : EngineError("job cancelled") {}
};

// Decompose: Qwen-Image-Layered (issue #16), one RGBA image in, `RunParams::layers` RGBA layers out.
enum class PipelineKind { Generate, Img2Img, Inpaint, Edit, EditPlus, EditInpaint, Decompose };
const char* to_string(PipelineKind);
std::optional<PipelineKind> pipeline_from_string(const std::string&);
// The edit pipeline a model runs when none is named ("edit-auto"): Edit-Plus for several images or
// for a model whose model_index.json names QwenImageEditPlusPipeline (`model_default`), else Edit.
PipelineKind edit_pipeline_for(PipelineKind model_default, size_t images);

// How edit inputs are mapped onto the model's sizes.
//  Reference: resize with a changed aspect ratio and stretch the result back (what diffusers does).
//  Exact: keep the aspect ratio (pad to the model's size, crop the padding off afterwards) and
//         return the result on the input's exact pixel grid. Default when results go back to an
//         editor.
// Exact applies to Edit, Edit-Plus and Edit-Inpaint (geometry.h: plan_exact / to_model /
// from_model / mask_to_model): every input image (and the mask) goes onto its exact canvas (the
// same model size as the reference resize), and the result is cropped and resampled to the width x
// height of the image that sets the output size: the input (Edit, Edit-Inpaint) or the LAST input
// (Edit-Plus). RunParams.width/height are ignored in Exact mode. Generate / Img2Img / Inpaint
// ignore the mode.
enum class GeometryMode { Reference, Exact };

struct RunParams {
  PipelineKind pipeline = PipelineKind::Generate;
  std::vector<std::string> prompts;           // one per batch entry (>= 1)
  std::vector<std::string> negative_prompts;  // empty, one (shared) or one per prompt
  int width = 0;                              // 0: the pipeline's default
  int height = 0;
  // 0: the model's default (50; Qwen-Image-2.1: 40, Turbo: its sigmas' count; Lightning: 4 or 8)
  int steps = 50;
  std::optional<float> true_cfg_scale;  // unset: 4 (2.1, Lightning: 1); CFG needs a negative prompt
  int64_t seed = 0;
  int num_images_per_prompt = 1;
  float strength = 0.6f;        // img2img / inpaint / edit-inpaint
  std::vector<ImageU8> images;  // inputs for img2img / inpaint / edit (RGB or RGBA)
  std::optional<ImageU8> mask;  // 1 channel, white (255) = repaint
  GeometryMode geometry = GeometryMode::Reference;
  int max_sequence_length = 512;
  // LoRAs on the transformer for this job, in order, each with its strength (negative subtracts;
  // issue #14, models/lora.h). The engine keeps the base weights: a job without LoRAs after one
  // with LoRAs runs the loaded model exactly.
  struct Lora {
    std::string path;
    double strength = 1.0;
  };
  std::vector<Lora> loras;
  // Fixed exponential time shift mu = ln(shift), no terminal stretch (diffusers' Lightning
  // scheduler: base_shift = max_shift = ln 3, shift_terminal unset). Unset: the model's scheduler.
  std::optional<double> shift;
  // Lightning defaults even without a recognised Lightning LoRA (merged Lightning checkpoints):
  // steps 0 -> 8 (a Lightning LoRA's name can say 4), CFG 1 and shift 3 unless set.
  bool lightning = false;
  // Decompose (QwenImageLayeredPipeline, issue #16): the number of RGBA layers to produce (2-10),
  // the reference's `resolution` bucket (640 or 1024: the condition and output area is
  // resolution^2 at the input's aspect ratio) and `cfg_normalize` (rescale the CFG prediction to
  // the conditional one's norm). images[0] is the picture to split (RGB or RGBA).
  int layers = 4;
  int resolution = 640;
  bool cfg_normalize = false;
  // Qwen-Image-2.1 (issue #15): keep the text and reference-image keys/values from the first step
  // (the reference's use_kv_cache, default true); false runs every step uncached (--no-kv-cache).
  bool kv_cache = true;
  // Qwen-Image-2.1: the reference's output_resolution (the side of the default output area and
  // of the area references are resized to).
  int output_resolution = 1024;
};

struct ProgressInfo {
  int step = 0;   // steps done
  int total = 0;  // steps to run
  // With EngineOptions.preview: on the steps preview_due() picks, a small RGB preview of the
  // current clean-image estimate x0 = x_t - sigma_t * v of the first batch entry (inpaint: the kept
  // area blended in), on the latent grid (1/8 of the model's pixel size, at most 256 px on the long
  // side), by a fixed linear 16 -> 3 map of the latents instead of a VAE decode (colours
  // approximate, sub-millisecond). Exact geometry: the preview shows the whole model canvas
  // (padding included). Empty otherwise.
  ImageU8 preview;
};
// Called after every denoising step. Return false to cancel the job (the engine then throws
// CancelledError at the next step boundary).
using ProgressFn = std::function<bool(const ProgressInfo&)>;

struct EngineOptions {
  std::string model_dir;  // diffusers folder; may be empty when the three files below are given
  // Component files (safetensors single files, ComfyUI repacks) that supply or replace the
  // folder's weights (io::ModelSources); `model_type` (io::known_model_types()) names the model
  // when the files alone cannot tell it.
  std::string transformer_file, text_encoder_file, vae_file, model_type;
  std::string device;    // "cpu", "cuda", "cuda:N"; empty = cuda when available, else cpu
  std::string dtype;     // "float32", "bfloat16"; empty = bfloat16 on cuda, float32 on cpu
  int threads = 0;       // CPU threads for torch; 0 = all hardware threads
  bool preview = false;  // fill ProgressInfo.preview (see there) on the steps preview_due() picks
  // With `preview`: a preview on step 1, every preview_every-th step after it and the last step
  // (the daemon's preview_every); steps without one make no preview work at all (no x0 estimate,
  // no device->host copy). 1 = every step.
  int preview_every = 1;
  // Edit models: the Qwen2-VL image processor to reproduce, "torchvision" (what diffusers'
  // from_pretrained gives; default when empty) or "pil" (transformers' Qwen2VLImageProcessorPil).
  std::string vision_processor;
  // fp8 tensor-core matmuls for fp8 (e4m3) weights (issues #13/#15, models/fp8_matmul.h): "auto"
  // (when empty: on on a CUDA device of compute capability >= 8.9), "on" or "off". On, each such
  // layer quantises its input to fp8 per token and multiplies with at::_scaled_mm instead of
  // dequantising the weight (images differ slightly from the dequantised path).
  std::string fp8_matmul;
  // CUDA attention kernel: "auto" (a start-up self-check times cuDNN, flash and memory-efficient
  // attention and takes the fastest that agrees with float32 math), "cudnn", "flash", "efficient"
  // or "math"; empty = $QWEN_SDPA_BACKEND, else auto. Ignored on the CPU.
  std::string sdpa_backend;
  // Memory mode (issue #13, plan/memory_plan.h): "auto" (when empty) or a named mode
  // (`qwen-image plan --list-modes`): where the text encoder and the transformer's weights live.
  std::string memory;
  // How LoRAs are applied (models/linear.h LinearImpl::set_lora): "side" (default: low-rank side
  // branch, no extra weight memory, any base format) or "merge" (a merged working copy of every
  // adapted plain or dequantised weight).
  std::string lora_mode;
  // Quantise-on-load (models/quantize.h, io/quantize_on_load.h): "none" (when empty) or "fp8":
  // the transformer's block Linear weights stored plain (bf16 / f32) are quantised to float8
  // e4m3fn with a per-tensor scale as they are loaded (fp8 memory from the released bf16 files);
  // weights stored quantised (fp8, GGUF) stay as stored. The planner counts them at 1 byte each.
  std::string quantize;
  // Receives the engine's information lines (attention backend, load rates); empty = stderr.
  std::function<void(const std::string&)> log;
  // Called as each weight component starts loading (the daemon's "loading model" job phase):
  // its name ("transformer", "vae", "text_encoder"), its 1-based index and the count (3).
  std::function<void(const std::string& component, int index, int count)> on_load;
};

struct ModelInfo {
  std::string model_dir;   // the folder, else the transformer file
  std::string model_type;  // io::known_model_types() name, when known
  std::string pipeline_class;  // from model_index.json
  std::string device;
  std::string dtype;
  PipelineKind default_pipeline = PipelineKind::Generate;
  bool can_edit = false;  // has a vision tower + processor
  bool can_decompose = false;  // a Qwen-Image-Layered model (runs PipelineKind::Decompose only)
  // "qwen-image-2.1" for a QwenImage21Pipeline model (issue #15; RGBA results, 1-10 references),
  // else "qwen-image".
  std::string family = "qwen-image";
  int64_t parameters = 0;
  int64_t bytes = 0;
  std::string attention;  // the SDPA backend in use and why (models::describe), "" on the CPU
  std::string memory;     // the memory plan followed (plan::MemoryPlan::summary)
  // Per loaded component: checkpoint bytes moved into it and the time it took (the load rate is
  // bytes / seconds; on the CPU the tensors are mapped, not copied).
  struct ComponentLoad {
    std::string component;
    int64_t bytes = 0;
    double seconds = 0;
    double gb_per_s() const { return seconds > 0 ? bytes / seconds / 1e9 : 0.0; }
  };
  std::vector<ComponentLoad> loads;
};

class Engine {
 public:
  virtual ~Engine() = default;
  // Loads the model folder (diffusers layout) or throws EngineError.
  static std::unique_ptr<Engine> open(const EngineOptions& options);

  virtual const ModelInfo& info() const = 0;
  // Runs one job. Returns prompts.size() * num_images_per_prompt RGB images in batch order;
  // Decompose: prompts.size() * num_images_per_prompt * layers RGBA images, batch entry major,
  // each entry's layers in the order the reference returns them.
  virtual std::vector<ImageU8> run(const RunParams& params, const ProgressFn& progress = {}) = 0;
};

// Whether step `step` (1-based) of `total` carries a preview when one is wanted every `every`
// steps: steps 1, 1 + every, 1 + 2 * every, ... and the last one. `every` < 1: never.
inline bool preview_due(int step, int total, int every) {
  return every >= 1 && step >= 1 && (step == total || (step - 1) % every == 0);
}

// Sets the torch CPU thread count (torch defaults to 1 here). 0 = hardware concurrency.
void set_torch_threads(int threads);

}  // namespace qwen
