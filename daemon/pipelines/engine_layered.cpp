// QwenEngine's Decompose pipeline (Qwen-Image-Layered, issue #16): validation, text encoding,
// the RGBA condition image, the layered loop and the per-layer decode (pipeline_layered.h).
#include <algorithm>
#include <cctype>
#include <string>

#include "pipelines/engine_impl.h"
#include "pipelines/latents.h"
#include "pipelines/pipeline_edit.h"
#include "pipelines/pipeline_layered.h"

namespace qwen::pipelines {

void QwenEngine::check_decompose_model(const RunParams& params) const {
  const bool decompose = params.pipeline == PipelineKind::Decompose;
  if (decompose && !info_.can_decompose)
    throw EngineError("model '" + info_.model_dir + "' (" + info_.pipeline_class +
                      ") cannot decompose an image into layers: use a Qwen-Image-Layered model "
                      "(model_index.json QwenImageLayeredPipeline, e.g. Qwen/Qwen-Image-Layered)");
  if (!decompose && info_.can_decompose)
    throw EngineError("model '" + info_.model_dir +
                      "' is a Qwen-Image-Layered model: it only decomposes an image into layers "
                      "(pipeline decompose, `qwen-image decompose`), not " +
                      to_string(params.pipeline));
}

void QwenEngine::prepare_decompose(ResolvedParams& p, const RunParams& params) const {
  if (params.images.size() != 1)
    throw EngineError("decompose needs exactly one input image (got " +
                      std::to_string(params.images.size()) + ")");
  if (params.layers < kMinLayers || params.layers > kMaxLayers)
    throw EngineError("layers must be between " + std::to_string(kMinLayers) + " and " +
                      std::to_string(kMaxLayers) + " (got " + std::to_string(params.layers) + ")");
  if (params.resolution != 640 && params.resolution != 1024)
    throw EngineError("resolution must be 640 or 1024 (the Qwen-Image-Layered buckets; got " +
                      std::to_string(params.resolution) + ")");
  // Deliberate deviation: with an empty prompt ("", " ") the reference captions the picture with
  // Qwen2.5-VL text generation (get_image_caption); this engine requires the caption instead.
  for (const auto& prompt : p.prompts)
    if (std::all_of(prompt.begin(), prompt.end(), [](unsigned char c) { return std::isspace(c); }))
      throw EngineError(
          "decompose needs a prompt that describes the whole picture (e.g. --prompt \"a red "
          "poster with the title 'SALE' over a city photo\"): with an empty prompt Qwen-Image-"
          "Layered's reference pipeline writes a caption with Qwen2.5-VL first, which this engine "
          "does not do");
  const ImageU8& image = params.images[0];
  if (image.empty()) throw EngineError("decompose: the input image is empty");
  LayeredSize size;
  try {
    size = layered_size(image.width, image.height, params.resolution);
  } catch (const std::invalid_argument& e) {
    throw EngineError(e.what());
  }
  p.width = size.width;
  p.height = size.height;
  p.layers = params.layers;
}

std::vector<ImageU8> QwenEngine::run_decompose(const ResolvedParams& p, const RunParams& params,
                                               const ProgressFn& progress, LayeredTrace* trace) {
  torch::NoGradGuard ng;
  if (vae_->config().input_channels != 4)
    throw EngineError("model '" + info_.model_dir + "': its VAE takes " +
                      std::to_string(vae_->config().input_channels) +
                      " input channels, not the 4 (RGBA) of Qwen-Image-Layered (vae/config.json "
                      "input_channels)");
  if (p.layers < kMinLayers) throw EngineError("internal: decompose job not prepared");
  // 2. The RGBA condition image at the layered size.
  const auto condition = with_context("input image", [&] {
    return encode_condition(*vae_, preprocess_rgba(params.images[0], p.width, p.height)).packed;
  });
  // 3. Prompts (text-to-image template).
  auto [cond, uncond] = encode_t2i_conditions(p);
  // 4-6. Latents and the loop; the preview shows frame 0 (the composite estimate).
  LayeredJob job;
  job.width = p.width;
  job.height = p.height;
  job.layers = p.layers;
  job.steps = p.steps;
  job.true_cfg_scale = p.true_cfg_scale;
  job.cfg_normalize = params.cfg_normalize;
  job.batch = static_cast<int64_t>(p.prompts.size()) * p.images_per_prompt;
  const int64_t frame_tokens = (p.width / 16) * (p.height / 16);
  StepCallback inner =
      make_step_callback(progress, options_.preview, p.height, p.width, options_.preview_every);
  StepCallback on_step;
  if (inner)
    on_step = StepCallback(
        [inner, frame_tokens](int done, int total, const torch::Tensor& latents,
                              const torch::Tensor& x0) {
          return inner(done, total, latents, x0.defined() ? x0.slice(1, 0, frame_tokens) : x0);
        },
        inner.wants_x0);
  auto gen = make_generator(params.seed);
  torch::Tensor initial;
  auto latents = layered_latents(*transformer_, scheduler_config_, job, condition, cond, uncond,
                                 gen, dtype_, device_, on_step, trace ? &trace->denoise : nullptr,
                                 trace ? &initial : nullptr);
  if (trace) {
    trace->initial_latents = initial;
    trace->condition_latents = condition;
    trace->final_latents = latents;
  }
  // 7. Decode every layer.
  return decode_layers(*vae_, latents, job);
}

}  // namespace qwen::pipelines
