// Edit, Edit-Plus and Edit-Inpaint through qwen::Engine (Reference geometry) vs diffusers'
// QwenImageEditPipeline, QwenImageEditPlusPipeline and QwenImageEditInpaintPipeline with the image
// processor from_pretrained gives (the torchvision Qwen2VLImageProcessor; the engine's default),
// and Edit-Inpaint once more with the PIL one (Qwen2VLImageProcessorPil; the engine's
// vision_processor = pil), on a fresh random tiny edit model folder every run (random vision
// tower, processor/ of the fixture edit model): random input images whose sides are not multiples
// of 16 (Edit-Plus: 1-3 of different sizes), an explicit small output size or the reference's
// default (~1024x1024 of the input's aspect ratio; always for Edit-Inpaint), Edit-Inpaint: a
// random mask and strength; random prompt, optional negative prompt with true CFG, 2-3 steps,
// random seed. The engine's 8-bit image must be within 1 level of round(reference image * 255).
#include <gtest/gtest.h>

#include "pipeline_case.h"
#include "reference_case.h"

namespace {

TEST(ReferenceDifferential, EditMatchesDiffusers) {
  QWEN_REFERENCE_CASE(ref, "edit");
  qwen::reftest::expect_pipeline_matches(ref, "edit", qwen::PipelineKind::Edit,
                                         ref.edit_model_dir());
}

TEST(ReferenceDifferential, EditPlusMatchesDiffusers) {
  QWEN_REFERENCE_CASE(ref, "edit_plus");
  qwen::reftest::expect_pipeline_matches(ref, "edit_plus", qwen::PipelineKind::EditPlus,
                                         ref.edit_model_dir());
}

TEST(ReferenceDifferential, EditInpaintMatchesDiffusers) {
  QWEN_REFERENCE_CASE(ref, "edit_inpaint");
  qwen::reftest::expect_pipeline_matches(ref, "edit_inpaint", qwen::PipelineKind::EditInpaint,
                                         ref.edit_model_dir());
}

TEST(ReferenceDifferential, EditInpaintPilProcessorMatchesDiffusers) {
  QWEN_REFERENCE_CASE(ref, "edit_inpaint", "--edit-processor pil");
  ASSERT_EQ(ref.json()["options"]["edit_processor"], "pil");
  qwen::reftest::expect_pipeline_matches(ref, "edit_inpaint", qwen::PipelineKind::EditInpaint,
                                         ref.edit_model_dir(), "pil");
}

}  // namespace
