// End-to-end (issue #17): the live preview layer inside gimp-console-2.10. Headless GIMP cannot be
// watched mid-run, so the plug-in reports what it did under QWEN_PLUGIN_TRACE=FILE: one line per
// preview event, each update with the pixels it read back from the layer through GIMP. The daemon
// runs its fake engine, whose step previews are flat gray (10 x the step) every second step.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "e2e_util.h"
#include "geometry.h"

using namespace qwen::plugin;
using namespace qwen::plugin::test;

namespace {

std::string test_config(const std::string& extra = "") {
  return "min_pixels = 0\nmax_pixels = 16384\nstart_timeout = 60\nautostart = false\n" + extra;
}

// Script-Fu: every item id of the image (groups' children too), one a line.
const std::string kWriteIds =
    "(define (pv-write-ids img path)"
    " (let ((port (open-output-file path)))"
    "  (define (walk items)"
    "   (for-each (lambda (l) (display l port) (newline port)"
    "              (if (= (car (gimp-item-is-group l)) TRUE)"
    "                  (walk (vector->list (cadr (gimp-item-get-children l))))))"
    "             items))"
    "  (walk (vector->list (cadr (gimp-image-get-layers img))))"
    "  (close-output-port port)))";

struct TraceLine {
  std::string kind;
  std::map<std::string, std::string> f;
};
std::vector<TraceLine> read_trace(const std::string& path) {
  std::vector<TraceLine> out;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    TraceLine t;
    words >> t.kind;
    for (std::string w; words >> w;)
      if (auto eq = w.find('='); eq != std::string::npos) t.f[w.substr(0, eq)] = w.substr(eq + 1);
    out.push_back(t);
  }
  return out;
}
size_t count_kind(const std::vector<TraceLine>& t, const std::string& kind) {
  size_t n = 0;
  for (auto& l : t) n += l.kind == kind;
  return n;
}

// FNV-1a 64 of a w x h RGBA image filled with `px` (what a flat preview reads back as).
std::string flat_fnv(int w, int h, const unsigned char px[4]) {
  uint64_t v = 0xcbf29ce484222325ull;
  for (long i = 0; i < long(w) * h; ++i)
    for (int c = 0; c < 4; ++c) {
      v ^= px[c];
      v *= 0x100000001b3ull;
    }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Checks the update lines of a trace: at least one, each on `layer`, of size w x h, flat gray
// (a multiple of 10, as the fake engine's previews are) and opaque, and its read-back checksum
// is that of the flat picture.
void expect_flat_updates(const std::vector<TraceLine>& trace, const std::string& layer, int w,
                         int h) {
  size_t updates = 0;
  for (const auto& l : trace) {
    if (l.kind != "update") continue;
    ++updates;
    EXPECT_EQ(l.f.at("layer"), layer);
    EXPECT_EQ(l.f.at("size"), std::to_string(w) + "x" + std::to_string(h));
    int r = -1, g = -1, b = -1, a = -1;
    ASSERT_EQ(std::sscanf(l.f.at("first").c_str(), "%d,%d,%d,%d", &r, &g, &b, &a), 4);
    EXPECT_TRUE(r == g && g == b && r > 0 && r % 10 == 0 && a == 255) << l.f.at("first");
    const unsigned char px[4] = {(unsigned char)r, (unsigned char)g, (unsigned char)b,
                                 (unsigned char)a};
    EXPECT_EQ(l.f.at("fnv"), flat_fnv(w, h, px)) << "the layer does not hold the flat preview";
  }
  EXPECT_GE(updates, 1u) << "no preview was seen during the job";
}

class PluginPreviewE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    if (plugin_binary().empty()) QWEN_E2E_UNAVAILABLE("the GIMP plug-in is not built");
    if (daemon_binary().empty())
      QWEN_E2E_UNAVAILABLE("qwen-imaged is not built (plug-in-only build)");
  }
};

// Runs gimp-console-2.10 with `script` and QWEN_PLUGIN_TRACE=trace; returns its output.
std::string run_traced(GimpEnv& env, const std::string& script, const std::string& trace) {
  auto e = env.env();
  e["QWEN_PLUGIN_TRACE"] = trace;
  const std::string out = env.file("gimp-output.txt");
  const std::string batch = "(begin (load \"" QWEN_PLUGIN_TEST_DIR "/e2e_helpers.scm\") " +
                            kWriteIds + " " + script + ")";
  {
    Child gimp({"/usr/bin/gimp-console-2.10", "-i", "-d", "-f", "-b", batch, "-b", "(gimp-quit 0)"},
               e, out);
    if (gimp.wait(300) == -1) std::ofstream(out, std::ios::app) << "\nTEST: GIMP TIMED OUT\n";
  }
  return read_file(out);
}

}  // namespace

// A 12-step generate into a selection: the preview layer appears at the result's place, holds the
// daemon's previews (read back through GIMP), and is gone afterwards: not in the image, undo not
// left frozen, and the result is the same as with the preview turned off (`preview = false`).
TEST_F(PluginPreviewE2E, PreviewLayerIsSeenDuringTheJobAndGoneAfterIt) {
  GimpEnv env(test_config());
  Daemon daemon(env, {"--fake-engine", "--fake-step-ms", "60", "--preview-every", "1", "--model",
                      tiny_model()});
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  const std::string trace = env.file("trace.txt");
  std::string out = run_traced(
      env,
      "(let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (l (cadr r)))"
      " (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 10 8 40 30)"
      " (qw-mark " +
          q(env.file("image-id.txt")) +
          " (number->string img))"
          " (let ((nl (car (plug-in-qwen-image-generate RUN-NONINTERACTIVE img l \"a fox\" \"\" 12"
          " 4.0 42 \"\"))))"
          "  (qw-write-layers img " +
          q(env.file("layers.txt")) +
          ")"
          "  (pv-write-ids img " +
          q(env.file("ids.txt")) +
          ")"
          "  (qw-mark " +
          q(env.file("undo.txt")) +
          " (number->string (car (gimp-image-undo-is-enabled img))))"
          "  (qw-save-layer img nl " +
          q(env.file("result-preview.pnm")) +
          "))"
          // The same job with the preview turned off in the plug-in's config.
          " (qw-mark " +
          q(env.config_path) + " " + q(test_config("preview = false\n")) +
          ")"
          " (let ((nl (car (plug-in-qwen-image-generate RUN-NONINTERACTIVE img l \"a fox\" \"\" 12"
          " 4.0 42 \"\"))))"
          "  (qw-save-layer img nl " +
          q(env.file("result-plain.pnm")) + ")))",
      trace);
  const auto t = read_trace(trace);
  ASSERT_EQ(count_kind(t, "add"), 1u) << read_file(trace) << out;  // none in the second run
  const std::string layer = t[0].f.at("layer");
  EXPECT_EQ(t[0].f.at("rect"), "10,8,40,30");
  EXPECT_EQ(t[0].f.at("image"), read_file(env.file("image-id.txt")));
  expect_flat_updates(t, layer, 40, 30);
  ASSERT_EQ(count_kind(t, "remove"), 1u) << read_file(trace);
  EXPECT_EQ(t.back().kind, "remove");
  EXPECT_EQ(t.back().f.at("layer"), layer);
  // Gone from the image: only the result above the base, and no item has the preview's id.
  auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 2u) << out;
  EXPECT_EQ(layers[0].name, "a fox");
  EXPECT_EQ((Rect{layers[0].x, layers[0].y, layers[0].w, layers[0].h}), (Rect{10, 8, 40, 30}));
  EXPECT_EQ(layers[1].name, "base");
  std::string ids = read_file(env.file("ids.txt"));
  EXPECT_EQ(("\n" + ids).find("\n" + layer + "\n"), std::string::npos) << ids;
  EXPECT_EQ(read_file(env.file("undo.txt")), "1");  // undo not left frozen
  // The result is what it is without any preview.
  Pnm with = read_pnm(env.file("result-preview.pnm")),
      without = read_pnm(env.file("result-plain.pnm"));
  ASSERT_EQ(with.width, 40) << out;
  EXPECT_EQ(with.data, without.data);
}

// GIMP's Cancel kills the plug-in: its preview layer stays in the image until the next run of a
// Qwen-Image procedure removes it (the dead owner's tag), and the daemon serves that run.
TEST_F(PluginPreviewE2E, KilledPluginsPreviewIsRemovedByTheNextRun) {
  GimpEnv env(test_config());
  Daemon daemon(env, {"--fake-engine", "--fake-step-ms", "100", "--preview-every", "1", "--model",
                      tiny_model()});
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  const std::string trace = env.file("trace.txt");
  auto e = env.env();
  e["QWEN_PLUGIN_TRACE"] = trace;
  const std::string batch =
      "(begin (load \"" QWEN_PLUGIN_TEST_DIR "/e2e_helpers.scm\") " + kWriteIds +
      " (let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (l (cadr r)))"
      "  (catch #f (plug-in-qwen-image-generate RUN-NONINTERACTIVE img l \"slow\" \"\" 300 4.0 1"
      " \"\"))"
      "  (qw-write-layers img " +
      q(env.file("layers-killed.txt")) +
      ")"
      "  (plug-in-qwen-image-generate RUN-NONINTERACTIVE img l \"next\" \"\" 2 4.0 1 \"\")"
      "  (qw-write-layers img " +
      q(env.file("layers-next.txt")) + ")))";
  Child gimp({"/usr/bin/gimp-console-2.10", "-i", "-d", "-f", "-b", batch, "-b", "(gimp-quit 0)"},
             e, env.file("gimp-output.txt"));
  // Kill the plug-in once its preview layer is in the image.
  bool added = false;
  for (int i = 0; i < 600 && !added; ++i) {
    added = count_kind(read_trace(trace), "add") > 0;
    if (!added) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(added) << read_file(env.file("gimp-output.txt"));
  auto plugins = children_named(gimp.pid(), "qwen-image-gimp");
  ASSERT_EQ(plugins.size(), 1u);
  kill(plugins[0], SIGKILL);
  EXPECT_EQ(gimp.wait(120), 0) << read_file(env.file("gimp-output.txt"));
  const auto t = read_trace(trace);
  const std::string layer = t[0].f.at("layer");
  // Left behind by the killed plug-in (it had no chance to remove it)...
  auto killed = read_layers(env.file("layers-killed.txt"));
  ASSERT_EQ(killed.size(), 2u) << read_file(env.file("gimp-output.txt"));
  EXPECT_EQ(killed[0].name, "Qwen-Image preview (removed when the job ends)");
  // ...and removed by the next run, which the daemon served.
  size_t stale = 0;
  for (const auto& l : t)
    if (l.kind == "stale") {
      ++stale;
      EXPECT_EQ(l.f.at("layer"), layer);
      EXPECT_EQ(l.f.at("owner").rfind("pid=" + std::to_string(plugins[0]), 0), 0u)
          << l.f.at("owner");
    }
  EXPECT_EQ(stale, 1u) << read_file(trace);
  auto next = read_layers(env.file("layers-next.txt"));
  ASSERT_EQ(next.size(), 2u) << read_file(env.file("gimp-output.txt"));
  EXPECT_EQ(next[0].name, "next");
  EXPECT_EQ(next[1].name, "base");
}

// Edit Selection: the preview covers the crop the result will cover, seen through the selection's
// feathered mask (transparent outside the ellipse), and the result comes back masked as before.
TEST_F(PluginPreviewE2E, EditSelectionPreviewShowsThroughTheSelection) {
  GimpEnv env(test_config());
  Daemon daemon(env, {"--fake-engine", "--fake-step-ms", "60", "--preview-every", "1", "--model",
                      tiny_model()});
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  const std::string trace = env.file("trace.txt");
  std::string out = run_traced(
      env,
      "(let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (l (cadr r)))"
      " (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 16 12 32 24)"
      " (plug-in-qwen-image-edit-selection RUN-NONINTERACTIVE img l \"a cat\" \"\" 12 4.0 3 0.9"
      " \"\")"
      " (qw-write-layers img " +
          q(env.file("layers.txt")) + "))",
      trace);
  const auto t = read_trace(trace);
  ASSERT_EQ(count_kind(t, "add"), 1u) << read_file(trace) << out;
  EXPECT_EQ(t[0].f.at("rect"), "0,0,64,48");  // the crop: the selection padded, on the layer
  size_t updates = 0;
  for (const auto& l : t)
    if (l.kind == "update") {
      ++updates;
      int r = -1, g = -1, b = -1, a = -1;
      ASSERT_EQ(std::sscanf(l.f.at("first").c_str(), "%d,%d,%d,%d", &r, &g, &b, &a), 4);
      EXPECT_EQ(a, 0) << "the corner lies outside the selection";
    }
  EXPECT_GE(updates, 1u) << read_file(trace);
  EXPECT_EQ(count_kind(t, "remove"), 1u) << read_file(trace);
  auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 2u) << out;
  EXPECT_EQ(layers[0].name, "a cat");
  EXPECT_TRUE(layers[0].has_mask);
}
