// The real engine behind the daemon: qwen-imaged with the tiny fixture model on the CPU gives the
// same images as the engine run in-process.
#include <gtest/gtest.h>

#include "cli/daemon_client.h"
#include "harness.h"
#include "pipelines/engine.h"

using namespace qwen;
using qwen::test::Daemon;
using qwen::test::unique_instance;

namespace {
const std::string kModel = std::string(QWEN_FIXTURES) + "/models/qwen-image-tiny";
const std::string kEditModel = std::string(QWEN_FIXTURES) + "/models/qwen-image-edit-2509-tiny";
}

TEST(DaemonTiny, SameImageAsInProcess) {
  Daemon d(QWEN_IMAGED, unique_instance("tiny"),
           {"--model", kModel, "--device", "cpu", "--dtype", "float32", "--threads", "1"});
  RunParams p;
  p.prompts = {"A red bicycle leaning against a blue wall, watercolor"};
  p.width = 96;
  p.height = 64;
  p.steps = 3;
  p.seed = 42;
  p.true_cfg_scale = 1.0f;
  int calls = 0;
  auto via = cli::run_via_daemon(p, d.instance(), [&](const ProgressInfo& i) {
    ++calls;
    EXPECT_EQ(i.total, 3);
    return true;
  });
  EngineOptions o;
  o.model_dir = kModel;
  o.device = "cpu";
  o.dtype = "float32";
  o.threads = 1;
  auto engine = Engine::open(o);
  auto local = engine->run(p);
  ASSERT_EQ(via.size(), 1u);
  ASSERT_EQ(local.size(), 1u);
  EXPECT_EQ(via[0].width, local[0].width);
  EXPECT_EQ(via[0].height, local[0].height);
  EXPECT_EQ(via[0].channels, 3);
  EXPECT_EQ(via[0].pixels, local[0].pixels);
  EXPECT_GE(calls, 1);

  ipc::Client c = ipc::Client::connect(d.instance());
  const auto st = c.status();
  ASSERT_EQ(st.models.size(), 1u);
  EXPECT_EQ(st.models[0], "qwen-image-tiny");
  EXPECT_NE(st.model_states[0].find("loaded"), std::string::npos) << st.model_states[0];
  EXPECT_GT(st.device_memory_bytes, 0);
}

// "edit-auto" (the plug-in's Edit Layer, `qwen-image edit` without --pipeline): the daemon runs
// the model's own edit pipeline. The Edit-2509 model names QwenImageEditPlusPipeline, so one image
// gives exactly the Edit-Plus result, not the (different) single-image Edit one.
TEST(DaemonTiny, EditAutoRunsTheModelsOwnEditPipeline) {
  Daemon d(QWEN_IMAGED, unique_instance("edit-auto"),
           {"--model", kEditModel, "--device", "cpu", "--dtype", "float32", "--threads", "1"});
  RunParams p;
  p.pipeline = PipelineKind::Edit;
  p.prompts = {"make it night"};
  p.width = 64;
  p.height = 48;
  p.steps = 2;
  p.seed = 7;
  p.true_cfg_scale = 1.0f;
  ImageU8 img;
  img.width = 48;
  img.height = 32;
  img.channels = 3;
  img.pixels.resize(img.size_bytes());
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = uint8_t((i * 37) % 251);
  p.images = {img};
  auto via = cli::run_via_daemon(p, d.instance(), {}, "", "edit-auto");

  EngineOptions o;
  o.model_dir = kEditModel;
  o.device = "cpu";
  o.dtype = "float32";
  o.threads = 1;
  auto engine = Engine::open(o);
  ASSERT_EQ(engine->info().default_pipeline, PipelineKind::EditPlus);
  auto edit = engine->run(p);
  p.pipeline = PipelineKind::EditPlus;
  auto plus = engine->run(p);
  ASSERT_EQ(via.size(), 1u);
  ASSERT_EQ(plus.size(), 1u);
  EXPECT_EQ(via[0].pixels, plus[0].pixels);
  EXPECT_NE(edit[0].pixels, plus[0].pixels) << "Edit and Edit-Plus should differ on this input";
}

// Protocol version 4: a job on a model that is not loaded yet (--lazy) reports the "loading model"
// phase, from the engine's own component loads, before it reports denoising.
TEST(DaemonTiny, ReportsTheModelLoadBeforeDenoising) {
  Daemon d(
      QWEN_IMAGED, unique_instance("tiny-phase"),
      {"--model", kModel, "--device", "cpu", "--dtype", "float32", "--threads", "1", "--lazy"});
  ipc::Client c = ipc::Client::connect(d.instance());
  ipc::JobRequest r;
  r.prompts = {"a red bicycle"};
  r.width = 64;
  r.height = 64;
  r.steps = 12;  // enough steps for the client to see the job past its load (it reports changes)
  r.true_cfg_scale = 1.0f;
  std::vector<ipc::JobProgress> seen;
  const auto out = c.run(r, [&](const ipc::JobProgress& p) {
    seen.push_back(p);
    return true;
  });
  ASSERT_EQ(out.size(), 1u);
  int loading = -1, denoising = -1;
  bool component = false;
  std::string trace;
  for (size_t i = 0; i < seen.size(); ++i) {
    trace += std::string(ipc::to_string(seen[i].phase)) + " [" + seen[i].detail + "]; ";
    if (seen[i].phase == ipc::JobPhase::LoadingModel && loading < 0) loading = int(i);
    // The first phase after the load (a fast tiny model may go past its steps between polls).
    const bool after_load = seen[i].phase == ipc::JobPhase::EncodingPrompt ||
                            seen[i].phase == ipc::JobPhase::Denoising ||
                            seen[i].phase == ipc::JobPhase::Decoding;
    if (after_load && denoising < 0) denoising = int(i);
    component |= seen[i].detail.rfind("loading transformer", 0) == 0 ||
                 seen[i].detail.rfind("loading vae", 0) == 0 ||
                 seen[i].detail.rfind("loading text_encoder", 0) == 0;
  }
  ASSERT_GE(loading, 0) << trace;
  ASSERT_GE(denoising, 0) << trace;
  EXPECT_LT(loading, denoising) << trace;
  EXPECT_TRUE(component) << "no component reported by the engine: " << trace;
}
