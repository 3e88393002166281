// The daemon and memory (issue #13): `memory =` / --memory, and a model whose load failed is not
// loaded again on every job.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "config_harness.h"
#include "server/config.h"
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
