// The memory planner (daemon/plan): choices and predicted peaks for the cards users own, on the
// real component sizes (metadata only), and the sizes read from the fixture models.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "plan/memory_plan.h"
#include "plan/model_sizes.h"
#include "plan/real_sizes.h"
#include "plan/real_sizes21.h"

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

// Quantise-on-load (`--quantize fp8`, plan/model_sizes.h quantize_on_load) of the released bf16
// transformer: its block Linears at 1 byte per element plus a scale, the small top-level layers in
// bf16 (the fp8 files of kTable also quantise txt_in, the time embedder and norm_out: 40 MB more).
namespace {
ModelSizes quantized_on_load(ModelSizes m) {
  m.transformer = quantize_on_load(m.transformer, qwen::io::QuantizeMode::Fp8);
  m.quantize_fp8 = true;
  return m;
}

struct QuantRow {
  int gib;
  int side;
  const char* mode;
  int64_t resident_blocks;
  double peak_gib;
};
const QuantRow kQuantizeFp8Table[] = {
    {80, 1024, "resident", 60, 35.3},        {80, 1328, "resident", 60, 36.8},
    {48, 1024, "resident", 60, 35.3},        {48, 1328, "resident", 60, 36.8},
    {24, 1024, "stream", 41, 23.1},          {24, 1328, "stream", 41, 23.1},
    {16, 1024, "stream-cpu-text", 58, 15.4}, {16, 1328, "cpu-text", 60, 15.1},
    {12, 1024, "stream-cpu-text", 40, 11.6}, {12, 1328, "stream-cpu-text", 41, 11.5},
};
}  // namespace

TEST(MemoryPlan, QuantizeFp8OnLoadTable) {
  const auto bf16 = qwen::plan::testing::qwen_image(Storage::Bf16);
  const auto m = quantized_on_load(bf16);
  const auto file = qwen::plan::testing::qwen_image(Storage::Fp8);
  // 20.4 GB of fp8 block weights + scales; the top-level layers stay bf16.
  EXPECT_NEAR(m.transformer.bytes() / 1e9, 20.5, 0.1);
  EXPECT_GT(m.transformer.bytes(), file.transformer.bytes());
  EXPECT_LT(m.transformer.bytes() - file.transformer.bytes(), 50 * 1000 * 1000);
  EXPECT_EQ(m.modulation_bytes(), file.modulation_bytes());
  EXPECT_EQ(m.transformer.format, "F8_E4M3*scale (quantised at load)");
  for (const auto& r : kQuantizeFp8Table) {
    SCOPED_TRACE(std::to_string(r.gib) + " GiB, --quantize fp8, " + std::to_string(r.side) + "^2");
    const int64_t budget = int64_t(r.gib) * kGiB;
    const auto p = plan_memory(m, job(r.side), budget);
    EXPECT_TRUE(p.fits) << p.advice;
    EXPECT_EQ(p.mode, r.mode);
    EXPECT_EQ(p.resident_blocks, r.resident_blocks);
    EXPECT_NEAR(double(p.peak) / kGiB, r.peak_gib, 0.051);
    EXPECT_LE(p.peak, budget);
    // Never more than the bf16 files need, and within 0.1 GiB of the fp8 file's plan.
    // Never slower than the bf16 files' plan, and the fp8 file's plan within 0.1 GiB.
    EXPECT_LE(p.cost_seconds, plan_memory(bf16, job(r.side), budget).cost_seconds);
    EXPECT_NEAR(double(p.peak) / kGiB, double(plan_memory(file, job(r.side), budget).peak) / kGiB,
                0.1);
  }
}

TEST(MemoryPlan, NothingFitsNamesQuantizeFp8WhenItWould) {
  const auto bf16 = qwen::plan::testing::qwen_image(Storage::Bf16);
  const int64_t budget = 3 * kGiB;  // bf16 does not fit (3.1 GiB), --quantize fp8 does (2.8)
  const auto p = plan_memory(bf16, job(1328), budget);
  EXPECT_FALSE(p.fits);
  EXPECT_NE(p.advice.find("--quantize fp8 ("), std::string::npos) << p.advice;
  EXPECT_NE(p.advice.find("; or the transformer as "), std::string::npos) << p.advice;
  const auto q = plan_memory(quantized_on_load(bf16), job(1328), budget);
  EXPECT_TRUE(q.fits) << q.advice;
  EXPECT_NE(p.advice.find("predicted peak " + format_gib(q.peak)), std::string::npos) << p.advice;
  // Already quantised on load, or a file stored fp8: not suggested again.
  const auto smaller = budget - kGiB;
  for (const auto& m : {quantized_on_load(bf16), qwen::plan::testing::qwen_image(Storage::Fp8)}) {
    const auto r = plan_memory(m, job(1328), smaller);
    EXPECT_FALSE(r.fits);
    EXPECT_EQ(r.advice.find("--quantize"), std::string::npos) << r.advice;
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

// ---- Qwen-Image-2.1 (issue #15 "Memory: a 24 GB card in bf16, text encoder offloaded after
// encoding") on the released component sizes -------------------------------------------------

namespace {
JobShape job21(int64_t references, bool cfg) {
  JobShape j;
  j.width = j.height = 1024;
  j.cfg = cfg;
  j.steps = 40;
  j.condition_images = references;
  return j;
}
}  // namespace

TEST(MemoryPlan21, RealSizesMatchTheReleasedModel) {
  const auto m = qwen::plan::testing::qwen_image21(Storage::Bf16);
  // Transformer21Config::parameter_count() of the defaults: the "7.1B" DiT.
  EXPECT_EQ(m.transformer.bytes(), 2 * int64_t(7115124736));
  EXPECT_EQ(m.modulation_bytes(), 0);  // one shared modulation, nothing per block
  EXPECT_EQ(m.block_bytes() * 32 + m.non_block_bytes(), m.transformer.bytes());
  // Qwen3-VL-8B without lm_head: 7.57 B language model + 0.58 B vision tower.
  EXPECT_NEAR(m.text_encoder.bytes() / 1e9, 16.3, 0.2);
  // The transformer and the text encoder do not fit on a 24 GB card together.
  EXPECT_GT(m.transformer.bytes() + m.text_encoder.bytes(), 24 * kGiB);
}

TEST(MemoryPlan21, KvCacheOfTenReferencesIsTheNotesTwentyOneAndAHalfGigabytes) {
  const auto m = qwen::plan::testing::qwen_image21(Storage::Bf16);
  JobShape j = job21(10, false);
  j.text_tokens = 128;
  // 2 (k, v) x 32 blocks x (142 text + 10 x 4,096 reference tokens) x 4096 x 2 bytes.
  EXPECT_NEAR(kv_cache_bytes(m, j) / 1e9, 21.5, 0.2);
  j.cfg = true;  // one cache per CFG branch
  EXPECT_NEAR(kv_cache_bytes(m, j) / 1e9, 43.0, 0.4);
  // Other models have no KV cache.
  EXPECT_EQ(kv_cache_bytes(qwen::plan::testing::qwen_image(Storage::Bf16), j), 0);
}

TEST(MemoryPlan21, TwentyFourGigabytesFitWithTheTextEncoderOffloaded) {
  const auto m = qwen::plan::testing::qwen_image21(Storage::Bf16);
  for (int64_t refs : {0, 1}) {
    for (bool cfg : {false, true}) {
      SCOPED_TRACE("references " + std::to_string(refs) + (cfg ? ", CFG" : ""));
      const auto j = job21(refs, cfg);
      // Everything resident does not fit.
      EXPECT_FALSE(plan_memory(m, j, 24 * kGiB, "resident").fits);
      const auto p = plan_memory(m, j, 24 * kGiB, "offload-text");
      EXPECT_TRUE(p.fits) << p.advice;
      EXPECT_EQ(p.transformer, TransformerPlace::Resident);
      EXPECT_EQ(p.text_encoder, TextEncoderPlace::Offload);
      EXPECT_TRUE(p.swap_transformer);  // off the device while the text encoder encodes
      EXPECT_TRUE(p.kv_cache);
      EXPECT_LE(p.peak, 24 * kGiB - 24 * kGiB / 32);
      // Auto takes it (the cheapest that fits: no streaming, no CPU encoding).
      const auto a = plan_memory(m, j, 24 * kGiB);
      EXPECT_TRUE(a.fits);
      EXPECT_EQ(a.mode, "offload-text");
      const auto lines = a.lines(m);
      EXPECT_EQ(lines.back(), "predicted peak: " + format_gib(a.peak));
      bool kv_line = false;
      for (const auto& l : lines) kv_line |= l.rfind("kv_cache: on (", 0) == 0;
      EXPECT_TRUE(kv_line);
    }
  }
  // 16 GB: the 13.3 GiB transformer streams.
  const auto s = plan_memory(m, job21(1, false), 16 * kGiB);
  EXPECT_TRUE(s.fits) << s.advice;
  EXPECT_EQ(s.transformer, TransformerPlace::Stream);
  EXPECT_GT(s.resident_blocks, 0);
  EXPECT_LT(s.resident_blocks, 32);
  EXPECT_EQ(s.lines(m)[1].find("img_mod"), std::string::npos);  // no such weights in 2.1
}

// Qwen-Image-2.1's bf16 DiT quantised on load: 24 and 16 GB cards at 1024^2 with one reference
// and CFG (the engine's planned job).
TEST(MemoryPlan21, QuantizeFp8OnLoad) {
  const auto bf16 = qwen::plan::testing::qwen_image21(Storage::Bf16);
  const auto m = quantized_on_load(bf16);
  EXPECT_NEAR(m.transformer.bytes() / 1e9, 7.25, 0.01);  // from 14.2 GB
  struct Row {
    int gib;
    int64_t refs;
    bool cfg;
    const char* mode;
    int64_t resident_blocks;
    bool swap;
    double peak_gib;
  };
  // 24 GB: the 7.25 GB DiT and the 16.3 GB text encoder still do not fit together (the swap
  // stays); 16 GB: the DiT stays resident, the text encoder encodes on the CPU.
  for (const Row& r : {Row{24, 0, false, "offload-text", 32, true, 16.7},
                       Row{24, 1, true, "offload-text", 32, true, 18.5},
                       Row{16, 0, false, "cpu-text", 32, false, 10.1},
                       Row{16, 1, true, "cpu-text", 32, false, 14.4}}) {
    SCOPED_TRACE(std::to_string(r.gib) + " GiB, references " + std::to_string(r.refs) +
                 (r.cfg ? ", CFG" : ""));
    const auto p = plan_memory(m, job21(r.refs, r.cfg), int64_t(r.gib) * kGiB);
    EXPECT_TRUE(p.fits) << p.advice;
    EXPECT_EQ(p.mode, r.mode);
    EXPECT_EQ(p.resident_blocks, r.resident_blocks);
    EXPECT_EQ(p.swap_transformer, r.swap);
    EXPECT_NEAR(double(p.peak) / kGiB, r.peak_gib, 0.051);
    EXPECT_LE(p.cost_seconds,
              plan_memory(bf16, job21(r.refs, r.cfg), int64_t(r.gib) * kGiB).cost_seconds);
  }
}

TEST(MemoryPlan21, EightyGigabytesRunEverythingResident) {
  const auto m = qwen::plan::testing::qwen_image21(Storage::Bf16);
  for (int64_t refs : {0, 1, 10}) {
    SCOPED_TRACE(refs);
    const auto p = plan_memory(m, job21(refs, false), 80 * kGiB);
    EXPECT_TRUE(p.fits);
    EXPECT_EQ(p.mode, "resident");
    EXPECT_FALSE(p.swap_transformer);
    EXPECT_TRUE(p.kv_cache);
  }
}

TEST(MemoryPlan21, KvCacheIsTurnedOffWithAPlanLineWhenItDoesNotFit) {
  const auto m = qwen::plan::testing::qwen_image21(Storage::Bf16);
  const auto j = job21(10, false);
  const auto p = plan_memory(m, j, 24 * kGiB);
  ASSERT_TRUE(p.fits) << p.advice;
  EXPECT_FALSE(p.kv_cache);
  EXPECT_EQ(p.kv_cache_bytes, kv_cache_bytes(m, j));
  bool off = false;
  for (const auto& l : p.lines(m)) off |= l.rfind("kv_cache: off (it would need ", 0) == 0;
  EXPECT_TRUE(off);
  EXPECT_EQ(p.summary().find("kv cache"), std::string::npos);
  // Planned without the cache (--no-kv-cache): the same peak, and the line says why it is off.
  JobShape no = j;
  no.kv_cache = false;
  const auto q = plan_memory(m, no, 24 * kGiB);
  EXPECT_EQ(q.peak, p.peak);
  EXPECT_EQ(q.kv_cache_bytes, 0);
  bool not_asked = false;
  for (const auto& l : q.lines(m)) not_asked |= l.rfind("kv_cache: off (not asked for", 0) == 0;
  EXPECT_TRUE(not_asked);
}

TEST(MemoryPlan21, ModulationModeKeepsTheTransformerResident) {
  const auto m = qwen::plan::testing::qwen_image21(Storage::Bf16);
  for (const char* mode : {"modulation", "cpu-text"}) {
    const auto p = plan_memory(m, job21(1, false), 80 * kGiB, mode);
    EXPECT_EQ(p.mode, mode);
    EXPECT_EQ(p.transformer, TransformerPlace::Resident);
    EXPECT_EQ(p.modulation_cache_bytes, 0);
    EXPECT_EQ(p.transformer_device_bytes, m.transformer.bytes());
  }
}

namespace {
// A safetensors file whose header lists `shapes` in BF16 and whose data is a hole (the file is
// resized, not written: the released shapes take no disk).
void write_header_only(const std::string& path, const qwen::plan::testing::Shapes& shapes) {
  nlohmann::json h = nlohmann::json::object();
  uint64_t off = 0;
  for (const auto& [name, shape] : shapes) {
    uint64_t n = 2;
    for (auto d : shape) n *= static_cast<uint64_t>(d);
    h[name] = {{"dtype", "BF16"}, {"shape", shape}, {"data_offsets", {off, off + n}}};
    off += n;
  }
  std::string text = h.dump();
  while (text.size() % 8) text += ' ';
  {
    std::ofstream f(path, std::ios::binary);
    const uint64_t len = text.size();
    f.write(reinterpret_cast<const char*>(&len), 8);
    f << text;
  }
  std::filesystem::resize_file(path, 8 + text.size() + off);
}
void write_json(const std::string& path, const nlohmann::json& j) {
  std::ofstream(path) << j.dump(2);
}
}  // namespace

// `qwen-image plan`'s path (io::ModelFolder -> plan::model_sizes, headers only) on a
// QwenImage21Pipeline folder with the released tensor shapes (header-only safetensors): the sizes
// and the 24 GB / 80 GB plans of issue #15.
TEST(MemoryPlan21, HeaderOnlyFolderOfTheReleasedShapes) {
  namespace fs = std::filesystem;
  using qwen::plan::testing::Shapes;
  const fs::path dir = fs::path(::testing::TempDir()) / "qwen21_header_only";
  fs::remove_all(dir);
  for (const char* c : {"transformer", "text_encoder", "vae", "scheduler"})
    fs::create_directories(dir / c);
  write_json((dir / "model_index.json").string(),
             {{"_class_name", "QwenImage21Pipeline"},
              {"scheduler", {"diffusers", "FlowMatchEulerDiscreteScheduler"}},
              {"text_encoder", {"transformers", "Qwen3VLForConditionalGeneration"}},
              {"transformer", {"diffusers", "QwenImage21Transformer2DModel"}},
              {"vae", {"diffusers", "AutoencoderKLQwenImage21"}}});
  write_json((dir / "transformer/config.json").string(),
             {{"_class_name", "QwenImage21Transformer2DModel"},
              {"num_layers", 32},
              {"attention_head_dim", 128},
              {"num_attention_heads", 32},
              {"context_in_dim", 4096},
              {"in_channels", 64},
              {"mlp_ratio", 3},
              {"patch_size", 1}});
  write_header_only((dir / "transformer/diffusion_pytorch_model.safetensors").string(),
                    qwen::plan::testing::qwen21_transformer_shapes());
  write_json(
      (dir / "text_encoder/config.json").string(),
      {{"architectures", {"Qwen3VLForConditionalGeneration"}},
       {"model_type", "qwen3_vl"},
       {"text_config",
        {{"hidden_size", 4096},
         {"intermediate_size", 12288},
         {"num_hidden_layers", 36},
         {"num_attention_heads", 32},
         {"num_key_value_heads", 8},
         {"head_dim", 128},
         {"vocab_size", 151936}}},
       {"vision_config", {{"depth", 27}, {"hidden_size", 1152}, {"out_hidden_size", 4096}}}});
  write_header_only((dir / "text_encoder/model.safetensors").string(),
                    qwen::plan::testing::qwen3vl_8b_shapes(/*with_lm_head=*/true));
  write_json((dir / "vae/config.json").string(), {{"_class_name", "AutoencoderKLQwenImage21"}});
  write_header_only((dir / "vae/diffusion_pytorch_model.safetensors").string(),
                    Shapes{{"encoder.conv_in.weight", {96, 4, 3, 3, 3}},
                           {"decoder.conv_out.weight", {4, 96, 3, 3, 3}}});
  write_json((dir / "scheduler/scheduler_config.json").string(),
             {{"_class_name", "FlowMatchEulerDiscreteScheduler"}});

  const auto folder = qwen::io::ModelFolder::open(dir.string());
  const auto m = model_sizes(folder, 2);
  EXPECT_TRUE(m.qwen21);
  EXPECT_TRUE(m.edit);
  EXPECT_EQ(m.dim, 4096);
  EXPECT_EQ(m.layers, 32);
  EXPECT_EQ(m.text_hidden, 4096);
  EXPECT_EQ(m.text_intermediate, 12288);
  EXPECT_EQ(m.transformer.bytes(), 2 * int64_t(7115124736));
  const auto want = qwen::plan::testing::qwen3vl_8b_text_encoder();
  EXPECT_EQ(m.text_encoder.bytes(), want.bytes());  // lm_head left out, vision tower in
  JobShape j;
  j.width = j.height = 1024;
  j.condition_images = 1;
  const auto p24 = plan_memory(m, j, 24 * kGiB, "offload-text");
  EXPECT_TRUE(p24.fits) << p24.advice;
  EXPECT_TRUE(p24.swap_transformer);
  EXPECT_TRUE(p24.kv_cache);
  const auto a24 = plan_memory(m, j, 24 * kGiB);
  EXPECT_TRUE(a24.fits) << a24.advice;
  EXPECT_LE(a24.peak, 24 * kGiB);
  EXPECT_EQ(a24.lines(m).back(), "predicted peak: " + format_gib(a24.peak));
  const auto p80 = plan_memory(m, j, 80 * kGiB);
  EXPECT_TRUE(p80.fits);
  EXPECT_EQ(p80.mode, "resident");
  fs::remove_all(dir);
}
