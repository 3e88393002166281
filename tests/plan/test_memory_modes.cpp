// Memory modes on the engine (issue #13): every placement gives the all-resident image bit for
// bit (the same arithmetic; on the CPU host memory stands in for the device, so the offload and
// streaming machinery of models/offload.h runs), and the machinery itself.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>

#include "common/engine_cases.h"
#include "common/fixtures.h"
#include "models/linear.h"
#include "models/offload.h"
#include "models/weights.h"
#include "pipelines/engine.h"
#include "pipelines/engine_impl.h"
#include "plan/memory_plan.h"

namespace {

using qwen::test::expect_same_images;
using qwen::test::tiny_t2i_job;

std::unique_ptr<qwen::Engine> open_engine(const std::string& dir, const std::string& memory) {
  qwen::EngineOptions o = qwen::test::cpu_engine_options(dir, 2);
  o.memory = memory;
  return qwen::Engine::open(o);
}

qwen::RunParams edit_job() {
  qwen::RunParams p;
  p.pipeline = qwen::PipelineKind::Edit;
  p.prompts = {"make it night"};
  p.negative_prompts = {" "};
  p.steps = 2;
  p.seed = 3;
  qwen::ImageU8 img(40, 32, 3);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i * 37 % 251);
  p.images = {img};
  return p;
}

}  // namespace

TEST(MemoryModes, EveryModeGivesTheResidentImageBitForBit) {
  struct Case {
    std::string dir;
    qwen::RunParams job;
    std::vector<std::string> modes;  // empty: all
  };
  // Every mode on text to image; on an edit model (vision tower in the text encoder, condition
  // latents) the two that move the most: text encoder offload and block streaming.
  for (const auto& c :
       {Case{qwen::test::tiny_model_dir(), tiny_t2i_job(), {}},
        Case{qwen::test::tiny_edit_model_dir(), edit_job(), {"offload-text", "stream-cpu-text"}}}) {
    SCOPED_TRACE(c.dir);
    auto resident = open_engine(c.dir, "resident");
    const auto want = resident->run(c.job);
    ASSERT_FALSE(want.empty());
    for (const auto& mode : qwen::plan::memory_modes()) {
      if (!c.modes.empty() &&
          std::find(c.modes.begin(), c.modes.end(), std::string(mode.name)) == c.modes.end())
        continue;
      SCOPED_TRACE(mode.name);
      auto engine = open_engine(c.dir, mode.name);
      auto& qe = dynamic_cast<qwen::pipelines::QwenEngine&>(*engine);
      EXPECT_EQ(qe.memory_plan().mode, mode.name);
      EXPECT_NE(engine->info().memory.find(mode.name), std::string::npos);
      // Two jobs: the placement is restored after each (weights back on the host).
      expect_same_images(engine->run(c.job), want);
      expect_same_images(engine->run(c.job), want);
      auto* hooks = qe.transformer()->placement();
      if (mode.transformer == qwen::plan::TransformerPlace::Resident) {
        EXPECT_EQ(hooks, nullptr);
        continue;
      }
      auto* placement = dynamic_cast<qwen::models::TransformerPlacement*>(hooks);
      ASSERT_NE(placement, nullptr);
      const int64_t layers = qe.transformer()->config().num_layers;
      EXPECT_GT(placement->stats().modulation_bytes, 0);
      if (mode.transformer == qwen::plan::TransformerPlace::Stream) {
        // On the CPU a stream mode streams every block, once per pass.
        EXPECT_EQ(placement->streamed_blocks(), layers);
        EXPECT_GT(placement->stats().streamed_bytes, 0);
      } else {
        EXPECT_EQ(placement->streamed_blocks(), 0);
        EXPECT_EQ(placement->stats().streamed_bytes, 0);
      }
    }
  }
}

TEST(MemoryModes, ModulationIsComputedOncePerJobNotPerStep) {
  auto engine = open_engine(qwen::test::tiny_model_dir(), "modulation");
  auto& qe = dynamic_cast<qwen::pipelines::QwenEngine&>(*engine);
  auto* placement =
      dynamic_cast<qwen::models::TransformerPlacement*>(qe.transformer()->placement());
  ASSERT_NE(placement, nullptr);
  engine->run(tiny_t2i_job());
  // The modulation weights crossed to the device once for the whole job (3 steps, CFG).
  const int64_t once = placement->stats().modulation_bytes;
  EXPECT_EQ(once, placement->host_bytes());
  EXPECT_EQ(qe.transformer()->modulation_computations(), 0);  // forward() never computed it
  engine->run(tiny_t2i_job());
  EXPECT_EQ(placement->stats().modulation_bytes, 2 * once);
}

TEST(MemoryModes, UnknownModeIsRefusedWithTheNames) {
  try {
    open_engine(qwen::test::tiny_model_dir(), "everything-on-the-gpu");
    FAIL() << "accepted an unknown memory mode";
  } catch (const qwen::EngineError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("everything-on-the-gpu"), std::string::npos) << m;
    EXPECT_NE(m.find("stream"), std::string::npos) << m;
  }
}

TEST(MemoryModes, AutoOnTheCpuKeepsEverythingResident) {
  auto engine = open_engine(qwen::test::tiny_model_dir(), "");
  auto& qe = dynamic_cast<qwen::pipelines::QwenEngine&>(*engine);
  EXPECT_EQ(qe.memory_plan().mode, "resident");
  EXPECT_EQ(qe.memory_plan().requested, "auto");
  EXPECT_EQ(qe.transformer()->placement(), nullptr);
}

TEST(HostWeights, UploadPointsAtCopiesAndReleaseRestores) {
  c10::InferenceMode inference;
  qwen::models::Linear lin(8, 4);
  lin->weight.copy_(torch::arange(32, torch::kFloat32).view({4, 8}));
  lin->bias.copy_(torch::arange(4, torch::kFloat32));
  const auto x = torch::randn({3, 8});
  const auto want = lin->forward(x);
  const void* host_ptr = lin->weight.data_ptr();
  qwen::models::HostWeights hw(*lin, torch::kCPU, /*pin=*/true);
  EXPECT_EQ(hw.tensors(), 2u);
  EXPECT_EQ(hw.bytes(), (32 + 4) * 4);
  EXPECT_EQ(lin->weight.data_ptr(), host_ptr);  // CPU: the host copy is the tensor itself
  hw.upload();
  hw.wait();
  EXPECT_TRUE(hw.on_device());
  EXPECT_NE(lin->weight.data_ptr(), host_ptr);  // a real copy stands in for the device
  EXPECT_TRUE(torch::equal(lin->forward(x), want));
  hw.release();
  EXPECT_FALSE(hw.on_device());
  EXPECT_EQ(lin->weight.data_ptr(), host_ptr);
  EXPECT_TRUE(torch::equal(lin->forward(x), want));
  // A filter takes only some tensors.
  qwen::models::HostWeights only_bias(*lin, torch::kCPU, false,
                                      [](const std::string& n) { return n == "bias"; });
  EXPECT_EQ(only_bias.tensors(), 1u);
}

TEST(MemoryModes, OutOfMemoryDuringAJobLeavesTheEngineServing) {
  auto engine = open_engine(qwen::test::tiny_model_dir(), "stream");
  auto& qe = dynamic_cast<qwen::pipelines::QwenEngine&>(*engine);
  const auto want = engine->run(tiny_t2i_job());
  ::setenv("QWEN_TEST_OOM_AT_STEP", "2", 1);
  try {
    engine->run(tiny_t2i_job());
    ::unsetenv("QWEN_TEST_OOM_AT_STEP");
    FAIL() << "the injected allocation failure did not surface";
  } catch (const qwen::EngineError& e) {
    ::unsetenv("QWEN_TEST_OOM_AT_STEP");
    const std::string m = e.what();
    EXPECT_NE(m.find("out of device memory at 48x32"), std::string::npos) << m;
    // A 48x32 single image is within the plan: the advice is a lighter memory mode.
    EXPECT_NE(m.find("memory mode"), std::string::npos) << m;
    EXPECT_NE(m.find("qwen-image plan"), std::string::npos) << m;
  }
  // Nothing of the failed job stays on the "device": the next job gives the same image.
  expect_same_images(engine->run(tiny_t2i_job()), want);
  auto* placement = dynamic_cast<qwen::models::TransformerPlacement*>(qe.transformer()->placement());
  ASSERT_NE(placement, nullptr);
  // A job larger than the plan's 1328x1328 single image is told to shrink.
  auto big = tiny_t2i_job();
  big.num_images_per_prompt = 2;
  ::setenv("QWEN_TEST_OOM_AT_STEP", "1", 1);
  try {
    engine->run(big);
    ::unsetenv("QWEN_TEST_OOM_AT_STEP");
    FAIL() << "the injected allocation failure did not surface";
  } catch (const qwen::EngineError& e) {
    ::unsetenv("QWEN_TEST_OOM_AT_STEP");
    EXPECT_NE(std::string(e.what()).find("fewer images per job"), std::string::npos) << e.what();
  }
}

// Streamed blocks (issue #13): every streamed block's copy starts ahead of it, the first streamed
// block of each pass included (at the end of the previous pass, or when the job starts), and no
// copy is left on the device after the job. On the CPU every block streams.
TEST(MemoryModes, FirstStreamedBlockOfEachPassIsPrefetched) {
  auto engine = open_engine(qwen::test::tiny_model_dir(), "stream");
  auto& qe = dynamic_cast<qwen::pipelines::QwenEngine&>(*engine);
  auto* placement =
      dynamic_cast<qwen::models::TransformerPlacement*>(qe.transformer()->placement());
  ASSERT_NE(placement, nullptr);
  const int64_t layers = qe.transformer()->config().num_layers;
  ASSERT_EQ(placement->streamed_blocks(), layers);
  auto job = tiny_t2i_job();  // 2 steps with CFG: 4 passes
  job.steps = 2;
  engine->run(job);
  EXPECT_EQ(placement->stats().unprefetched_blocks, 0);
  EXPECT_EQ(placement->stats().prefetched_blocks, 4 * layers);  // no copy made for nothing
  EXPECT_EQ(placement->blocks_on_device(), 0);
  // Without CFG: 2 passes.
  job.negative_prompts.clear();
  job.true_cfg_scale = 1.0f;
  engine->run(job);
  EXPECT_EQ(placement->stats().unprefetched_blocks, 0);
  EXPECT_EQ(placement->stats().prefetched_blocks, 6 * layers);
  EXPECT_EQ(placement->blocks_on_device(), 0);

  // A forward outside the denoising loop (no begin_passes, e.g. a bench) still works: its first
  // block is copied by the block itself, counted as a wait.
  placement->release_all();
  const auto before = placement->stats();
  placement->before_block(0);
  EXPECT_EQ(placement->stats().unprefetched_blocks, before.unprefetched_blocks + 1);
  EXPECT_EQ(placement->blocks_on_device(), layers > 1 ? 2 : 1);  // block 0 and block 1's prefetch
  placement->release_all();
  EXPECT_EQ(placement->blocks_on_device(), 0);

  // A job that fails part-way (injected out of memory at step 2) leaves no block on the device.
  ::setenv("QWEN_TEST_OOM_AT_STEP", "2", 1);
  EXPECT_THROW(engine->run(job), qwen::EngineError);
  ::unsetenv("QWEN_TEST_OOM_AT_STEP");
  EXPECT_EQ(placement->blocks_on_device(), 0);
}

// Weights a placement keeps in host memory load straight there (models::HostLoad, issue #13):
// from the file into one host buffer per component (plain host memory on the CPU, standing in for
// the page-locked memory of an accelerator), which the placement adopts without a copy; the
// load counts them as host bytes. Components kept on the device load as before.
TEST(MemoryModes, PlacedWeightsLoadStraightIntoHostMemory) {
  auto same_buffer = [](torch::nn::Module& m, const std::function<bool(const std::string&)>& of) {
    const void* buffer = nullptr;
    int64_t n = 0;
    for (const auto& p : m.named_parameters()) {
      if (!of(p.key())) continue;
      if (!buffer) buffer = p.value().storage().data();
      if (p.value().storage().data() != buffer) return int64_t(-1);
      ++n;
    }
    return n;
  };
  for (const auto& mode : qwen::plan::memory_modes()) {
    SCOPED_TRACE(mode.name);
    qwen::models::LoadMeter meter;
    auto engine = open_engine(qwen::test::tiny_model_dir(), mode.name);
    auto& qe = dynamic_cast<qwen::pipelines::QwenEngine&>(*engine);
    const bool offload = mode.text_encoder == qwen::plan::TextEncoderPlace::Offload;
    const bool placed = mode.transformer != qwen::plan::TransformerPlace::Resident;
    EXPECT_EQ(meter.host_bytes() > 0, offload || placed) << meter.host_bytes();
    EXPECT_EQ(meter.staged_bytes(), 0);  // nothing is staged on the CPU
    EXPECT_EQ(qe.text_encoder_host() != nullptr, offload);
    int64_t host_tensors = 0;
    if (offload) {
      EXPECT_GT(qe.text_encoder_host()->bytes(), 0);
      EXPECT_EQ(qe.text_encoder_host()->copied_bytes(), 0);
      // qe.text_encoder() is private: the host weights are the parameters' memory.
      host_tensors += static_cast<int64_t>(qe.text_encoder_host()->tensors());
    }
    if (placed) {
      auto* placement =
          dynamic_cast<qwen::models::TransformerPlacement*>(qe.transformer()->placement());
      ASSERT_NE(placement, nullptr);
      EXPECT_GT(placement->host_bytes(), 0);
      EXPECT_EQ(placement->copied_host_bytes(), 0);
      const bool stream = mode.transformer == qwen::plan::TransformerPlace::Stream;
      const int64_t resident = qe.memory_plan().resident_blocks;
      auto host = [&](const std::string& n) {
        return qwen::models::TransformerPlacement::host_tensor(n, stream, resident);
      };
      // Every host tensor of the transformer is a view of the load's one buffer.
      const int64_t n = same_buffer(*qe.transformer(), host);
      EXPECT_GT(n, 0);
      host_tensors += n;
      // ... and the resident ones are not in it.
      EXPECT_EQ(same_buffer(*qe.transformer(),
                            [&](const std::string& name) {
                              return host(name) || name == "proj_out.weight";
                            }),
                -1);
    }
    EXPECT_EQ(host_tensors > 0, offload || placed);
    // The images are the resident ones (EveryModeGivesTheResidentImageBitForBit); one job here
    // proves the adopted weights serve.
    EXPECT_FALSE(engine->run(tiny_t2i_job()).empty());
  }
}
