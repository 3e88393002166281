// End-to-end: the plug-in inside gimp-console-2.10 (fresh profile each run) talking to a
// qwen-imaged on a unique instance. The daemon runs its fake engine (fast, deterministic) unless a
// test needs real pixels from the tiny fixture model.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cmath>
#include <thread>

#include "e2e_util.h"
#include "geometry.h"
#include "qwen_image/client.h"

using namespace qwen::plugin;
using namespace qwen::plugin::test;

namespace {

// Plug-in config for tests: small model sizes, no autostart unless asked.
std::string test_config(const std::string& extra = "autostart = false\n") {
  return "min_pixels = 0\nmax_pixels = 16384\nstart_timeout = 60\n" + extra;
}

std::vector<std::string> fake_args(int step_ms = 5) {
  return {"--fake-engine", "--fake-step-ms", std::to_string(step_ms), "--model",
          tiny_model(),    "--model",        tiny_edit_model()};
}

class PluginE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    if (plugin_binary().empty()) QWEN_E2E_UNAVAILABLE("the GIMP plug-in is not built");
    if (daemon_binary().empty())
      QWEN_E2E_UNAVAILABLE("qwen-imaged is not built (plug-in-only build)");
  }
};

// Counts pixels of `a` and `b` (same size) that differ in any channel, over pixels where `where`
// returns true; also the mean absolute difference there.
struct Diff {
  int differing = 0, total = 0;
  double mean_abs = 0;
};
template <class F>
Diff compare(const Pnm& a, const Pnm& b, F where) {
  Diff d;
  double sum = 0;
  for (int y = 0; y < a.height; ++y)
    for (int x = 0; x < a.width; ++x) {
      if (!where(x, y)) continue;
      ++d.total;
      bool diff = false;
      for (int c = 0; c < a.channels; ++c) {
        int v = std::abs(int(a.px(x, y)[c]) - int(b.px(x, y)[c]));
        sum += v;
        diff |= v != 0;
      }
      d.differing += diff;
    }
  d.mean_abs = d.total ? sum / (double(d.total) * a.channels) : 0;
  return d;
}

}  // namespace

TEST_F(PluginE2E, GenerateWithoutSelectionAddsCanvasSizedLayerAboveActive) {
  GimpEnv env(test_config());
  Daemon daemon(env, fake_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (l (cadr r)))"
      " (qw-save-layer img l " +
      q(env.file("base-before.pnm")) +
      ")"
      " (let ((nl (car (plug-in-qwen-image-generate RUN-NONINTERACTIVE img l \"a red fox\" \"\" 3"
      " 4.0 42 \"\"))))"
      "  (qw-mark " +
      q(env.file("params.txt")) +
      "   (caddr (car (gimp-item-get-parasite nl \"qwen-image-params\")))))"
      " (qw-write-layers img " +
      q(env.file("layers1.txt")) +
      ")"
      " (plug-in-qwen-image-generate RUN-WITH-LAST-VALS img l \"\" \"\" 0 0 0 \"\")"
      " (qw-write-layers img " +
      q(env.file("layers.txt")) +
      ")"
      " (qw-save-layer img l " +
      q(env.file("base-after.pnm")) +
      ")"
      " (qw-save-flat img " +
      q(env.file("flat.pnm")) + "))");
  auto layers = read_layers(env.file("layers1.txt"));
  ASSERT_EQ(layers.size(), 2u) << out;
  EXPECT_EQ(layers[0].name, "a red fox");
  EXPECT_EQ((Rect{layers[0].x, layers[0].y, layers[0].w, layers[0].h}), (Rect{0, 0, 64, 48}));
  EXPECT_FALSE(layers[0].has_mask);
  EXPECT_EQ(layers[1].name, "base");
  // The returned layer carries what made it.
  std::string params = read_file(env.file("params.txt"));
  EXPECT_NE(params.find("pipeline=generate\n"), std::string::npos) << params << out;
  EXPECT_NE(params.find("seed=42\n"), std::string::npos) << params;
  EXPECT_NE(params.find("prompt=a red fox\n"), std::string::npos) << params;
  // With last values: a second identical layer.
  auto again = read_layers(env.file("layers.txt"));
  ASSERT_EQ(again.size(), 3u) << out;
  EXPECT_EQ(again[0].name, "a red fox");
  // The user's layer is untouched; the visible picture is the generated one.
  Pnm before = read_pnm(env.file("base-before.pnm")), after = read_pnm(env.file("base-after.pnm"));
  ASSERT_GT(before.width, 0);
  EXPECT_EQ(before.data, after.data);
  Pnm flat = read_pnm(env.file("flat.pnm"));
  ASSERT_EQ(flat.width, 64);
  EXPECT_GT(compare(flat, before, [](int, int) { return true; }).differing, 64 * 48 / 2);
}

TEST_F(PluginE2E, GenerateUsesSelectionBoundsOnGrayOffsetLayer) {
  GimpEnv env(test_config());
  Daemon daemon(env, fake_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  // Gray image; the layer is offset and partly outside; the selection is partly off the canvas.
  std::string out = env.run_console(
      "(let* ((r (qw-make-image GRAY 64 48 80 40 -8 4)) (img (car r)) (l (cadr r)))"
      " (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 40 30 40 30)"
      " (plug-in-qwen-image-generate RUN-NONINTERACTIVE img l \"lighthouse\" \"blurry\" 2 4.0 -1 "
      "\"qwen-image-tiny\")"
      " (qw-write-layers img " +
      q(env.file("layers.txt")) +
      ")"
      " (qw-save-flat img " +
      q(env.file("flat.pnm")) + "))");
  auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 2u) << out;
  EXPECT_EQ(layers[0].name, "lighthouse");
  EXPECT_EQ((Rect{layers[0].x, layers[0].y, layers[0].w, layers[0].h}), (Rect{40, 30, 24, 18}));
  EXPECT_EQ(read_pnm(env.file("flat.pnm")).channels, 1);  // still a grayscale image
}

TEST_F(PluginE2E, GenerateLargerThanModelSizesComesBackAtFullSize) {
  GimpEnv env(test_config());
  Daemon daemon(env, fake_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 400 300 400 300 0 0)) (img (car r)) (l (cadr r)))"
      " (plug-in-qwen-image-generate RUN-NONINTERACTIVE img l \"big\" \"\" 2 1.0 7 \"\")"
      " (qw-write-layers img " +
      q(env.file("layers.txt")) + "))");
  auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 2u) << out;
  EXPECT_EQ((Rect{layers[0].x, layers[0].y, layers[0].w, layers[0].h}), (Rect{0, 0, 400, 300}));
}

TEST_F(PluginE2E, EditSelectionKeepsEverythingOutsideTheSelection) {
  GimpEnv env(test_config());
  Daemon daemon(env, fake_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  // Layer partly outside the canvas, selection partly outside the layer.
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 40 30 -10 -5)) (img (car r)) (l (cadr r)))"
      " (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 20 10 40 30)"
      " (qw-save-flat img " +
      q(env.file("before.pnm")) +
      ")"
      " (plug-in-qwen-image-edit-selection RUN-NONINTERACTIVE img l \"a cat\" \"\" 2 4.0 3 0.9 "
      "\"\")"
      " (qw-write-layers img " +
      q(env.file("layers.txt")) +
      ")"
      " (qw-save-flat img " +
      q(env.file("after.pnm")) + "))");
  auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 2u) << out;
  EXPECT_TRUE(layers[0].has_mask);
  // Crop = selection ∩ layer padded by 32 px, clipped to the layer: the whole layer here.
  EXPECT_EQ((Rect{layers[0].x, layers[0].y, layers[0].w, layers[0].h}), (Rect{-10, -5, 40, 30}));
  Pnm before = read_pnm(env.file("before.pnm")), after = read_pnm(env.file("after.pnm"));
  ASSERT_EQ(before.width, 64);
  ASSERT_EQ(after.width, 64);
  Rect sel{20, 10, 40, 30};
  auto outside = compare(before, after, [&](int x, int y) {
    return x < sel.x || y < sel.y || x >= sel.right() || y >= sel.bottom();
  });
  EXPECT_EQ(outside.differing, 0);
  EXPECT_GT(outside.total, 0);
}

TEST_F(PluginE2E, EditSelectionOnLargeLayerComesBackAtFullSizeInsideTheEllipseOnly) {
  GimpEnv env(test_config());
  Daemon daemon(env, fake_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  // 400x300 is far above max_pixels (16384): the crop goes to the model downscaled and comes back.
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 400 300 400 300 0 0)) (img (car r)) (l (cadr r)))"
      " (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 100 60 200 150)"
      " (qw-save-flat img " +
      q(env.file("before.pnm")) +
      ")"
      " (plug-in-qwen-image-edit-selection RUN-NONINTERACTIVE img l \"a cat\" \"\" 2 4.0 3 0.9 "
      "\"\")"
      " (qw-write-layers img " +
      q(env.file("layers.txt")) +
      ")"
      " (qw-save-flat img " +
      q(env.file("after.pnm")) + "))");
  auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 2u) << out;
  EXPECT_TRUE(layers[0].has_mask);
  // Selection 200x150 padded by 50 px on each side.
  EXPECT_EQ((Rect{layers[0].x, layers[0].y, layers[0].w, layers[0].h}), (Rect{50, 10, 300, 250}));
  Pnm before = read_pnm(env.file("before.pnm")), after = read_pnm(env.file("after.pnm"));
  ASSERT_EQ(after.width, 400);
  auto outside = compare(before, after, [](int x, int y) {
    double dx = (x + 0.5 - 200) / 101, dy = (y + 0.5 - 135) / 76;
    return dx * dx + dy * dy > 1;
  });
  EXPECT_EQ(outside.differing, 0) << "of " << outside.total;
  // Inside, the fake engine's copy went through a 4x downscale and back: blurred, not identical.
  auto inside = compare(before, after, [](int x, int y) {
    double dx = (x + 0.5 - 200) / 90, dy = (y + 0.5 - 135) / 65;
    return dx * dx + dy * dy < 1;
  });
  EXPECT_LT(inside.mean_abs, 8.0);
}

TEST_F(PluginE2E, UnknownModelIsReported) {
  GimpEnv env(test_config());
  Daemon daemon(env, fake_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (l (cadr r)))"
      " (plug-in-qwen-image-generate RUN-NONINTERACTIVE img l \"x\" \"\" 2 4.0 1 "
      "\"no-such-model\"))");
  EXPECT_NE(out.find("the model is not available"), std::string::npos) << out;
  EXPECT_NE(out.find("no-such-model"), std::string::npos) << out;
}

TEST_F(PluginE2E, EditSelectionWithoutSelectionCoversTheGrayLayer) {
  GimpEnv env(test_config());
  Daemon daemon(env, fake_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  std::string out = env.run_console(
      "(let* ((r (qw-make-image GRAY 64 48 40 30 10 6)) (img (car r)) (l (cadr r)))"
      " (plug-in-qwen-image-edit-selection RUN-NONINTERACTIVE img l \"snow\" \"\" 2 4.0 3 0.5 \"\")"
      " (qw-write-layers img " +
      q(env.file("layers.txt")) + "))");
  auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 2u) << out;
  EXPECT_EQ(layers[0].name, "snow");
  EXPECT_EQ((Rect{layers[0].x, layers[0].y, layers[0].w, layers[0].h}), (Rect{10, 6, 40, 30}));
}

TEST_F(PluginE2E, EditLayerKeepsSizeAndOffsets) {
  GimpEnv env(test_config());
  Daemon daemon(env, fake_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 40 30 5 7)) (img (car r)) (l (cadr r)))"
      " (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 0 0 10 10)"  // ignored by edit-layer
      // Model "": the daemon's default (qwen-image-tiny) cannot edit, so its edit model is used.
      " (let ((nl (car (plug-in-qwen-image-edit-layer RUN-NONINTERACTIVE img l \"make it night\""
      " \"\" 2 4.0 1 \"\"))))"
      "  (qw-mark " +
      q(env.file("params.txt")) +
      "   (caddr (car (gimp-item-get-parasite nl \"qwen-image-params\")))))"
      " (qw-write-layers img " +
      q(env.file("layers.txt")) + "))");
  auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 2u) << out;
  EXPECT_EQ(layers[0].name, "make it night");
  EXPECT_EQ((Rect{layers[0].x, layers[0].y, layers[0].w, layers[0].h}), (Rect{5, 7, 40, 30}));
  std::string params = read_file(env.file("params.txt"));
  EXPECT_NE(params.find("pipeline=edit-auto\nmodel=qwen-image-edit-2509-tiny\n"), std::string::npos)
      << params;
}

TEST_F(PluginE2E, EditLayerKeepsTheLayersTransparency) {
  GimpEnv env(test_config());
  Daemon daemon(env, fake_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  // RGBA layer with a transparent hole at (0..9, 0..9).
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (l (cadr r)))"
      " (gimp-layer-add-alpha l)"
      " (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 0 0 10 10)"
      " (gimp-drawable-edit-clear l)"
      " (gimp-selection-none img)"
      " (let* ((nl (car (plug-in-qwen-image-edit-layer RUN-NONINTERACTIVE img l \"x\" \"\" 2 4.0 1"
      " \"qwen-image-edit-2509-tiny\")))"
      "        (hole (cadr (gimp-drawable-get-pixel nl 3 3)))"
      "        (solid (cadr (gimp-drawable-get-pixel nl 30 30))))"
      "  (qw-mark " +
      q(env.file("alpha.txt")) +
      "   (string-append (number->string (vector-ref hole 3)) \" \""
      "                  (number->string (vector-ref solid 3))))))");
  EXPECT_EQ(read_file(env.file("alpha.txt")), "0 255") << out;
}

TEST_F(PluginE2E, EditLayerWithTextToImageModelSaysWhy) {
  GimpEnv env(test_config());
  Daemon daemon(env, fake_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (l (cadr r)))"
      " (plug-in-qwen-image-edit-layer RUN-NONINTERACTIVE img l \"x\" \"\" 2 4.0 1 "
      "\"qwen-image-tiny\"))");
  EXPECT_NE(out.find("needs an edit model"), std::string::npos) << out;
}

TEST_F(PluginE2E, MissingDaemonGivesActionableMessageQuickly) {
  GimpEnv env(test_config("daemon = /nonexistent/qwen-imaged\n"));
  auto t0 = std::chrono::steady_clock::now();
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (l (cadr r)))"
      " (plug-in-qwen-image-generate RUN-NONINTERACTIVE img l \"x\" \"\" 2 4.0 1 \"\")"
      " (qw-mark " +
          q(env.file("after-call")) + " \"reached\"))",
      120);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(out.find("no daemon is running"), std::string::npos) << out;
  EXPECT_NE(out.find("systemctl --user start qwen-imaged"), std::string::npos) << out;
  EXPECT_EQ(out.find("TIMED OUT"), std::string::npos);
  EXPECT_LT(s, 60.0);
}

TEST_F(PluginE2E, DaemonThatFailsToStartIsReportedWithHowToStartIt) {
  GimpEnv env(test_config("daemon = /bin/false\n"));
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (l (cadr r)))"
      " (plug-in-qwen-image-generate RUN-NONINTERACTIVE img l \"x\" \"\" 2 4.0 1 \"\"))",
      120);
  EXPECT_NE(out.find("started it"), std::string::npos) << out;
  EXPECT_NE(out.find("exited (status 1)"), std::string::npos) << out;
  EXPECT_NE(out.find("systemctl --user start qwen-imaged"), std::string::npos) << out;
}

TEST_F(PluginE2E, StartsTheDaemonOnDemandAndSaysSo) {
  GimpEnv env(test_config("daemon = " + daemon_binary() +
                          "\ndaemon_args = --no-config --fake-engine --model " + tiny_model() +
                          "\n"));
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (l (cadr r)))"
      " (plug-in-qwen-image-generate RUN-NONINTERACTIVE img l \"auto\" \"\" 2 4.0 1 \"\")"
      " (qw-write-layers img " +
      q(env.file("layers.txt")) + "))");
  // The plug-in started a daemon on the test's instance; it answers, then it is stopped.
  try {
    EXPECT_GT(qwen::ipc::Client::connect(env.instance, 3000).status().pid, 0);
  } catch (const qwen::ipc::ClientError& e) {
    ADD_FAILURE() << "no daemon after autostart: " << e.what() << "\n" << out;
  }
  EXPECT_EQ(stop_daemons_of_instance(env.instance), 1);
  EXPECT_NE(out.find("started it"), std::string::npos) << out;
  auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 2u) << out;
  EXPECT_EQ(layers[0].name, "auto");
}

TEST_F(PluginE2E, KillingThePluginMidJobLeavesTheDaemonReady) {
  GimpEnv env(test_config());
  Daemon daemon(env, fake_args(100));  // 100 ms per step: 300 steps = 30 s
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  std::string batch = "(begin (load \"" QWEN_PLUGIN_TEST_DIR
                      "/e2e_helpers.scm\") (let* ((r (qw-make-image RGB 64 48 64 48 0 0)) "
                      "(img (car r)) (l (cadr r))) (plug-in-qwen-image-generate "
                      "RUN-NONINTERACTIVE img l \"slow\" \"\" 300 4.0 1 \"\")))";
  Child gimp({"/usr/bin/gimp-console-2.10", "-i", "-d", "-f", "-b", batch, "-b", "(gimp-quit 0)"},
             env.env(), env.file("gimp-output.txt"));
  auto client = qwen::ipc::Client::connect(env.instance, 3000);
  bool busy = false;
  for (int i = 0; i < 600 && !busy; ++i) {
    busy = client.status().busy;
    if (!busy) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(busy) << read_file(env.file("gimp-output.txt"));
  auto plugins = children_named(gimp.pid(), "qwen-image-gimp");
  ASSERT_EQ(plugins.size(), 1u);
  kill(plugins[0], SIGKILL);
  bool idle = false;
  for (int i = 0; i < 300 && !idle; ++i) {
    idle = !client.status().busy;
    if (!idle) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(idle) << "the daemon still runs the dead plug-in's job after 30 s";
  qwen::ipc::JobRequest req;
  req.prompts = {"after"};
  req.steps = 2;
  req.width = 32;
  req.height = 32;
  auto images = client.run(req);
  ASSERT_EQ(images.size(), 1u);
  EXPECT_GT(images[0].width, 0);
  gimp.stop();
}

// The real tiny model (CPU): inpainting an elliptical selection changes the inside and leaves the
// flattened image bit-identical 4 px or more outside the ellipse; the original layer is untouched.
static void ellipse_inpaint_changes_only_inside(const std::string& model) {
  GimpEnv env(test_config());
  Daemon daemon(env, {"--device", "cpu", "--model", tiny_model(), "--model", tiny_edit_model()});
  if (!daemon.ready(300)) {
    std::string log = read_file(env.file("daemon.log"));
    if (log.find("no inference engine") != std::string::npos)
      QWEN_E2E_UNAVAILABLE("this qwen-imaged has no inference engine yet");
    FAIL() << "the daemon did not come up with the tiny model:\n" << log;
  }
  const double cx = 48, cy = 32, rx = 24, ry = 16;
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 96 64 96 64 0 0)) (img (car r)) (l (cadr r)))"
      " (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 24 16 48 32)"
      " (qw-save-flat img " +
      q(env.file("before.pnm")) +
      ")"
      " (plug-in-qwen-image-edit-selection RUN-NONINTERACTIVE img l \"a red apple\" \"\" 4 1.0 5"
      " 1.0 \"" +
      model +
      "\")"
      " (qw-write-layers img " +
      q(env.file("layers.txt")) +
      ")"
      " (qw-save-layer img l " +
      q(env.file("base-after.pnm")) +
      ")"
      " (qw-save-flat img " +
      q(env.file("after.pnm")) + "))");
  auto layers = read_layers(env.file("layers.txt"));
  const std::string log = read_file(env.file("daemon.log"));
  if (layers.size() != 2u && log.find("is not supported by this engine yet") != std::string::npos)
    QWEN_E2E_UNAVAILABLE("the engine does not run this pipeline yet");
  ASSERT_EQ(layers.size(), 2u) << out << log;
  EXPECT_TRUE(layers[0].has_mask);
  Pnm before = read_pnm(env.file("before.pnm")), after = read_pnm(env.file("after.pnm"));
  ASSERT_EQ(before.width, 96);
  ASSERT_EQ(after.width, 96);
  auto ellipse = [&](int x, int y, double grow) {
    double dx = (x + 0.5 - cx) / (rx + grow), dy = (y + 0.5 - cy) / (ry + grow);
    return dx * dx + dy * dy;
  };
  auto outside = compare(before, after, [&](int x, int y) { return ellipse(x, y, 4) > 1; });
  EXPECT_EQ(outside.differing, 0) << "of " << outside.total;
  auto inside = compare(before, after, [&](int x, int y) { return ellipse(x, y, -4) < 1; });
  EXPECT_GT(inside.differing, inside.total / 2);
  EXPECT_GT(inside.mean_abs, 2.0);
  Pnm base_after = read_pnm(env.file("base-after.pnm"));
  EXPECT_EQ(base_after.data, before.data);  // the original layer is the whole canvas here
}

// Text-to-image model: the inpaint pipeline.
TEST_F(PluginE2E, TinyModelEditSelectionChangesOnlyInsideTheEllipse) {
  ellipse_inpaint_changes_only_inside("qwen-image-tiny");
}

// Edit model: the edit-inpaint pipeline.
TEST_F(PluginE2E, TinyEditModelEditSelectionChangesOnlyInsideTheEllipse) {
  ellipse_inpaint_changes_only_inside("qwen-image-edit-2509-tiny");
}

// The real tiny edit model (CPU): an instruction edit of an offset layer comes back with the
// layer's exact size and offsets and different pixels (a model result, not a copy).
TEST_F(PluginE2E, TinyEditModelEditsTheLayer) {
  GimpEnv env(test_config());
  Daemon daemon(env, {"--device", "cpu", "--model", tiny_edit_model()});
  if (!daemon.ready(300)) {
    std::string log = read_file(env.file("daemon.log"));
    if (log.find("no inference engine") != std::string::npos)
      QWEN_E2E_UNAVAILABLE("this qwen-imaged has no inference engine yet");
    FAIL() << "the daemon did not come up with the tiny edit model:\n" << log;
  }
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 48 32 8 6)) (img (car r)) (l (cadr r)))"
      " (qw-save-layer img l " +
      q(env.file("before.pnm")) +
      ")"
      " (let ((nl (car (plug-in-qwen-image-edit-layer RUN-NONINTERACTIVE img l \"make it red\" \"\""
      " 2 1.0 5 \"\"))))"
      "  (qw-save-layer img nl " +
      q(env.file("result.pnm")) +
      "))"
      " (qw-write-layers img " +
      q(env.file("layers.txt")) + "))");
  auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 2u) << out << read_file(env.file("daemon.log"));
  EXPECT_EQ((Rect{layers[0].x, layers[0].y, layers[0].w, layers[0].h}), (Rect{8, 6, 48, 32}));
  Pnm before = read_pnm(env.file("before.pnm")), result = read_pnm(env.file("result.pnm"));
  ASSERT_EQ(result.width, 48);
  ASSERT_EQ(result.height, 32);
  EXPECT_GT(compare(before, result, [](int, int) { return true; }).mean_abs, 2.0);
}
