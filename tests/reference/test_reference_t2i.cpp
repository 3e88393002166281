// Text-to-image through qwen::Engine vs diffusers' QwenImagePipeline on a fresh random tiny model
// folder every run: random prompt, optional negative prompt with true CFG, random size, 2-4 steps,
// random seed. The engine's 8-bit image must be within 1 level of round(reference image * 255),
// the fixture tests' PNG tolerance.
#include <gtest/gtest.h>

#include "pipeline_case.h"
#include "reference_case.h"

namespace {

TEST(ReferenceDifferential, TextToImageMatchesDiffusers) {
  QWEN_REFERENCE_CASE(ref, "t2i");
  qwen::reftest::expect_pipeline_matches(ref, "t2i", qwen::PipelineKind::Generate, ref.model_dir());
}

}  // namespace
