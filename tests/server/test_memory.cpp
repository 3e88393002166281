// The daemon and memory (issue #13): `memory =` / --memory, and a model whose load failed is not
// loaded again on every job.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "config_harness.h"
#include "plan/memory_plan.h"
#include "server/config.h"
#include "server/fake_engine.h"
#include "server/job.h"

using qwen::server::DaemonConfig;

using qwen::server::test::parse;

TEST(DaemonMemory, MemoryModeFromFileAndCommandLine) {
  char path[] = "/tmp/qwen-conf-XXXXXX";
  ::close(::mkstemp(path));
  std::ofstream(path) << "model = /data/Qwen-Image\nmemory = modulation\n";
  DaemonConfig cfg;
  ASSERT_EQ(parse({"--config", path}, &cfg), "");
  EXPECT_EQ(cfg.memory, "modulation");
  DaemonConfig cfg2;
  ASSERT_EQ(parse({"--config", path, "--memory", "stream"}, &cfg2), "");
  EXPECT_EQ(cfg2.memory, "stream");
  std::ofstream(path) << "model = /data/Qwen-Image\nmemory = all-on-gpu\n";
  DaemonConfig cfg3;
  const std::string e = parse({"--config", path}, &cfg3);
  ::unlink(path);
  EXPECT_NE(e.find(":2:"), std::string::npos) << e;
  EXPECT_NE(e.find("all-on-gpu"), std::string::npos) << e;
  EXPECT_NE(e.find("plan --list-modes"), std::string::npos) << e;
}

TEST(DaemonMemory, AFailedLoadIsNotRetriedOnEveryJob) {
  DaemonConfig cfg;
  cfg.models.push_back({"big", "/data/Qwen-Image", {}, {}, {}, {}});
  cfg.memory = "resident";
  int loads = 0;
  std::string memory_seen;
  qwen::server::Models models;
  models.init(cfg, [&](const qwen::EngineOptions& o) -> std::unique_ptr<qwen::Engine> {
    ++loads;
    memory_seen = o.memory;
    throw qwen::EngineError("model '/data/Qwen-Image' does not fit on cuda:0: ...");
  });
  std::mutex mu;
  std::string error;
  EXPECT_EQ(models.get(0, mu, &error), nullptr);
  EXPECT_EQ(loads, 1);
  EXPECT_EQ(memory_seen, "resident");  // daemon.conf's memory reaches the engine
  EXPECT_NE(error.find("does not fit"), std::string::npos) << error;
  for (int job = 0; job < 3; ++job) {
    std::string again;
    EXPECT_EQ(models.get(0, mu, &again), nullptr);
    EXPECT_NE(again.find("does not fit"), std::string::npos) << again;
    EXPECT_NE(again.find("not retried"), std::string::npos) << again;
  }
  EXPECT_EQ(loads, 1);
  std::lock_guard<std::mutex> lk(mu);
  EXPECT_NE(models.describe().find("failed"), std::string::npos);
}

// max_resident_models = auto (issue #13): two models stay loaded when the planner's predicted
// peaks fit the device together, else the least recently used is unloaded; `status` says why.
// The tiny fixture models stand in for real ones, `vram` for the device (a fake engine runs).
TEST(DaemonMemory, TwoModelsStayLoadedOnlyWhenTheirPredictedPeaksFitTogether) {
  const std::string dir = QWEN_FIXTURES "/models/";
  DaemonConfig cfg;
  cfg.models.push_back({"t2i", dir + "qwen-image-tiny", {}, {}, {}, {}});
  cfg.models.push_back({"edit", dir + "qwen-image-edit-2509-tiny", {}, {}, {}, {}});
  cfg.memory = "resident";  // the peaks then do not depend on the device size
  cfg.device = "cpu";
  ASSERT_EQ(cfg.max_resident_models, DaemonConfig::kAutoResident);  // the default
  const auto a = qwen::server::predicted_peak_bytes(cfg.models[0], cfg, int64_t(1) << 40);
  const auto b = qwen::server::predicted_peak_bytes(cfg.models[1], cfg, int64_t(1) << 40);
  ASSERT_TRUE(a && b);
  EXPECT_GT(*b, *a);  // the edit model has a vision tower and a condition image
  const int64_t together = *a + *b - qwen::plan::kDeviceReserve;
  // A folder the planner cannot read has no predicted peak (its load reports the error).
  EXPECT_FALSE(qwen::server::predicted_peak_bytes({"x", "/nonexistent", {}, {}, {}, {}}, cfg, 1));

  struct Run {
    int loads = 0;
    std::vector<std::string> states;
  };
  auto run = [&](int64_t vram, Run* r) {
    DaemonConfig c = cfg;
    c.vram = vram;
    qwen::server::Models models;
    models.init(c, [&](const qwen::EngineOptions& o) {
      ++r->loads;
      return qwen::server::make_fake_engine(o, 0);
    });
    std::mutex mu;
    for (int job : {0, 1, 0, 1}) {
      std::string error;
      ASSERT_NE(models.get(job, mu, &error), nullptr) << error;
      std::lock_guard<std::mutex> lk(mu);
      EXPECT_TRUE(models.loaded(job));
      r->states.push_back(models.describe());
    }
  };
  // Fits: both stay loaded (2 loads for 4 jobs), the second one's state says with what.
  Run fits;
  run(together / 97 * 100 + (64 << 20), &fits);
  EXPECT_EQ(fits.loads, 2);
  EXPECT_NE(fits.states.back().find("edit\tloaded"), std::string::npos) << fits.states.back();
  EXPECT_NE(fits.states.back().find("resident together with t2i"), std::string::npos)
      << fits.states.back();
  EXPECT_EQ(fits.states.back().find("unloaded"), std::string::npos) << fits.states.back();
  // Does not fit together (each alone does): the models alternate, every job loads, and the
  // unloaded one's state says why.
  Run alternate;
  run(std::max(*a, *b) / 97 * 100 + (64 << 20), &alternate);
  ASSERT_LT(std::max(*a, *b) / 97 * 100 + (64 << 20), together / 97 * 100);
  EXPECT_EQ(alternate.loads, 4);
  EXPECT_NE(alternate.states[1].find("t2i\tunloaded: does not fit next to edit (predicted peaks"),
            std::string::npos)
      << alternate.states[1];
  EXPECT_NE(alternate.states[2].find("edit\tunloaded: does not fit next to t2i"), std::string::npos)
      << alternate.states[2];
  // Without a device size (the CPU, vram unset) nothing is unloaded.
  Run cpu;
  run(0, &cpu);
  EXPECT_EQ(cpu.loads, 2);
}

TEST(DaemonMemory, VramAndAutoResidencyFromFileAndCommandLine) {
  DaemonConfig cfg;
  ASSERT_EQ(
      parse({"--model", "/data/Qwen-Image", "--vram", "24G", "--max-resident-models", "1"}, &cfg),
      "");
  EXPECT_EQ(cfg.vram, int64_t(24) << 30);
  EXPECT_EQ(cfg.max_resident_models, 1);
  DaemonConfig auto_cfg;
  ASSERT_EQ(parse({"--model", "/data/Qwen-Image", "--max-resident-models", "auto"}, &auto_cfg), "");
  EXPECT_EQ(auto_cfg.max_resident_models, DaemonConfig::kAutoResident);
  DaemonConfig bad;
  const std::string e = parse({"--model", "/data/Qwen-Image", "--vram", "lots"}, &bad);
  EXPECT_NE(e.find("lots"), std::string::npos) << e;
  EXPECT_NE(e.find("vram"), std::string::npos) << e;
}
