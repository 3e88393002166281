// Engine tests on the tiny fixture models (tests/plan/test_memory_modes*.cpp,
// tests/pipelines/test_quantize_on_load.cpp): quiet CPU engine options, the tiny text-to-image job
// and the bit-for-bit comparison of two runs' images. Header-only (gtest + pipelines/engine.h).
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "pipelines/engine.h"

namespace qwen::test {

// The model folder `dir` on the CPU with `threads` torch threads and the engine's log silenced.
inline EngineOptions cpu_engine_options(const std::string& dir, int threads) {
  EngineOptions o;
  o.model_dir = dir;
  o.device = "cpu";
  o.threads = threads;
  o.log = [](const std::string&) {};
  return o;
}

// A 48 x 32 text-to-image job of 2 steps with CFG (a blank negative prompt), seed 7.
inline RunParams tiny_t2i_job() {
  RunParams p;
  p.prompts = {"a red fox in the snow"};
  p.negative_prompts = {" "};
  p.width = 48;
  p.height = 32;
  p.steps = 2;
  p.seed = 7;
  return p;
}

// Same number of images, none missing, each of the same size and bytes.
inline void expect_same_images(const std::vector<ImageU8>& a, const std::vector<ImageU8>& b) {
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].width, b[i].width);
    EXPECT_EQ(a[i].height, b[i].height);
    EXPECT_TRUE(a[i].pixels == b[i].pixels) << "image " << i << " differs";
  }
}

}  // namespace qwen::test
