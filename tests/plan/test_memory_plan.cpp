// The memory planner (daemon/plan): choices and predicted peaks for the cards users own, on the
// real component sizes (metadata only), and the sizes read from the fixture models.
#include <gtest/gtest.h>

#include <cstdio>

#include "io/checkpoint.h"
#include "plan/memory_plan.h"
#include "plan/model_sizes.h"
#include "plan/real_sizes.h"

using namespace qwen::plan;
using qwen::plan::testing::Storage;

namespace {
JobShape job(int64_t side, bool cfg = true) {
  JobShape j;
  j.width = j.height = side;
  j.cfg = cfg;
  return j;
}
const char* storage_name(Storage s) {
  return s == Storage::Bf16 ? "bf16" : s == Storage::Fp8 ? "fp8" : "Q4";
}
}  // namespace

TEST(MemoryPlan, RealSizesMatchThePublishedModels) {
  const auto m = qwen::plan::testing::qwen_image(Storage::Bf16);
  // 20,430,401,088 parameters in bf16 = 40.9 GB; a third of them (img_mod / txt_mod) see only
  // the timestep: 40.9 -> 27.2 GB without them (issue #13).
  EXPECT_EQ(m.transformer.bytes(), 2 * int64_t(20430401088));
  EXPECT_NEAR(m.modulation_bytes() / 1e9, 13.6, 0.1);
  EXPECT_NEAR((m.transformer.bytes() - m.modulation_bytes()) / 1e9, 27.2, 0.1);
  const auto f = qwen::plan::testing::qwen_image(Storage::Fp8);
  EXPECT_NEAR(f.transformer.bytes() / 1e9, 20.4, 0.1);
  EXPECT_NEAR((f.transformer.bytes() - f.modulation_bytes()) / 1e9, 13.6, 0.1);
  EXPECT_NEAR(m.text_encoder.bytes() / 1e9, 14.1, 0.1);  // 16.6 GB file less lm_head, vision
  EXPECT_EQ(m.vae.bytes(), 2 * int64_t(126892531));
  EXPECT_EQ(m.block_bytes() * 60 + m.modulation_bytes() + m.non_block_bytes(),
            m.transformer.bytes());
}

// The cards users own (--vram N GiB) x the transformer files they download x the two default
// sizes, text to image with CFG, 50 steps: the mode auto picks, the resident blocks and the
// predicted peak (GiB, one decimal).
struct Row {
  int gib;
  Storage storage;
  int side;
  const char* mode;
  int64_t resident_blocks;
  double peak_gib;
  int fits;
};
const Row kTable[] = {
    {80, Storage::Bf16, 1024, "resident", 60, 54.3, 1},
    {80, Storage::Bf16, 1328, "resident", 60, 55.8, 1},
    {80, Storage::Fp8, 1024, "resident", 60, 35.3, 1},
    {80, Storage::Fp8, 1328, "resident", 60, 36.7, 1},
    {80, Storage::Q4, 1024, "resident", 60, 27.0, 1},
    {80, Storage::Q4, 1328, "resident", 60, 28.4, 1},
    {48, Storage::Bf16, 1024, "modulation", 60, 39.8, 1},
    {48, Storage::Bf16, 1328, "modulation", 60, 39.8, 1},
    {48, Storage::Fp8, 1024, "resident", 60, 35.3, 1},
    {48, Storage::Fp8, 1328, "resident", 60, 36.7, 1},
    {48, Storage::Q4, 1024, "resident", 60, 27.0, 1},
    {48, Storage::Q4, 1328, "resident", 60, 28.4, 1},
    {24, Storage::Bf16, 1024, "stream-cpu-text", 47, 23.0, 1},
    {24, Storage::Bf16, 1328, "stream-cpu-text", 44, 23.2, 1},
    {24, Storage::Fp8, 1024, "stream", 41, 23.1, 1},
    {24, Storage::Fp8, 1328, "stream", 41, 23.1, 1},
    {24, Storage::Q4, 1024, "modulation", 60, 21.6, 1},
    {24, Storage::Q4, 1328, "modulation", 60, 21.6, 1},
    {16, Storage::Bf16, 1024, "stream-cpu-text", 29, 15.4, 1},
    {16, Storage::Bf16, 1328, "stream-cpu-text", 25, 15.2, 1},
    {16, Storage::Fp8, 1024, "stream-cpu-text", 58, 15.4, 1},
    {16, Storage::Fp8, 1328, "cpu-text", 60, 15.0, 1},
    {16, Storage::Q4, 1024, "stream", 9, 15.5, 1},
    {16, Storage::Q4, 1328, "stream", 9, 15.5, 1},
    {12, Storage::Bf16, 1024, "stream-cpu-text", 21, 11.6, 1},
    {12, Storage::Bf16, 1328, "stream-cpu-text", 20, 11.5, 1},
    {12, Storage::Fp8, 1024, "stream-cpu-text", 40, 11.6, 1},
    {12, Storage::Fp8, 1328, "stream-cpu-text", 41, 11.5, 1},
    {12, Storage::Q4, 1024, "cpu-text", 60, 10.2, 1},
    {12, Storage::Q4, 1328, "stream-cpu-text", 59, 11.6, 1},
};

TEST(MemoryPlan, TableOfCardsFormatsAndSizes) {
  for (const auto& r : kTable) {
    SCOPED_TRACE(std::to_string(r.gib) + " GiB, " + storage_name(r.storage) + ", " +
                 std::to_string(r.side) + "^2");
    const auto m = qwen::plan::testing::qwen_image(r.storage);
    const int64_t budget = int64_t(r.gib) * kGiB;
    const auto p = plan_memory(m, job(r.side), budget);
    EXPECT_EQ(p.mode, r.mode);
    EXPECT_EQ(p.resident_blocks, r.resident_blocks);
    EXPECT_NEAR(double(p.peak) / kGiB, r.peak_gib, 0.051);
    EXPECT_EQ(p.fits, bool(r.fits));
    // Every plan that fits stays under the card, and the card's named mode gives the same plan.
    EXPECT_LE(p.peak, budget);
    const auto named = plan_memory(m, job(r.side), budget, p.mode);
    EXPECT_EQ(named.peak, p.peak);
    EXPECT_EQ(named.resident_blocks, p.resident_blocks);
    // Modes that keep more on the device than the chosen one need more memory.
    const auto resident = plan_memory(m, job(r.side), budget, "resident");
    EXPECT_GE(resident.peak, p.peak);
    if (p.mode != std::string("resident")) {
      EXPECT_FALSE(resident.fits);
      EXPECT_NE(resident.advice.find("--memory auto fits (mode " + p.mode), std::string::npos)
          << resident.advice;
    }
  }
}

TEST(MemoryPlan, IssueTargetsFit) {
  // A 24 GB card runs Qwen-Image (bf16 or fp8) at 1328^2; a 16 GB card runs it at all.
  for (Storage s : {Storage::Bf16, Storage::Fp8}) {
    EXPECT_TRUE(plan_memory(qwen::plan::testing::qwen_image(s), job(1328), 24 * kGiB).fits);
    EXPECT_TRUE(plan_memory(qwen::plan::testing::qwen_image(s), job(1328), 16 * kGiB).fits);
  }
  // An 80 GB card holds everything of one model, but not two bf16 models at once.
  const auto m = qwen::plan::testing::qwen_image(Storage::Bf16);
  const auto p = plan_memory(m, job(1328), 80 * kGiB);
  EXPECT_EQ(p.mode, "resident");
  EXPECT_GT(2 * (m.transformer.bytes() + m.text_encoder.bytes()), 80 * kGiB);
}

TEST(MemoryPlan, DecomposeCountsEveryFrame) {
  // Qwen-Image-Layered (issue #16): layers + 2 frames of the image size in one sequence; 640^2
  // with 4 layers is 6 x 1600 = 9,600 image tokens, more than 1328^2 (6,889).
  const auto m = qwen::plan::testing::qwen_image(Storage::Bf16);
  JobShape one = job(640), six = job(640);
  six.frames = 6;
  const int64_t text = one.text_tokens + 34;
  EXPECT_EQ(transformer_activation_bytes(m, six) * (1600 + text),
            transformer_activation_bytes(m, one) * (6 * 1600 + text));
  EXPECT_GT(transformer_activation_bytes(m, six), transformer_activation_bytes(m, job(1328)));
  // A 24 GB card runs it (the hang of QwenLM/Qwen-Image-Layered#30 in the reference), streaming
  // or with the modulation off the device; 1 GB does not, and the plan says so.
  const auto p = plan_memory(m, six, 24 * kGiB);
  EXPECT_TRUE(p.fits) << p.summary();
  EXPECT_NE(p.mode, "resident") << p.summary();
  const auto small = plan_memory(m, six, 1 * kGiB);
  EXPECT_FALSE(small.fits);
  EXPECT_FALSE(small.advice.empty());
}

TEST(MemoryPlan, StreamingKeepsAsManyBlocksAsFit) {
  const auto m = qwen::plan::testing::qwen_image(Storage::Bf16);
  int64_t last = -1;
  for (int gib : {12, 16, 20, 24, 32}) {
    const auto p = plan_memory(m, job(1024), int64_t(gib) * kGiB, "stream-cpu-text");
    ASSERT_TRUE(p.fits) << gib;
    EXPECT_GT(p.resident_blocks, last) << gib;
    last = p.resident_blocks;
    EXPECT_EQ(p.streamed_bytes_per_pass, (60 - p.resident_blocks) * m.block_bytes());
    // One more resident block would not fit.
    if (p.resident_blocks < 60) {
      const auto bigger =
          plan_memory(m, job(1024), p.peak + m.block_bytes() / 2, "stream-cpu-text");
      EXPECT_LE(bigger.resident_blocks, p.resident_blocks + 1);
    }
  }
}

TEST(MemoryPlan, NothingFitsNamesAFormatThatWould) {
  const auto m = qwen::plan::testing::qwen_image(Storage::Bf16);
  // Forced all-resident on a 24 GB card: bf16 does not fit, a GGUF file would.
  const auto r = plan_memory(m, job(1024), 24 * kGiB, "resident");
  EXPECT_FALSE(r.fits);
  EXPECT_EQ(r.requested, "resident");
  EXPECT_NE(r.advice.find("--memory auto fits"), std::string::npos) << r.advice;
  // Nothing fits 3 GiB at 1328^2 in bf16; a smaller file does.
  const auto a = plan_memory(m, job(1328), 3 * kGiB);
  EXPECT_FALSE(a.fits);
  EXPECT_NE(a.advice.find("the transformer as "), std::string::npos) << a.advice;
  EXPECT_NE(a.advice.find("--transformer FILE"), std::string::npos) << a.advice;
  // Nothing at all fits 1 GiB.
  const auto none = plan_memory(m, job(1328), 1 * kGiB);
  EXPECT_FALSE(none.fits);
  EXPECT_NE(none.advice.find("no transformer format fits"), std::string::npos) << none.advice;
}

TEST(MemoryPlan, LinesEndWithThePredictedPeak) {
  const auto m = qwen::plan::testing::qwen_image(Storage::Fp8);
  const auto p = plan_memory(m, job(1328), 24 * kGiB);
  const auto lines = p.lines(m);
  ASSERT_GE(lines.size(), 5u);
  EXPECT_EQ(lines.back(), "predicted peak: " + format_gib(p.peak));
  EXPECT_EQ(lines[1].rfind("transformer: " + std::string(to_string(p.transformer)), 0), 0u);
  EXPECT_EQ(lines[2].rfind("text_encoder: ", 0), 0u);
  EXPECT_EQ(lines[3].rfind("vae: ", 0), 0u);
  EXPECT_NE(p.summary().find(p.mode), std::string::npos);
}

TEST(MemoryPlan, ModesAndSizesParse) {
  const auto names = memory_mode_names();
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names.front(), "auto");
  for (const auto& n : names) EXPECT_NO_THROW(check_memory_mode(n));
  EXPECT_NO_THROW(check_memory_mode(""));
  try {
    check_memory_mode("tiny");
    FAIL() << "accepted an unknown mode";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'tiny'"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("stream"), std::string::npos);
  }
  EXPECT_THROW(plan_memory(qwen::plan::testing::qwen_image(Storage::Q4), job(1024), kGiB, "x"),
               std::invalid_argument);
  EXPECT_EQ(parse_size("24G"), 24 * kGiB);
  EXPECT_EQ(parse_size("24GB"), 24 * kGiB);
  EXPECT_EQ(parse_size("24gib"), 24 * kGiB);
  EXPECT_EQ(parse_size("16384M"), 16 * kGiB);
  EXPECT_EQ(parse_size("1.5G"), 3 * kGiB / 2);
  EXPECT_EQ(parse_size("1000"), 1000);
  for (const char* bad : {"", "G", "24X", "-1G", "0", "abc"})
    EXPECT_THROW(parse_size(bad), std::invalid_argument) << bad;
}

TEST(MemoryPlan, SizesFromTheFixtureModelsHeaders) {
  for (const char* name : {"qwen-image-tiny", "qwen-image-edit-2509-tiny"}) {
    const auto folder = qwen::io::ModelFolder::open(std::string(QWEN_FIXTURES) + "/models/" + name);
    const auto m = model_sizes(folder, 4);
    SCOPED_TRACE(name);
    EXPECT_TRUE(m.transformer.present());
    EXPECT_TRUE(m.text_encoder.present());
    EXPECT_TRUE(m.vae.present());
    EXPECT_EQ(m.edit, std::string(name).find("edit") != std::string::npos);
    EXPECT_GT(m.modulation_bytes(), 0);
    EXPECT_GT(m.block_bytes(), 0);
    EXPECT_EQ(m.block_bytes() * m.layers + m.modulation_bytes() + m.non_block_bytes(),
              m.transformer.bytes());
    // float32 compute: 4 bytes per element of every tensor.
    int64_t numel = 0;
    for (const auto& t : m.transformer.tensors) numel += t.numel;
    EXPECT_EQ(m.transformer.bytes(), 4 * numel);
    bool vision = false;
    for (const auto& t : m.text_encoder.tensors) {
      EXPECT_NE(t.name.rfind("lm_head.", 0), 0u) << t.name;
      vision |= t.name.rfind("model.visual.", 0) == 0;
    }
    EXPECT_EQ(vision, m.edit);
    const auto p = plan_memory(m, job(256), 2 * kGiB);
    EXPECT_TRUE(p.fits);
    EXPECT_EQ(p.mode, "resident");
  }
}
