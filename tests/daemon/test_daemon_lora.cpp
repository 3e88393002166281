// LoRAs through the daemon (issue #14): qwen-imaged with the tiny model gives the in-process image
// for a LoRA sent as an absolute path or as a name from its lora_dir, and refuses names that
// leave the lora_dir or are not there, naming them.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include "cli/daemon_client.h"
#include "harness.h"
#include "pipelines/engine.h"

using namespace qwen;
using qwen::test::Daemon;
using qwen::test::unique_instance;

namespace {
const std::string kModel = std::string(QWEN_FIXTURES) + "/models/qwen-image-tiny";
const std::string kLoras = QWEN_LORA_SAMPLES;

RunParams job() {
  RunParams p;
  p.prompts = {"a fox"};
  p.negative_prompts = {" "};
  p.width = 32;
  p.height = 32;
  p.steps = 2;
  p.seed = 3;
  return p;
}
}  // namespace

TEST(DaemonLora, SameImageAsInProcess) {
  Daemon d(QWEN_IMAGED, unique_instance("lora"),
           {"--model", kModel, "--device", "cpu", "--dtype", "float32", "--threads", "1",
            "--lora-dir", kLoras});
  EngineOptions o;
  o.model_dir = kModel;
  o.device = "cpu";
  o.dtype = "float32";
  o.threads = 1;
  auto engine = Engine::open(o);

  RunParams p = job();
  p.loras = {{kLoras + "/kohya_musubi.safetensors", 0.7}};
  p.shift = 2.5;
  const auto local = engine->run(p);
  const auto base = engine->run(job());
  ASSERT_EQ(local.size(), 1u);
  EXPECT_NE(local[0].pixels, base[0].pixels);  // the LoRA is applied

  const auto by_path = cli::run_via_daemon(p, d.instance());
  ASSERT_EQ(by_path.size(), 1u);
  EXPECT_EQ(by_path[0].pixels, local[0].pixels);

  RunParams named = p;
  named.loras = {{"kohya_musubi", 0.7}};  // NAME.safetensors in --lora-dir
  const auto by_name = cli::run_via_daemon(named, d.instance());
  ASSERT_EQ(by_name.size(), 1u);
  EXPECT_EQ(by_name[0].pixels, local[0].pixels);

  // Lightning: CFG 1 and shift 3 in both.
  RunParams light = job();
  light.lightning = true;
  EXPECT_EQ(cli::run_via_daemon(light, d.instance())[0].pixels, engine->run(light)[0].pixels);

  for (const std::string bad : {"..", "missing"}) {
    RunParams q = job();
    q.loras = {{bad, 1.0}};
    try {
      cli::run_via_daemon(q, d.instance());
      ADD_FAILURE() << bad;
    } catch (const EngineError& e) {
      EXPECT_NE(std::string(e.what()).find("LoRA '" + bad + "'"), std::string::npos) << e.what();
    }
  }
}

namespace {
int run_cli(const std::string& args, std::string* output) {
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
std::string file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
}  // namespace

// `qwen-image generate --daemon --lora FILE:S` writes the PNG the in-process run writes, for a
// path and for a bare name of the daemon's lora_dir; a name not there fails naming it.
TEST(DaemonLora, CliDaemonLoraSamePngAsInProcess) {
  Daemon d(QWEN_IMAGED, unique_instance("cli-lora"),
           {"--model", kModel, "--device", "cpu", "--dtype", "float32", "--threads", "1",
            "--lora-dir", kLoras});
  const std::string dir = ::testing::TempDir();
  // Appended piecewise: GCC 12 gives a false -Warray-bounds for the chained operator+.
  auto args = [&](std::initializer_list<std::string> parts, const std::string& png) {
    std::string a = "generate --threads 1 --prompt 'a fox' --negative-prompt ' ' --width 32";
    a += " --height 32 --seed 3 --steps 2 --quiet";
    for (const auto& p : parts) {
      a += ' ';
      a += p;
    }
    a += " --output ";
    a += dir;
    a += '/';
    a += png;
    return a;
  };
  std::string lora = kLoras;
  lora += "/kohya_musubi.safetensors:0.7";
  const std::string inst = d.instance();
  std::string out;
  ASSERT_EQ(run_cli(args({"--model", kModel, "--lora", lora}, "in.png"), &out), 0) << out;
  ASSERT_EQ(run_cli(args({"--daemon --instance", inst, "--lora", lora}, "via.png"), &out), 0)
      << out;
  ASSERT_EQ(
      run_cli(args({"--daemon --instance", inst, "--lora kohya_musubi:0.7"}, "named.png"), &out), 0)
      << out;
  const std::string in = file_bytes(dir + "/in.png");
  ASSERT_FALSE(in.empty());
  EXPECT_EQ(file_bytes(dir + "/via.png"), in);
  EXPECT_EQ(file_bytes(dir + "/named.png"), in);
  out.clear();
  EXPECT_NE(run_cli(args({"--daemon --instance", inst, "--lora nowhere:0.7"}, "never.png"), &out),
            0);
  EXPECT_NE(out.find("LoRA 'nowhere'"), std::string::npos) << out;
}
