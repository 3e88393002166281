// Img2Img and Inpaint through qwen::Engine vs diffusers' QwenImageImg2ImgPipeline and
// QwenImageInpaintPipeline on a fresh random tiny model folder every run: a random input image
// whose sides are not multiples of 16 (resized by the pipeline to a random output size), random
// strength, inpaint: a random mask (rectangles, white = repaint, sometimes grey near the
// binarization threshold); random prompt, optional negative prompt with true CFG, 2-4 steps,
// random seed. The engine's 8-bit image must be within 1 level of round(reference image * 255).
#include <gtest/gtest.h>

#include "pipeline_case.h"
#include "reference_case.h"

namespace {

TEST(ReferenceDifferential, Img2ImgMatchesDiffusers) {
  QWEN_REFERENCE_CASE(ref, "img2img");
  qwen::reftest::expect_pipeline_matches(ref, "img2img", qwen::PipelineKind::Img2Img,
                                         ref.model_dir());
}

TEST(ReferenceDifferential, InpaintMatchesDiffusers) {
  QWEN_REFERENCE_CASE(ref, "inpaint");
  qwen::reftest::expect_pipeline_matches(ref, "inpaint", qwen::PipelineKind::Inpaint,
                                         ref.model_dir());
}

}  // namespace
