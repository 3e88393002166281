// Memory modes on the Qwen-Image-2.1 engine (issue #15 "Memory", issue #13's machinery): every
// mode gives the all-resident image bit for bit on a fresh random tiny 2.1 model (CPU: host memory
// stands in for the device, so the text-encoder offload, the transformer swap around the encode
// and the block streaming of models/block_stream.h all run), for text to image and for a CFG edit
// with an RGBA reference, with and without the KV cache. The tiny model comes from the live
// reference's generator (gen_qwen21_pipeline.py --parts model: the diffusers save_pretrained
// folder, no reference run).
#include <gtest/gtest.h>

#include <algorithm>

#include "common/engine_cases.h"
#include "models/block_stream.h"
#include "pipelines/engine.h"
#include "pipelines/engine_qwen21.h"
#include "plan/memory_plan.h"
#include "reference_case.h"

namespace {

std::unique_ptr<qwen::Engine> open_engine(const std::string& dir, const std::string& memory) {
  qwen::EngineOptions o = qwen::test::cpu_engine_options(dir, 1);
  o.memory = memory;
  return qwen::Engine::open(o);
}

std::vector<qwen::RunParams> jobs() {
  qwen::RunParams t2i;
  t2i.prompts = {"a lighthouse at dusk"};
  t2i.width = 64;
  t2i.height = 96;
  t2i.steps = 2;
  t2i.seed = 11;
  qwen::RunParams edit;
  edit.pipeline = qwen::PipelineKind::Edit;
  edit.prompts = {"make the sky green"};
  edit.negative_prompts = {"blurry"};
  edit.true_cfg_scale = 3.0f;
  edit.output_resolution = 64;
  edit.steps = 2;
  edit.seed = 5;
  qwen::ImageU8 img(48, 40, 4);
  for (size_t i = 0; i < img.pixels.size(); ++i)
    img.pixels[i] = static_cast<uint8_t>(i % 4 == 3 ? (i / 4) % 3 * 120 : i * 37 % 251);
  edit.images = {img};
  qwen::RunParams uncached = edit;
  uncached.kv_cache = false;
  return {t2i, edit, uncached};
}

// Every 2.1 result is RGBA.
void expect_same_images(const std::vector<qwen::ImageU8>& a, const std::vector<qwen::ImageU8>& b) {
  qwen::test::expect_same_images(a, b);
  for (const auto& image : a) EXPECT_EQ(image.channels, 4);
}

}  // namespace

TEST(MemoryModes21, EveryModeGivesTheResidentImageBitForBit) {
  QWEN_REFERENCE_CASE(ref, "model", "", "gen_qwen21_pipeline.py");
  const std::string dir = ref.model_dir();
  auto resident = open_engine(dir, "resident");
  const auto all = jobs();
  std::vector<std::vector<qwen::ImageU8>> want;
  for (const auto& j : all) {
    want.push_back(resident->run(j));
    ASSERT_FALSE(want.back().empty());
  }
  resident.reset();
  for (const auto& mode : qwen::plan::memory_modes()) {
    SCOPED_TRACE(mode.name);
    auto engine = open_engine(dir, mode.name);
    auto& qe = dynamic_cast<qwen::pipelines::Qwen21Engine&>(*engine);
    EXPECT_EQ(qe.memory_plan().mode, mode.name);
    EXPECT_EQ(qe.memory_plan().requested, mode.name);
    EXPECT_NE(engine->info().memory.find(mode.name), std::string::npos) << engine->info().memory;
    // Every job twice: the placement is restored after each (weights back where they live).
    for (int round = 0; round < 2; ++round)
      for (size_t i = 0; i < all.size(); ++i) {
        SCOPED_TRACE("job " + std::to_string(i));
        expect_same_images(engine->run(all[i]), want[i]);
      }
    EXPECT_FALSE(qe.last_job_kv_cache());  // the last job asked for none
    const bool offload = mode.text_encoder == qwen::plan::TextEncoderPlace::Offload;
    EXPECT_EQ(qe.text_encoder_host() != nullptr, offload);
    if (offload) {
      EXPECT_FALSE(qe.text_encoder_host()->on_device());  // released after encoding
    }
    auto* hooks = qe.transformer()->block_hooks();
    if (mode.transformer == qwen::plan::TransformerPlace::Stream) {
      auto* streamer = dynamic_cast<qwen::models::BlockStreamer*>(hooks);
      ASSERT_NE(streamer, nullptr);
      // On the CPU a stream mode streams every block, once per pass.
      EXPECT_EQ(streamer->streamed_blocks(), qe.transformer()->config().num_layers);
      EXPECT_GT(streamer->stats().streamed_bytes, 0);
      EXPECT_EQ(qe.transformer_host(), nullptr);
    } else {
      // Qwen-Image-2.1 has no per-block modulation weights: `modulation` keeps it resident.
      EXPECT_EQ(hooks, nullptr);
      EXPECT_EQ(qe.memory_plan().transformer, qwen::plan::TransformerPlace::Resident);
      // The offloaded encoder takes turns with the transformer (the 24 GB plan's swap).
      EXPECT_EQ(qe.transformer_host() != nullptr, offload);
      if (offload) {
        EXPECT_TRUE(qe.transformer_host()->on_device());
      }
    }
  }
  // Auto on the CPU keeps everything resident; an unknown mode is refused with the names.
  {
    auto engine = open_engine(dir, "");
    auto& qe = dynamic_cast<qwen::pipelines::Qwen21Engine&>(*engine);
    EXPECT_EQ(qe.memory_plan().mode, "resident");
    EXPECT_EQ(qe.memory_plan().requested, "auto");
    EXPECT_EQ(qe.transformer()->block_hooks(), nullptr);
    EXPECT_EQ(qe.text_encoder_host(), nullptr);
    expect_same_images(engine->run(all[1]), want[1]);
    EXPECT_TRUE(qe.last_job_kv_cache());
  }
  try {
    open_engine(dir, "everything-on-the-gpu");
    FAIL() << "accepted an unknown memory mode";
  } catch (const qwen::EngineError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("everything-on-the-gpu"), std::string::npos) << m;
    EXPECT_NE(m.find("stream-cpu-text"), std::string::npos) << m;
  }
}

// Streamed blocks of the 2.1 transformer (models/block_stream.h, the same streamer as the 20B
// one's): every streamed block's copy starts ahead of it, the first streamed block of each pass
// included (at the end of the previous pass, or when the loop starts), exactly passes x blocks
// copies, and no copy is left on the device after a job, a cancelled job or a forward outside the
// loop. The streamed blocks were loaded straight into host memory (models::HostLoad): the
// streamer copied none. On the CPU every block streams.
TEST(MemoryModes21, FirstStreamedBlockOfEachPassIsPrefetched) {
  QWEN_REFERENCE_CASE(ref, "model", "", "gen_qwen21_pipeline.py");
  auto engine = open_engine(ref.model_dir(), "stream");
  auto& qe = dynamic_cast<qwen::pipelines::Qwen21Engine&>(*engine);
  auto* streamer = dynamic_cast<qwen::models::BlockStreamer*>(qe.transformer()->block_hooks());
  ASSERT_NE(streamer, nullptr);
  const int64_t layers = qe.transformer()->config().num_layers;
  ASSERT_EQ(streamer->streamed_blocks(), layers);
  EXPECT_GT(streamer->host_bytes(), 0);
  EXPECT_EQ(streamer->copied_host_bytes(), 0);
  // The offloaded text encoder too.
  ASSERT_NE(qe.text_encoder_host(), nullptr);
  EXPECT_EQ(qe.text_encoder_host()->copied_bytes(), 0);

  const auto all = jobs();
  int64_t passes = 0;
  for (const auto& [job, job_passes] : {std::pair{all[0], 2},     // 2 steps, no CFG
                                        std::pair{all[1], 4},     // 2 steps, CFG, KV cache
                                        std::pair{all[2], 4}}) {  // 2 steps, CFG, no cache
    engine->run(job);
    passes += job_passes;
    EXPECT_EQ(streamer->stats().unprefetched_blocks, 0);
    EXPECT_EQ(streamer->stats().prefetched_blocks, passes * layers);  // no copy for nothing
    EXPECT_EQ(streamer->blocks_on_device(), 0);
  }

  // Cancelled after the first step: the next pass's first block was already copied in; the
  // loop's end lets it go.
  auto cancelled = all[1];
  EXPECT_THROW(engine->run(cancelled, [](const qwen::ProgressInfo&) { return false; }),
               qwen::CancelledError);
  EXPECT_EQ(streamer->blocks_on_device(), 0);
  EXPECT_EQ(streamer->stats().unprefetched_blocks, 0);

  // A forward outside the denoising loop (no begin_passes, e.g. a bench) still works: its first
  // block is copied by the block itself, counted as a wait.
  const auto before = streamer->stats();
  streamer->before_block(0);
  EXPECT_EQ(streamer->stats().unprefetched_blocks, before.unprefetched_blocks + 1);
  EXPECT_EQ(streamer->blocks_on_device(), layers > 1 ? 2 : 1);  // block 0 and block 1's prefetch
  streamer->release_all();
  EXPECT_EQ(streamer->blocks_on_device(), 0);
}
