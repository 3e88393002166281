// `qwen-image --daemon` path: run_via_daemon gives what the same engine gives in-process.
#include <gtest/gtest.h>

#include "cli/daemon_client.h"
#include "harness.h"
#include "server/fake_engine.h"

using namespace qwen;
using qwen::test::Daemon;
using qwen::test::unique_instance;

TEST(CliDaemon, SameImagesAsInProcess) {
  Daemon d(unique_instance("cli"), {"--fake-step-ms", "1"});
  auto engine = server::make_fake_engine(EngineOptions{}, 0);

  RunParams gen;
  gen.prompts = {"a", "b"};
  gen.num_images_per_prompt = 2;
  gen.seed = 1234;
  gen.steps = 3;
  gen.width = 48;
  gen.height = 40;
  EXPECT_EQ(cli::run_via_daemon(gen, d.instance())[3].pixels, engine->run(gen)[3].pixels);

  RunParams edit;
  edit.pipeline = PipelineKind::EditInpaint;
  edit.prompts = {"make it blue"};
  edit.steps = 2;
  ImageU8 in(21, 13, 4);
  for (size_t i = 0; i < in.pixels.size(); ++i) in.pixels[i] = uint8_t(i * 31);
  edit.images = {in};
  ImageU8 mask(21, 13, 1, 255);
  edit.mask = mask;
  int calls = 0;
  auto via = cli::run_via_daemon(edit, d.instance(), [&](const ProgressInfo& p) {
    ++calls;
    EXPECT_EQ(p.total, 2);
    return true;
  });
  auto local = engine->run(edit);
  ASSERT_EQ(via.size(), 1u);
  EXPECT_EQ(via[0].channels, 3);
  EXPECT_EQ(via[0].pixels, local[0].pixels);
  EXPECT_GE(calls, 1);

  RunParams slow = gen;
  slow.steps = 1000;
  EXPECT_THROW(cli::run_via_daemon(slow, d.instance(), [](const ProgressInfo&) { return false; }),
               CancelledError);
}

TEST(CliDaemon, ErrorsNameTheProblem) {
  RunParams p;
  p.prompts = {"x"};
  try {
    cli::run_via_daemon(p, unique_instance("nobody"));
    FAIL();
  } catch (const EngineError& e) {
    EXPECT_NE(std::string(e.what()).find("no qwen-imaged serves"), std::string::npos) << e.what();
  }
  Daemon d(unique_instance("cli-rej"));
  try {
    cli::run_via_daemon(p, d.instance(), {}, "missing-model");
    FAIL();
  } catch (const EngineError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown model 'missing-model'"), std::string::npos)
        << e.what();
  }
}
