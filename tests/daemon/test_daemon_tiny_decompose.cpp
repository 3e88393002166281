// The real Qwen-Image-Layered engine behind the daemon (issue #16): qwen-imaged with the tiny
// Layered fixture on the CPU returns, for `decompose`, the same RGBA layers as the engine run
// in-process and what `qwen-image decompose` writes (in-process and with --daemon), and its model
// list says the model decomposes.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>

#include "cli/daemon_client.h"
#include "harness.h"
#include "image/png.h"
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

namespace {
int run_cli(const std::string& args, std::string* output) {
  // Appended piecewise: GCC 12 gives a false -Warray-bounds for the chained operator+.
  std::string cmd = QWEN_CLI;
  cmd += ' ';
  cmd += args;
  cmd += " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) output->append(buf, n);
  const int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
}  // namespace

// `qwen-image decompose` (in-process, and with --daemon) writes OUT-0.png .. OUT-(N-1).png equal to
// the layers the daemon returns for the same picture and seed: with the GIMP test
// (PluginDecomposeE2E.TinyLayeredModelGroupIsWhatThePipelineReturned: group == daemon layers), the
// group in GIMP is what the CLI writes.
TEST(DaemonTiny, DecomposeCliWritesTheDaemonsLayers) {
  Daemon d(QWEN_IMAGED, unique_instance("tiny-dec-cli"),
           {"--model", kLayered, "--device", "cpu", "--dtype", "float32", "--threads", "1"});
  const std::string dir = ::testing::TempDir();
  ImageU8 in(48, 32, 4);
  for (size_t i = 0; i < in.pixels.size(); ++i) in.pixels[i] = uint8_t(i * 37 % 251);
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 48; ++x) in.row(y)[size_t(x) * 4 + 3] = 255;
  write_png(dir + "/dec-in.png", in);
  RunParams p;
  p.pipeline = PipelineKind::Decompose;
  p.prompts = {"a noisy card"};
  p.steps = 2;
  p.seed = 5;
  p.layers = 2;
  p.resolution = 640;
  p.true_cfg_scale = 1.0f;
  p.images = {read_png(dir + "/dec-in.png")};
  const auto via = cli::run_via_daemon(p, d.instance());
  ASSERT_EQ(via.size(), 2u);
  std::string common = "--model " + kLayered + " --image " + dir +
                       "/dec-in.png --layers 2 --resolution 640 --prompt 'a noisy card' "
                       "--steps 2 --seed 5 --true-cfg-scale 1 --device cpu --dtype float32 "
                       "--threads 1";
  for (const std::string mode : {"in-process", "daemon"}) {
    std::string out;
    const std::string png = dir + "/dec-" + mode + ".png";
    std::string args = "decompose " + common + " --output " + png;
    if (mode == "daemon")
      args = "decompose --daemon --instance " + d.instance() + " " +
             common.substr(common.find("--image")) + " --output " + png;
    ASSERT_EQ(run_cli(args, &out), 0) << args << "\n" << out;
    for (int i = 0; i < 2; ++i) {
      const ImageU8 layer = read_png(dir + "/dec-" + mode + "-" + std::to_string(i) + ".png");
      EXPECT_EQ(layer.channels, 4) << mode;
      EXPECT_EQ(layer.pixels, via[size_t(i)].pixels) << mode << " layer " << i;
    }
  }
}
