// LoRAs through the daemon (issue #14): qwen-imaged with the tiny model gives the in-process image
// for a LoRA sent as an absolute path or as a name from its lora_dir, and refuses names that
// leave the lora_dir or are not there, naming them; a Lightning LoRA by bare name with the job's
// steps and CFG left to the model gets the in-process Lightning defaults (protocol version 5).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "cli/daemon_client.h"
#include "harness.h"
#include "pipelines/engine.h"
#include "qwen_image/client.h"

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

namespace {
// `from` copied to `to` with {"ss_output_name": "qwen-LIGHTNING-distill"} as its safetensors
// metadata (a LoRA tagged Lightning only there, as trainers write it).
void copy_with_lightning_metadata(const std::string& from, const std::string& to) {
  const std::string bytes = file_bytes(from);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  std::string header = bytes.substr(8, n);
  ASSERT_EQ(header.find("__metadata__"), std::string::npos);
  header.insert(1, R"("__metadata__":{"ss_output_name":"qwen-LIGHTNING-distill"},)");
  while (header.size() % 8) header += ' ';
  std::ofstream out(to, std::ios::binary);
  const uint64_t m = header.size();
  out.write(reinterpret_cast<const char*>(&m), 8);
  out << header << bytes.substr(8 + n);
}
}  // namespace

// Issue #14 through the daemon (protocol version 5): a job that leaves steps, CFG and shift to the
// model gets exactly the in-process defaults. A Lightning LoRA sent by its bare name (recognised
// by the daemon from its lora_dir file: by name, 4 steps, or by metadata only, 8 steps) runs 4 or
// 8 steps with CFG 1 and shift 3, the PNG of the in-process CLI byte for byte; explicit values
// stay; without a LoRA the model's 50 steps.
TEST(DaemonLora, LightningByBareNameGetsTheInProcessDefaults) {
  const std::string dir = ::testing::TempDir() + "/" + unique_instance("lightning-dir");
  std::filesystem::create_directories(dir);
  const std::string named = "Qwen-Image-Lightning-4steps-V1.0";
  std::filesystem::copy_file(kLoras + "/lightx2v.safetensors", dir + "/" + named + ".safetensors",
                             std::filesystem::copy_options::overwrite_existing);
  copy_with_lightning_metadata(kLoras + "/lightx2v.safetensors", dir + "/fast.safetensors");
  Daemon d(QWEN_IMAGED, unique_instance("lightning"),
           {"--model", kModel, "--device", "cpu", "--dtype", "float32", "--threads", "1",
            "--lora-dir", dir});
  const std::string inst = d.instance();
  // No --quiet: the step lines say how many steps ran.
  auto args = [&](const std::string& extra, const std::string& png) {
    std::string a = "generate --threads 1 --prompt 'a fox' --negative-prompt ' ' --width 32";
    a += " --height 32 --seed 3 ";
    a += extra;
    a += " --output ";
    a += dir;
    a += '/';
    a += png;
    return a;
  };
  auto steps_line = [](int n) { return "/" + std::to_string(n) + "  "; };  // "step k/n  0.1 s"
  const std::string local = "--model " + kModel + " --device cpu --dtype float32";
  const std::string daemon = "--daemon --instance " + inst;
  struct Case {
    std::string in_process, via_daemon, spelled_out;
    int steps;
  };
  const Case cases[] = {
      // Named 4steps: 4 steps, CFG 1, shift 3.
      {"--lora " + dir + "/" + named + ".safetensors", "--lora " + named,
       "--lora " + dir + "/" + named + ".safetensors --steps 4 --true-cfg-scale 1 --shift 3", 4},
      // Lightning by metadata only: 8 steps.
      {"--lora " + dir + "/fast.safetensors", "--lora fast",
       "--lora " + dir + "/fast.safetensors --steps 8 --true-cfg-scale 1 --shift 3", 8},
      // Explicit steps and CFG stay (shift 3 still Lightning's).
      {"--lora " + dir + "/" + named + ".safetensors --steps 3 --true-cfg-scale 2",
       "--lora " + named + " --steps 3 --true-cfg-scale 2",
       "--lora " + dir + "/" + named + ".safetensors --steps 3 --true-cfg-scale 2 --shift 3", 3},
  };
  int i = 0;
  for (const auto& c : cases) {
    const std::string n = std::to_string(i++);
    std::string out;
    ASSERT_EQ(run_cli(args(local + " " + c.in_process, "in" + n + ".png"), &out), 0) << out;
    EXPECT_NE(out.find("step " + std::to_string(c.steps) + steps_line(c.steps)), std::string::npos)
        << out;
    out.clear();
    ASSERT_EQ(run_cli(args(daemon + " " + c.via_daemon, "via" + n + ".png"), &out), 0) << out;
    EXPECT_NE(out.find(steps_line(c.steps)), std::string::npos) << c.via_daemon << ": " << out;
    EXPECT_EQ(out.find(steps_line(50)), std::string::npos) << c.via_daemon << ": " << out;
    out.clear();
    ASSERT_EQ(run_cli(args(local + " " + c.spelled_out + " --quiet", "x" + n + ".png"), &out), 0)
        << out;
    const std::string in = file_bytes(dir + "/in" + n + ".png");
    ASSERT_FALSE(in.empty());
    EXPECT_EQ(file_bytes(dir + "/via" + n + ".png"), in) << c.via_daemon;
    EXPECT_EQ(file_bytes(dir + "/x" + n + ".png"), in) << c.spelled_out;
  }

  // The same through the client library: steps kModelDefaultSteps and true_cfg_scale
  // kModelDefaultTrueCfgScale; the progress says how many steps the daemon's engine ran.
  ipc::Client client = ipc::Client::connect(inst);
  auto total_steps = [&](const std::vector<ipc::JobLora>& loras, int steps) {
    ipc::JobRequest r;
    r.prompts = {"a fox"};
    r.negative_prompts = {" "};
    r.width = r.height = 32;
    r.seed = 3;
    r.steps = steps;
    r.true_cfg_scale = ipc::kModelDefaultTrueCfgScale;
    r.loras = loras;
    int total = 0;
    const auto images = client.run(r, [&](const ipc::JobProgress& p) {
      if (p.phase == ipc::JobPhase::Denoising || p.phase == ipc::JobPhase::Decoding)
        total = std::max(total, p.total);
      return true;
    });
    EXPECT_EQ(images.size(), 1u);
    return total;
  };
  EXPECT_EQ(total_steps({{named, 1.0f}}, ipc::kModelDefaultSteps), 4);
  EXPECT_EQ(total_steps({{"fast", 1.0f}}, ipc::kModelDefaultSteps), 8);
  EXPECT_EQ(total_steps({{named, 1.0f}}, 5), 5);
  EXPECT_EQ(total_steps({}, ipc::kModelDefaultSteps), 50);  // the model's own default
  std::filesystem::remove_all(dir);
}
