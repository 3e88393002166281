// QwenEngine::run_edit: QwenImageEditPipeline (one image) and QwenImageEditPlusPipeline (one or
// more images, one prompt) and QwenImageEditInpaintPipeline (one image + mask), spec §5.4-§5.6,
// in the reference geometry or the exact one (GeometryMode, geometry.h).
#include "image/convert.h"
#include "image/geometry.h"
#include "image/resample.h"
#include "pipelines/engine_impl.h"
#include "pipelines/geometry.h"
#include "pipelines/image_latents.h"
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
  const bool inpaint = params.pipeline == PipelineKind::EditInpaint;
  const bool exact = params.geometry == GeometryMode::Exact;
  if (!info_.can_edit || !processor_)
    throw EngineError("model '" + info_.model_dir + "' (" + info_.pipeline_class +
                      ") cannot edit: it has no vision processor (use an Edit model)");
  if (params.images.empty()) throw EngineError("edit needs at least one input image");
  if (!plus && params.images.size() != 1)
    throw EngineError(std::string(to_string(params.pipeline)) +
                      " takes exactly one image; use edit-plus for several");
  if (plus && p.prompts.size() != 1)
    throw EngineError("edit-plus takes exactly one prompt (got " +
                      std::to_string(p.prompts.size()) + ")");

  std::vector<ImageU8> rgb;
  for (const auto& img : params.images) {
    if (img.empty()) throw EngineError("an input image is empty");
    rgb.push_back(to_rgb(img));
  }
  if (inpaint) {
    if (!params.mask || params.mask->empty()) throw EngineError("edit-inpaint needs a mask image");
    if (params.mask->width != rgb[0].width || params.mask->height != rgb[0].height)
      throw EngineError("mask size " + std::to_string(params.mask->width) + "x" +
                        std::to_string(params.mask->height) + " differs from the image size " +
                        std::to_string(rgb[0].width) + "x" + std::to_string(rgb[0].height));
  }
  // Output size: the calculated ~1 MP size of the first (Edit, Edit-Inpaint) / last (Edit-Plus)
  // image, unless given (Edit, Edit-Plus in Reference mode only; Edit-Inpaint always uses the
  // calculated size, as the reference); floored to multiples of 16. In Exact mode the model runs on
  // the exact canvas of that image (same size as the calculated one) and the result is cropped and
  // resampled back to that image's width x height (geometry.h).
  const ImageU8& sizer = plus ? rgb.back() : rgb.front();
  const Size calc = with_context(
      "input image", [&] { return calculate_dimensions(kVaeArea, sizer.width, sizer.height); });
  const EditCanvas out_canvas = with_context("input image", [&] {
    return exact ? plan_exact(sizer.width, sizer.height, static_cast<int64_t>(kVaeArea))
                 : EditCanvas{};
  });
  LatentJob job;
  const bool user_size = !exact && !inpaint;
  job.width = floor_to_16(user_size && p.width_given ? p.width : calc.width);
  job.height = floor_to_16(user_size && p.height_given ? p.height : calc.height);
  if (exact && (out_canvas.model_w != job.width || out_canvas.model_h != job.height))
    throw EngineError("internal: exact canvas " + std::to_string(out_canvas.model_w) + "x" +
                      std::to_string(out_canvas.model_h) + " differs from the model size");
  job.steps = p.steps;
  job.true_cfg_scale = p.true_cfg_scale;
  job.batch = static_cast<int64_t>(p.prompts.size()) * p.images_per_prompt;

  auto gen = make_generator(params.seed);
  std::vector<ImageU8> vl_images;
  std::vector<ConditionLatents> conditions;
  torch::Tensor inpaint_latents, mask_latents;
  // Image -> a w x h model input: the reference resize or the exact canvas.
  auto to_size = [&](const ImageU8& img, double area, const Size& size) {
    if (!exact) return resize(img, size.width, size.height, ResampleFilter::Lanczos);
    return to_model(img, plan_exact(img.width, img.height, static_cast<int64_t>(area)));
  };
  with_context("input image", [&] {
    for (const auto& img : rgb) {
      if (plus) {
        const Size vl = calculate_dimensions(kConditionArea, img.width, img.height);
        const Size va = calculate_dimensions(kVaeArea, img.width, img.height);
        vl_images.push_back(to_size(img, kConditionArea, vl));
        if (exact)
          conditions.push_back(
              encode_condition(*vae_, preprocess_image(to_size(img, kVaeArea, va))));
        else
          conditions.push_back(encode_condition(*vae_, preprocess_image(img, va.width, va.height)));
      } else {
        // Edit v1 / Edit-Inpaint: the ~1 MP resized image is both the VL input and the VAE input.
        auto resized = to_size(img, kVaeArea, calc);
        vl_images.push_back(resized);
        if (inpaint)  // posterior SAMPLE: the first consumer of the generator (spec §5.6)
          inpaint_latents = encode_image_latents(*vae_, resized, calc.width, calc.height, gen);
        else
          conditions.push_back(encode_condition(*vae_, preprocess_image(resized)));
      }
    }
    return 0;
  });
  if (inpaint) {
    mask_latents = with_context("mask image", [&] {
      const ImageU8 m = exact ? mask_to_model(*params.mask, out_canvas) : *params.mask;
      return pack_mask_latents(m, job.width, job.height, job.batch, dtype_, device_);
    });
  }

  // Edit-Inpaint uses the Edit v1 template and processor input.
  const auto kind = plus ? EditTemplate::EditPlus : EditTemplate::Edit;
  auto encode = [&](const std::vector<std::string>& prompts) {
    std::vector<torch::Tensor> embeds, masks;
    // The edit encoder takes one prompt at a time; batch rows are stacked and zero-padded.
    std::vector<PromptEmbeds> parts;
    int64_t longest = 0;
    for (const auto& prompt : prompts) {
      parts.push_back(encode_prompt_edit(text_encoder_, *tokenizer_, prompt, vl_images, *processor_,
                                         kind, p.images_per_prompt));
      // A text encoder on the CPU (memory modes): embeddings to the device.
      parts.back().embeds = parts.back().embeds.to(device_);
      if (parts.back().mask.defined()) parts.back().mask = parts.back().mask.to(device_);
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
  // An offloaded text encoder (memory modes) is on the device for these encodes only.
  std::optional<TextEncoderOnDevice> on_device(std::in_place, text_encoder_host_.get());
  auto cond = with_context("prompt", [&] { return encode(p.prompts); });
  TextCondition uncond;
  if (p.do_cfg)
    uncond = with_context("negative prompt", [&] { return encode(p.negative_prompts); });
  on_device.reset();

  torch::Tensor latents;
  if (inpaint) {
    // The reference then encodes the masked image (another posterior sample from the generator)
    // for its 64-channel transformer, which never reads it; nothing draws from the generator after
    // that, so skipping it changes nothing.
    latents =
        edit_inpaint_latents(*transformer_, scheduler_config_, job, p.strength, inpaint_latents,
                             mask_latents, cond, uncond, gen, dtype_, device_,
                             make_step_callback(progress, options_.preview, job.height, job.width,
                                                options_.preview_every));
  } else {
    latents = edit_latents(*transformer_, scheduler_config_, job, conditions, cond, uncond, gen,
                           dtype_, device_,
                           make_step_callback(progress, options_.preview, job.height, job.width,
                                              options_.preview_every));
  }
  auto images = decode(latents, job.height, job.width);
  if (exact) {
    for (auto& img : images) img = from_model(img, out_canvas);
  }
  return images;
}

}  // namespace qwen::pipelines
