// QwenEngine::run_edit: QwenImageEditPipeline (one image) and QwenImageEditPlusPipeline (one or
// more images, one prompt), spec §5.4 / §5.5, geometry as the reference (GeometryMode::Reference).
#include "image/convert.h"
#include "image/geometry.h"
#include "image/resample.h"
#include "pipelines/engine_impl.h"
#include "pipelines/image_processing.h"
#include "pipelines/latents.h"
#include "pipelines/pipeline_edit.h"

namespace qwen::pipelines {

namespace {
constexpr double kVaeArea = 1024.0 * 1024.0;
constexpr double kConditionArea = 384.0 * 384.0;
}  // namespace

std::vector<ImageU8> QwenEngine::run_edit(const ResolvedParams& p, const RunParams& params,
                                          const ProgressFn& progress) {
  torch::NoGradGuard ng;
  const bool plus = params.pipeline == PipelineKind::EditPlus;
  if (!info_.can_edit || !processor_)
    throw EngineError("model '" + info_.model_dir + "' (" + info_.pipeline_class +
                      ") cannot edit: it has no vision processor (use an Edit model)");
  if (params.images.empty()) throw EngineError("edit needs at least one input image");
  if (!plus && params.images.size() != 1)
    throw EngineError("edit takes exactly one image; use edit-plus for several");
  if (plus && p.prompts.size() != 1)
    throw EngineError("edit-plus takes exactly one prompt (got " +
                      std::to_string(p.prompts.size()) + ")");
  if (params.geometry != GeometryMode::Reference)
    throw EngineError("only the reference geometry is supported for edits so far");

  std::vector<ImageU8> rgb;
  for (const auto& img : params.images) {
    if (img.empty()) throw EngineError("an input image is empty");
    rgb.push_back(to_rgb(img));
  }
  // Output size: the calculated ~1 MP size of the first (Edit) / last (Edit-Plus) image, unless
  // given; floored to multiples of 16.
  const ImageU8& sizer = plus ? rgb.back() : rgb.front();
  const Size calc = with_context(
      "input image", [&] { return calculate_dimensions(kVaeArea, sizer.width, sizer.height); });
  LatentJob job;
  job.width = floor_to_16(p.width_given ? p.width : calc.width);
  job.height = floor_to_16(p.height_given ? p.height : calc.height);
  job.steps = p.steps;
  job.true_cfg_scale = p.true_cfg_scale;
  job.batch = static_cast<int64_t>(p.prompts.size()) * p.images_per_prompt;

  std::vector<ImageU8> vl_images;
  std::vector<ConditionLatents> conditions;
  with_context("input image", [&] {
    for (const auto& img : rgb) {
      if (plus) {
        const Size vl = calculate_dimensions(kConditionArea, img.width, img.height);
        const Size va = calculate_dimensions(kVaeArea, img.width, img.height);
        vl_images.push_back(resize(img, vl.width, vl.height, ResampleFilter::Lanczos));
        conditions.push_back(encode_condition(*vae_, preprocess_image(img, va.width, va.height)));
      } else {
        // Edit v1: the ~1 MP resized image is both the VL input and the VAE input.
        auto resized = resize(img, calc.width, calc.height, ResampleFilter::Lanczos);
        vl_images.push_back(resized);
        conditions.push_back(encode_condition(*vae_, preprocess_image(resized)));
      }
    }
    return 0;
  });

  const auto kind = plus ? EditTemplate::EditPlus : EditTemplate::Edit;
  auto encode = [&](const std::vector<std::string>& prompts) {
    std::vector<torch::Tensor> embeds, masks;
    // The edit encoder takes one prompt at a time; batch rows are stacked and zero-padded.
    std::vector<PromptEmbeds> parts;
    int64_t longest = 0;
    for (const auto& prompt : prompts) {
      parts.push_back(encode_prompt_edit(text_encoder_, *tokenizer_, prompt, vl_images, *processor_,
                                         kind, p.images_per_prompt));
      longest = std::max(longest, parts.back().embeds.size(1));
    }
    if (parts.size() == 1) return to_condition(parts[0], dtype_);
    bool any_mask = false;
    for (auto& pe : parts) {
      const int64_t s = pe.embeds.size(1);
      auto mask = pe.mask.defined()
                      ? pe.mask
                      : torch::ones({pe.embeds.size(0), s},
                                    torch::TensorOptions().dtype(torch::kInt64).device(device_));
      if (s < longest) {
        pe.embeds = torch::constant_pad_nd(pe.embeds, {0, 0, 0, longest - s});
        mask = torch::constant_pad_nd(mask, {0, longest - s});
        any_mask = true;
      }
      any_mask = any_mask || pe.mask.defined();
      embeds.push_back(pe.embeds);
      masks.push_back(mask);
    }
    PromptEmbeds out{torch::cat(embeds, 0), any_mask ? torch::cat(masks, 0) : torch::Tensor()};
    return to_condition(out, dtype_);
  };
  auto cond = with_context("prompt", [&] { return encode(p.prompts); });
  TextCondition uncond;
  if (p.do_cfg)
    uncond = with_context("negative prompt", [&] { return encode(p.negative_prompts); });

  auto gen = make_generator(params.seed);
  auto latents = edit_latents(*transformer_, scheduler_config_, job, conditions, cond, uncond, gen,
                              dtype_, device_, make_step_callback(progress));
  return decode(latents, job.height, job.width);
}

}  // namespace qwen::pipelines
