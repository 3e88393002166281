// The real Qwen-Image-Layered engine behind the daemon (issue #16): qwen-imaged with the tiny
// Layered fixture on the CPU returns, for `decompose`, the same RGBA layers as the engine run
// in-process (what `qwen-image decompose` writes), and its model list says the model decomposes.
#include <gtest/gtest.h>

#include "cli/daemon_client.h"
#include "harness.h"
#include "pipelines/engine.h"

using namespace qwen;
using qwen::test::Daemon;
using qwen::test::unique_instance;

namespace {
const std::string kLayered = std::string(QWEN_FIXTURES) + "/models/qwen-image-layered-tiny";
}

TEST(DaemonTiny, DecomposeGivesTheInProcessLayers) {
  Daemon d(QWEN_IMAGED, unique_instance("tiny-dec"),
           {"--model", kLayered, "--device", "cpu", "--dtype", "float32", "--threads", "1"});
  ImageU8 in(40, 24, 4);
  for (int y = 0; y < in.height; ++y)
    for (int x = 0; x < in.width; ++x) {
      uint8_t* px = in.row(y) + size_t(x) * 4;
      px[0] = uint8_t(x * 6), px[1] = uint8_t(y * 10), px[2] = 120;
      px[3] = uint8_t(x < 20 ? 255 : 128);
    }
  RunParams p;
  p.pipeline = PipelineKind::Decompose;
  p.prompts = {"a striped card"};
  p.negative_prompts = {" "};
  p.true_cfg_scale = 4.0f;
  p.cfg_normalize = true;
  p.steps = 2;
  p.seed = 11;
  p.layers = 3;
  p.resolution = 640;
  p.images = {in};
  auto via = cli::run_via_daemon(p, d.instance());
  EngineOptions o;
  o.model_dir = kLayered;
  o.device = "cpu";
  o.dtype = "float32";
  o.threads = 1;
  auto engine = Engine::open(o);
  ASSERT_TRUE(engine->info().can_decompose);
  auto local = engine->run(p);
  ASSERT_EQ(via.size(), 3u);
  ASSERT_EQ(local.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(via[i].channels, 4);
    EXPECT_EQ(via[i].width, local[i].width);
    EXPECT_EQ(via[i].height, local[i].height);
    EXPECT_EQ(via[i].pixels, local[i].pixels) << "layer " << i;
  }

  ipc::Client c = ipc::Client::connect(d.instance());
  const auto st = c.status();
  ASSERT_EQ(st.model_caps.size(), 1u);
  EXPECT_TRUE(st.model_caps[0].known);
  EXPECT_TRUE(st.model_caps[0].can_decompose);
  EXPECT_FALSE(st.model_caps[0].can_edit);
  EXPECT_FALSE(st.model_caps[0].can_generate);
  // The engine's own refusal reaches the client too: generate on the Layered model is rejected
  // by the daemon before it runs.
  RunParams g;
  g.prompts = {"x"};
  g.steps = 1;
  try {
    cli::run_via_daemon(g, d.instance());
    FAIL();
  } catch (const EngineError& e) {
    EXPECT_NE(std::string(e.what()).find("only decomposes"), std::string::npos) << e.what();
  }
}
