// End-to-end, Qwen-Image-2.1 in GIMP (issue #15: "Generate, Edit Selection and Edit Layer all
// work with 2.1", "a transparent result becomes a layer with alpha", "edits come back on the
// input's exact pixel grid") under gimp-console-2.10: each case makes a fresh random tiny 2.1
// model folder, serves it from qwen-imaged on the CPU, runs the procedure from Script-Fu, and
// compares the new layer with what the `qwen-image` CLI writes for the same job
// (e2e_qwen21_util.h: the cases, the same under GIMP 3 in tests/plugin_gimp3/).
#include <gtest/gtest.h>

#include "e2e_util.h"
#ifdef QWEN_E2E_TEST_PNG
#include "e2e_qwen21_util.h"
#endif

using namespace qwen::plugin::test;

namespace {

class PluginQwen21E2E : public ::testing::Test {
 protected:
  void SetUp() override {
    if (plugin_binary().empty()) QWEN_E2E_UNAVAILABLE("the GIMP plug-in is not built");
    if (daemon_binary().empty()) QWEN_E2E_UNAVAILABLE("qwen-imaged is not built");
#ifndef QWEN_E2E_TEST_PNG
    QWEN_E2E_UNAVAILABLE("built without the daemon's PNG library (plug-in-only build)");
#else
    if (auto why = qwen21_unavailable(); !why.empty()) QWEN_E2E_UNAVAILABLE(why);
#endif
  }
};

}  // namespace

#ifndef QWEN_E2E_TEST_PNG
// A plug-in-only build: the cases are there, and SetUp says why they cannot run.
TEST_F(PluginQwen21E2E, GenerateGivesALayerWithTheClisAlpha) {}
TEST_F(PluginQwen21E2E, EditLayerWithAReferenceGivesTheClisRgba) {}
TEST_F(PluginQwen21E2E, EditSelectionMasksTheClisEditOfTheCropToTheSelection) {}
#else

// A file of the env for the Script-Fu text.
#define F(name) q(env.file(name))

TEST_F(PluginQwen21E2E, GenerateGivesALayerWithTheClisAlpha) {
  TinyQwen21 m(3);
  ASSERT_FALSE(m.model.empty()) << m.log;
  GimpEnv env(kQwen21Config);
  Daemon daemon(env, m.daemon_args());
  ASSERT_TRUE(daemon.ready(300)) << read_file(env.file("daemon.log"));
  const std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 64 64 64 0 0)) (img (car r)) (l (cadr r)))"
      " (let ((nl (car (plug-in-qwen-image-generate RUN-NONINTERACTIVE img l " +
      q(kQwen21GeneratePrompt) + " \"\" 2 1.0 5 \"\"))))  (qw-save-drawable nl #f " +
      F("result.png") + ")) (qw-write-layers img " + F("layers.txt") + "))");
  expect_qwen21_generate(m, env.dir.path, ".png", out);
}

// The layer and the reference (from another image) both have transparent areas and go to the
// model as RGBA; the 77x53 layer is edited at 64x64 and comes back on its own grid.
TEST_F(PluginQwen21E2E, EditLayerWithAReferenceGivesTheClisRgba) {
  TinyQwen21 m(4);
  ASSERT_FALSE(m.model.empty()) << m.log;
  GimpEnv env(kQwen21Config);
  Daemon daemon(env, m.daemon_args());
  ASSERT_TRUE(daemon.ready(300)) << read_file(env.file("daemon.log"));
  const std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 96 72 77 53 9 11)) (img (car r)) (l (cadr r))"
      "       (r2 (qw-make-image RGB 40 24 40 24 0 0)) (img2 (car r2)) (ref (cadr r2)))"
      " (gimp-layer-add-alpha l)"
      " (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 20 20 15 10)"
      " (gimp-edit-clear l) (gimp-selection-none img)"
      " (gimp-drawable-invert ref FALSE) (gimp-layer-add-alpha ref)"
      " (gimp-image-select-rectangle img2 CHANNEL-OP-REPLACE 0 0 10 24)"
      " (gimp-edit-clear ref) (gimp-selection-none img2)"
      " (qw-save-drawable l #f " +
      F("target.png") + ") (qw-save-drawable ref #f " + F("ref.png") +
      ")"
      " (let ((nl (car (plug-in-qwen-image-edit-layer2 RUN-NONINTERACTIVE img l " +
      q(kQwen21EditLayerPrompt) + " \"\" 2 1.0 5 \"\" \"\" 0 1 (vector ref)))))" +
      "  (qw-save-drawable nl #f " + F("result.png") + ")) (qw-write-layers img " +
      F("layers.txt") + "))");
  expect_qwen21_edit_layer(m, env.dir.path, ".png", out);
}

// A non-rectangular, odd-sized selection on an offset layer: the crop with context is edited
// whole and the result layer, masked to the selection, leaves everything else as it was.
TEST_F(PluginQwen21E2E, EditSelectionMasksTheClisEditOfTheCropToTheSelection) {
  TinyQwen21 m(6);
  ASSERT_FALSE(m.model.empty()) << m.log;
  GimpEnv env(kQwen21Config);
  Daemon daemon(env, m.daemon_args());
  ASSERT_TRUE(daemon.ready(300)) << read_file(env.file("daemon.log"));
  const std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 150 110 140 100 5 4)) (img (car r)) (l (cadr r)))"
      " (gimp-context-set-antialias FALSE)"
      " (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 61 41 37 25)"
      " (qw-save-drawable (car (gimp-image-get-selection img)) #t " +
      F("selection.pgm") + ") (qw-save-drawable l #f " + F("src-before.png") +
      ") (qw-save-flat img " + F("flat-before.pnm") +
      ")"
      " (let ((nl (car (plug-in-qwen-image-edit-selection RUN-NONINTERACTIVE img l " +
      q(kQwen21EditSelectionPrompt) + " \"\" 2 1.0 5 0.9 \"\"))))" + "  (qw-save-drawable nl #f " +
      F("result.png") + ")" + "  (qw-save-drawable (car " + "(gimp-layer-get-mask nl)) #t " +
      F("mask.pgm") + "))" + " (qw-save-drawable l #f " + F("src-after.png") +
      ") (qw-save-flat img " + F("flat-after.pnm") + ") (qw-write-layers img " + F("layers.txt") +
      "))");
  expect_qwen21_edit_selection(m, env.dir.path, ".png", out);
}

#endif  // QWEN_E2E_TEST_PNG
