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
