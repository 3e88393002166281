// The procedures of the one table (plugin/common/procedures.h, issue #17) under gimp-console-2.10
// with the fake-engine daemon: the historic procedures still take their old positional calls
// (tests/plugin/e2e_test.cpp runs them), and the "2" procedures (plug-in-qwen-image-generate2,
// -edit-selection2, -edit-layer2) take loras, lightning and the reference layers after them, run
// non-interactively from Script-Fu and record the LoRAs in the result's "qwen-image-params"
// parasite; a bad LoRA string is refused naming the entry, and a LoRA the daemon does not have is
// reported by name.
#include <gtest/gtest.h>

#include <string>

#include "e2e_util.h"
#include "geometry.h"

using namespace qwen::plugin;
using namespace qwen::plugin::test;

namespace {

std::string config() { return "min_pixels = 0\nmax_pixels = 16384\nautostart = false\n"; }

// The fake engine with the tiny models and the LoRA samples as its lora_dir.
std::vector<std::string> daemon_args() {
  return {"--fake-engine",   "--fake-step-ms", "5",
          "--model",         tiny_model(),     "--model",
          tiny_edit_model(), "--lora-dir",     QWEN_PLUGIN_TEST_DIR "/../fixtures/lora-samples"};
}

class PluginProcedures : public ::testing::Test {
 protected:
  void SetUp() override {
    if (plugin_binary().empty()) QWEN_E2E_UNAVAILABLE("the GIMP plug-in is not built");
    if (daemon_binary().empty())
      QWEN_E2E_UNAVAILABLE("qwen-imaged is not built (plug-in-only build; set QWEN_TEST_DAEMON)");
  }
};

// (qw-mark FILE params-of-layer) for the layer a procedure call returned.
std::string mark_params(const std::string& file, const std::string& call) {
  return " (let ((nl (car " + call + "))) (qw-mark " + q(file) +
         " (caddr (car (gimp-item-get-parasite nl \"qwen-image-params\")))))";
}

}  // namespace

TEST_F(PluginProcedures, SecondProceduresTakeLorasAndRecordThem) {
  GimpEnv env(config());
  Daemon daemon(env, daemon_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (l (cadr r)))" +
      mark_params(env.file("gen.txt"),
                  "(plug-in-qwen-image-generate2 RUN-NONINTERACTIVE img l \"a red fox\" \"\" 2"
                  " 4.0 42 \"\" \"kohya_musubi:0.7, diffsynth:-0.3\" 0)") +
      " (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 10 10 20 20)" +
      mark_params(env.file("sel.txt"),
                  "(plug-in-qwen-image-edit-selection2 RUN-NONINTERACTIVE img l \"a cat\" \"\" 2"
                  " 4.0 3 0.9 \"\" \"kohya_musubi\" 1 0 (vector))") +
      " (gimp-selection-none img)" +
      mark_params(env.file("edit.txt"),
                  "(plug-in-qwen-image-edit-layer2 RUN-NONINTERACTIVE img l \"make it night\" \"\""
                  " 2 4.0 1 \"\" \"\" 0 0 (vector))") +
      // The historic procedure, positional as before: no LoRA.
      mark_params(env.file("old.txt"),
                  "(plug-in-qwen-image-generate RUN-NONINTERACTIVE img l \"a red fox\" \"\" 2"
                  " 4.0 42 \"\")") +
      " (qw-write-layers img " + q(env.file("layers.txt")) + "))");
  auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 5u) << out << read_file(env.file("daemon.log"));
  int masked = 0;  // the edit-selection2 result only
  for (const auto& l : layers) masked += l.has_mask;
  EXPECT_EQ(masked, 1) << out;
  const std::string gen = read_file(env.file("gen.txt"));
  EXPECT_NE(gen.find("pipeline=generate\n"), std::string::npos) << gen;
  EXPECT_NE(gen.find("\nloras=kohya_musubi:0.7,diffsynth:-0.3\n"), std::string::npos) << gen;
  EXPECT_NE(gen.find("\nlightning=0"), std::string::npos) << gen;
  const std::string sel = read_file(env.file("sel.txt"));
  EXPECT_NE(sel.find("\nloras=kohya_musubi:1\n"), std::string::npos) << sel;
  EXPECT_NE(sel.find("\nlightning=1"), std::string::npos) << sel;
  // "Fast (Lightning)" leaves steps and CFG to the daemon's Lightning rule, not the 2 given.
  EXPECT_NE(sel.find("\nsteps=default\ntrue_cfg_scale=default\n"), std::string::npos) << sel;
  EXPECT_NE(gen.find("\nsteps=2\n"), std::string::npos) << gen;
  const std::string edit = read_file(env.file("edit.txt"));
  EXPECT_NE(edit.find("pipeline=edit-auto\nmodel=qwen-image-edit-2509-tiny\n"), std::string::npos)
      << edit;
  EXPECT_NE(edit.find("\nloras=\n"), std::string::npos) << edit;
  const std::string old = read_file(env.file("old.txt"));
  EXPECT_NE(old.find("\nloras=\nlightning=0"), std::string::npos) << old;
}

TEST_F(PluginProcedures, BadLoraStringIsRefusedNamingTheEntry) {
  GimpEnv env(config());
  Daemon daemon(env, daemon_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 32 32 32 32 0 0)) (img (car r)) (l (cadr r)))"
      " (plug-in-qwen-image-generate2 RUN-NONINTERACTIVE img l \"x\" \"\" 2 4.0 1 \"\""
      " \"kohya_musubi:0.5,style:strong\" 0)"
      " (qw-mark " +
      q(env.file("done.txt")) + " \"done\"))");
  EXPECT_NE(out.find("LoRA entry 'style:strong'"), std::string::npos) << out;
  EXPECT_NE(out.find("must be a number"), std::string::npos) << out;
  EXPECT_EQ(read_file(env.file("done.txt")), "");  // the call failed, the script stopped
  // A name the daemon's lora_dir does not hold: the daemon's error names it.
  out = env.run_console(
      "(let* ((r (qw-make-image RGB 32 32 32 32 0 0)) (img (car r)) (l (cadr r)))"
      " (plug-in-qwen-image-generate2 RUN-NONINTERACTIVE img l \"x\" \"\" 2 4.0 1 \"\""
      " \"no-such-lora:0.5\" 0))");
  EXPECT_NE(out.find("no-such-lora"), std::string::npos) << out;
}

// 2.10 reference layers: an INT32 count and an INT32ARRAY of drawable ids; a wrong argument count
// is refused as before.
TEST_F(PluginProcedures, ReferenceLayerArgumentsAndArgumentCount) {
  GimpEnv env(config());
  Daemon daemon(env, daemon_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (l (cadr r))"
      "       (r2 (qw-make-image RGB 32 32 32 32 0 0)) (ref (cadr r2)))"
      " (plug-in-qwen-image-edit-layer2 RUN-NONINTERACTIVE img l \"put the jacket on him\" \"\""
      " 2 4.0 1 \"qwen-image-edit-2509-tiny\" \"\" 0 1 (vector ref))"
      " (qw-write-layers img " +
      q(env.file("layers.txt")) + "))");
  auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 2u) << out << read_file(env.file("daemon.log"));
  EXPECT_EQ((Rect{layers[0].x, layers[0].y, layers[0].w, layers[0].h}), (Rect{0, 0, 64, 48}));
}
