// End-to-end on GIMP 3.0 and 3.2: the GIMP 3 plug-in is built inside a Debian chroot with that
// GIMP (setup_chroot.sh: trixie = GIMP 3.0.4, forky = GIMP 3.2.x; cached in
// /var/cache/qwen-image/<suite>-gimp3), then gimp-console runs there with a fresh profile while
// qwen-imaged (fake engine) runs on the host; the chroot shares the host's /dev/shm
// (in_chroot.sh). Every case runs once per GIMP (the /Gimp3_0 and /Gimp3_2 instances); the cases
// mirror the 2.10 ones in tests/plugin/e2e_test.cpp. Where a chroot cannot be made the tests skip,
// except under CI=true, where they fail (QWEN_E2E_UNAVAILABLE).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "e2e_util.h"
#include "geometry.h"
#include "qwen_image/client.h"
#ifdef QWEN_E2E_TEST_PNG
#include "e2e_qwen21_util.h"
#endif

using namespace qwen::plugin;
using namespace qwen::plugin::test;
namespace fs = std::filesystem;

namespace {

const std::string kHere = QWEN_GIMP3_TEST_DIR;
const std::string kSource = QWEN_SOURCE_DIR;
// Build folder inside the chroot, one per source tree (a CMake cache is tied to its source path,
// and CI clones land in other folders than a developer's checkout).
const std::string kBuildInside = [] {
  std::string key = QWEN_SOURCE_DIR;
  for (auto& c : key)
    if (c == '/') c = '_';
  return "/var/cache/qwen-build-gimp3" + key;
}();

// One GIMP 3 under test: the Debian suite whose chroot carries it and the series it must be.
struct Gimp {
  std::string suite;   // trixie, forky (or sid: $QWEN_GIMP32_SUITE)
  std::string series;  // "3.0", "3.2"
};
void PrintTo(const Gimp& g, std::ostream* os) {
  *os << "GIMP " << g.series << " (" << g.suite << ")";
}
const Gimp kGimp30{"trixie", "3.0"};
const Gimp kGimp32{[] {
                     const char* s = std::getenv("QWEN_GIMP32_SUITE");
                     return std::string(s && *s ? s : "forky");
                   }(),
                   "3.2"};

std::string chroot_root(const Gimp& g) {
  const char* r = std::getenv(g.series == "3.0" ? "QWEN_GIMP3_CHROOT" : "QWEN_GIMP32_CHROOT");
  return r && *r ? r : "/var/cache/qwen-image/" + g.suite + "-gimp3";
}

// Runs argv with a time limit; returns the exit status (-1 on timeout) and fills `output`.
int run(const std::vector<std::string>& argv, double timeout_s, std::string& output) {
  TempDir tmp;
  const std::string out = tmp.path + "/out.txt";
  int rc;
  {
    Child child(argv, {}, out);
    rc = child.wait(timeout_s);
  }
  output = read_file(out);
  return rc;
}

std::string tail(const std::string& s, size_t n = 3000) {
  return s.size() > n ? s.substr(s.size() - n) : s;
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

// A chroot and the plug-in built in it, once per GIMP and test process.
struct ChrootSetup {
  std::string unavailable;  // why the tests cannot run here ("" = ready)
  std::string error;        // why they fail
  std::string plugin;       // the built plug-in (host path)
  std::string console;      // gimp-console-3.x inside the chroot
  std::string version;      // the chroot's GIMP package version
};
const ChrootSetup& setup(const Gimp& g) {
  static std::map<std::string, ChrootSetup> done;
  if (auto it = done.find(g.series); it != done.end()) return it->second;
  ChrootSetup& s = done[g.series];
  const std::string root = chroot_root(g);
  if (geteuid() != 0) {
    s.unavailable = "the GIMP 3 tests need root (debootstrap, chroot, mount namespaces)";
    return s;
  }
  // installers/setup.sh makes the chroots ahead; the first test makes them where it did not.
  std::string out;
  int rc = run({"/bin/bash", kHere + "/setup_chroot.sh", g.suite, root}, 1500, out);
  if (rc == 77 || rc == -1) {
    s.unavailable = rc == -1 ? "making the " + g.suite + " chroot took too long" : tail(out, 600);
    return s;
  }
  if (rc != 0) {
    s.error = "setup_chroot.sh " + g.suite + " failed: " + tail(out);
    return s;
  }
  rc = run({"/usr/sbin/chroot", root, "dpkg-query", "-W", "-f", "${Version}", "gimp"}, 60, out);
  s.version = trim(out);
  if (rc != 0 || s.version.rfind(g.series + ".", 0) != 0) {
    s.error = "the " + g.suite + " chroot (" + root + ") has GIMP '" + s.version + "', expected " +
              g.series + ".x";
    return s;
  }
  for (std::string c :
       {"gimp-console-" + g.series, std::string("gimp-console-3"), std::string("gimp-console")})
    if (fs::exists(root + "/usr/bin/" + c)) {
      s.console = c;
      break;
    }
  if (s.console.empty()) {
    s.error = "no gimp-console in " + root + "/usr/bin";
    return s;
  }
  // Incremental build of the GIMP 3 plug-in inside the chroot (the source bound read-write at
  // the same path; the build folder lives in the chroot, so it is cached with it).
  const std::string build =
      std::string("flock ") + kBuildInside + ".lock sh -c 'cmake -S " + kSource + " -B " +
      kBuildInside +
      " -DQWEN_IMAGE_PLUGIN_ONLY=ON -DQWEN_IMAGE_BUILD_TESTS=OFF >/dev/null && cmake --build " +
      kBuildInside + " -j2 --target qwen-image-gimp3'";
  rc = run({"/bin/bash", kHere + "/in_chroot.sh", root, kSource, "--", "bash", "-c", build}, 600,
           out);
  if (rc != 0) {
    s.error = "building the GIMP 3 plug-in in the " + g.suite + " chroot (GIMP " + s.version +
              ") failed (" + std::to_string(rc) + "): " + tail(out);
    return s;
  }
  s.plugin = root + kBuildInside + "/plugin/qwen-image-gimp3";
  if (!fs::exists(s.plugin)) s.error = "no plug-in at " + s.plugin;
  return s;
}

// A GIMP 3 profile with the plug-in (by default the one built for that GIMP), a plug-in config and
// a unique daemon instance; the folder is bound into the chroot at the same path.
struct Gimp3Env {
  Gimp3Env(const Gimp& gimp, const std::string& config_text, const std::string& plugin = "")
      : gimp(gimp), instance(unique_name("gimp3-e2e")) {
    fs::create_directories(dir.path + "/profile/plug-ins/qwen-image-gimp3");
    fs::copy_file(plugin.empty() ? setup(gimp).plugin : plugin,
                  dir.path + "/profile/plug-ins/qwen-image-gimp3/qwen-image-gimp3");
    std::ofstream(dir.path + "/qwen-image.conf") << config_text;
  }
  ~Gimp3Env() { stop_daemons_of_instance(instance); }
  Gimp gimp;
  TempDir dir;
  std::string instance;
  std::string file(const std::string& name) const { return dir.path + "/" + name; }
  std::string run_console(const std::string& script,
                          const std::vector<std::string>& extra_env = {}) {
    std::vector<std::string> argv = {"/bin/bash",
                                     kHere + "/in_chroot.sh",
                                     chroot_root(gimp),
                                     dir.path,
                                     kSource,
                                     "--",
                                     "env",
                                     "HOME=" + dir.path,
                                     "GIMP3_DIRECTORY=" + dir.path + "/profile",
                                     "QWEN_IMAGE_GIMP_CONFIG=" + file("qwen-image.conf"),
                                     "QWEN_IMAGE_INSTANCE=" + instance,
                                     "XDG_CACHE_HOME=" + dir.path + "/cache"};
    argv.insert(argv.end(), extra_env.begin(), extra_env.end());
    const std::string batch =
        "(begin (load " + q(kHere + "/e2e_helpers3.scm") + ") " + script + ")";
    for (std::string a :
         {setup(gimp).console, std::string("-i"), std::string("-n"),
          std::string("--batch-interpreter=plug-in-script-fu-eval"), std::string("-b")})
      argv.push_back(a);
    argv.push_back(batch);
    argv.push_back("--quit");
    std::string out;
    if (run(argv, 300, out) == -1) out += "\nTEST: GIMP TIMED OUT\n";
    return out;
  }
};

std::string test_config(const std::string& extra = "autostart = false\n") {
  return "min_pixels = 0\nmax_pixels = 16384\nstart_timeout = 60\n" + extra;
}

std::vector<std::string> fake_args() {
  return {"--fake-engine", "--fake-step-ms", "5", "--model", tiny_model(),
          "--model",       tiny_edit_model()};
}

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

// Ends the test (skip, or failure under CI=true) when there is no daemon to run.
#define NEED_DAEMON()          \
  if (daemon_binary().empty()) \
  QWEN_E2E_UNAVAILABLE("qwen-imaged is not built (plug-in-only build; set QWEN_TEST_DAEMON)")

class PluginGimp3E2E : public ::testing::TestWithParam<Gimp> {
 protected:
  void SetUp() override {
    const ChrootSetup& s = setup(GetParam());
    if (!s.unavailable.empty())
      QWEN_E2E_UNAVAILABLE("GIMP " + GetParam().series + " chroot unavailable: " + s.unavailable);
    ASSERT_TRUE(s.error.empty()) << s.error;
  }
};

}  // namespace

TEST_P(PluginGimp3E2E, GenerateAddsCanvasSizedLayerAboveActive) {
  NEED_DAEMON();
  Gimp3Env env(GetParam(), test_config());
  Daemon daemon(env.instance, env.file("daemon.log"), fake_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (l (cadr r)))"
      " (qw-save-flat img " +
      q(env.file("before.pnm")) +
      ")"
      " (plug-in-qwen-image-generate RUN-NONINTERACTIVE img (vector l) \"a red fox\" \"\" 3"
      " 4.0 42 \"\")"
      " (qw-write-layers img " +
      q(env.file("layers.txt")) +
      ")"
      " (qw-save-flat img " +
      q(env.file("after.pnm")) + "))");
  auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 2u) << out;
  EXPECT_EQ(layers[0].name, "a red fox");
  EXPECT_EQ((Rect{layers[0].x, layers[0].y, layers[0].w, layers[0].h}), (Rect{0, 0, 64, 48}));
  EXPECT_FALSE(layers[0].has_mask);
  EXPECT_EQ(layers[1].name, "base");
  Pnm before = read_pnm(env.file("before.pnm")), after = read_pnm(env.file("after.pnm"));
  ASSERT_EQ(before.width, 64) << out;
  ASSERT_EQ(after.width, 64) << out;
  EXPECT_GT(compare(before, after, [](int, int) { return true; }).differing, 64 * 48 / 2);
}

TEST_P(PluginGimp3E2E, GenerateUsesSelectionBoundsOnGrayOffsetLayer) {
  NEED_DAEMON();
  Gimp3Env env(GetParam(), test_config());
  Daemon daemon(env.instance, env.file("daemon.log"), fake_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  // Gray image; the layer is offset and partly outside; the selection is partly off the canvas.
  std::string out = env.run_console(
      "(let* ((r (qw-make-image GRAY 64 48 80 40 -8 4)) (img (car r)) (l (cadr r)))"
      " (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 40 30 40 30)"
      " (plug-in-qwen-image-generate RUN-NONINTERACTIVE img (vector l) \"lighthouse\" \"blurry\" 2"
      " 4.0 -1 \"qwen-image-tiny\")"
      " (qw-write-layers img " +
      q(env.file("layers.txt")) +
      ")"
      " (qw-save-flat img " +
      q(env.file("flat.pnm")) + "))");
  auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 2u) << out;
  EXPECT_EQ(layers[0].name, "lighthouse");
  EXPECT_EQ((Rect{layers[0].x, layers[0].y, layers[0].w, layers[0].h}), (Rect{40, 30, 24, 18}));
  EXPECT_EQ(read_pnm(env.file("flat.pnm")).channels, 1) << out;  // still a grayscale image
}

TEST_P(PluginGimp3E2E, EditSelectionKeepsEverythingOutsideTheSelection) {
  NEED_DAEMON();
  Gimp3Env env(GetParam(), test_config());
  Daemon daemon(env.instance, env.file("daemon.log"), fake_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  // Layer partly outside the canvas, selection partly outside the layer.
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 40 30 -10 -5)) (img (car r)) (l (cadr r)))"
      " (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 20 10 40 30)"
      " (qw-save-flat img " +
      q(env.file("before.pnm")) +
      ")"
      " (plug-in-qwen-image-edit-selection RUN-NONINTERACTIVE img (vector l) \"a cat\" \"\" 2 4.0"
      " 3 0.9 \"\")"
      " (qw-write-layers img " +
      q(env.file("layers.txt")) +
      ")"
      " (qw-save-flat img " +
      q(env.file("after.pnm")) + "))");
  auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 2u) << out;
  EXPECT_TRUE(layers[0].has_mask);
  EXPECT_EQ((Rect{layers[0].x, layers[0].y, layers[0].w, layers[0].h}), (Rect{-10, -5, 40, 30}));
  Pnm before = read_pnm(env.file("before.pnm")), after = read_pnm(env.file("after.pnm"));
  ASSERT_EQ(before.width, 64) << out;
  ASSERT_EQ(after.width, 64) << out;
  Rect sel{20, 10, 40, 30};
  auto outside = compare(before, after, [&](int x, int y) {
    return x < sel.x || y < sel.y || x >= sel.right() || y >= sel.bottom();
  });
  EXPECT_EQ(outside.differing, 0);
  EXPECT_GT(outside.total, 0);
}

TEST_P(PluginGimp3E2E, EditSelectionChangesOnlyInsideTheEllipse) {
  NEED_DAEMON();
  Gimp3Env env(GetParam(), test_config());
  Daemon daemon(env.instance, env.file("daemon.log"), fake_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 400 300 400 300 0 0)) (img (car r)) (l (cadr r)))"
      " (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 100 60 200 150)"
      " (qw-save-flat img " +
      q(env.file("before.pnm")) +
      ")"
      " (plug-in-qwen-image-edit-selection RUN-NONINTERACTIVE img (vector l) \"a cat\" \"\" 2"
      " 4.0 3 0.9 \"\")"
      " (qw-write-layers img " +
      q(env.file("layers.txt")) +
      ")"
      " (qw-save-flat img " +
      q(env.file("after.pnm")) + "))");
  auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 2u) << out;
  EXPECT_TRUE(layers[0].has_mask);
  EXPECT_EQ((Rect{layers[0].x, layers[0].y, layers[0].w, layers[0].h}), (Rect{50, 10, 300, 250}));
  Pnm before = read_pnm(env.file("before.pnm")), after = read_pnm(env.file("after.pnm"));
  ASSERT_EQ(before.width, 400) << out;
  ASSERT_EQ(after.width, 400) << out;
  // Unchanged 4 px or more outside the ellipse (radii 100 x 75 around (200, 135)).
  auto outside = compare(before, after, [](int x, int y) {
    double dx = (x + 0.5 - 200) / 104, dy = (y + 0.5 - 135) / 79;
    return dx * dx + dy * dy > 1;
  });
  EXPECT_EQ(outside.differing, 0) << "of " << outside.total;
  EXPECT_GT(outside.total, 0);
  // Changed inside: the fake engine's result went through a 4x downscale and back.
  auto inside = compare(before, after, [](int x, int y) {
    double dx = (x + 0.5 - 200) / 90, dy = (y + 0.5 - 135) / 65;
    return dx * dx + dy * dy < 1;
  });
  EXPECT_GT(inside.differing, 0);
  EXPECT_LT(inside.mean_abs, 8.0);
}

TEST_P(PluginGimp3E2E, EditLayerKeepsSizeAndOffsets) {
  NEED_DAEMON();
  Gimp3Env env(GetParam(), test_config());
  Daemon daemon(env.instance, env.file("daemon.log"), fake_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 40 30 5 7)) (img (car r)) (l (cadr r)))"
      " (plug-in-qwen-image-edit-layer RUN-NONINTERACTIVE img (vector l) \"make it red\" \"\" 2"
      " 4.0 1 \"\")"
      " (qw-write-layers img " +
      q(env.file("layers.txt")) + "))");
  auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 2u) << out;
  EXPECT_EQ((Rect{layers[0].x, layers[0].y, layers[0].w, layers[0].h}), (Rect{5, 7, 40, 30}));
  EXPECT_FALSE(layers[0].has_mask);
}

// No daemon needed: inside a Flatpak an unreachable daemon is explained as the sandbox's /dev/shm.
TEST_P(PluginGimp3E2E, UnreachableDaemonInFlatpakSaysHowToGrantShm) {
  Gimp3Env env(GetParam(), test_config());
  const std::string call =
      "(let* ((r (qw-make-image RGB 32 32 32 32 0 0)) (img (car r)) (l (cadr r)))"
      " (plug-in-qwen-image-generate RUN-NONINTERACTIVE img (vector l) \"x\" \"\" 2 4.0 1 \"\")"
      " (qw-mark " +
      q(env.file("done.txt")) + " \"done\"))";
  std::string plain = env.run_console(call);
  EXPECT_NE(plain.find("no daemon is running"), std::string::npos) << plain;
  EXPECT_EQ(plain.find("flatpak override"), std::string::npos) << plain;
  std::string flatpak = env.run_console(call, {"FLATPAK_ID=org.gimp.GIMP"});
  EXPECT_NE(flatpak.find("flatpak override --user --device=shm org.gimp.GIMP"), std::string::npos)
      << flatpak;
  // The profile folder of the GIMP it runs in (3.0 or 3.2), from the running libgimp.
  EXPECT_NE(
      flatpak.find("~/.var/app/org.gimp.GIMP/config/GIMP/" + GetParam().series + "/plug-ins/"),
      std::string::npos)
      << flatpak;
  EXPECT_FALSE(fs::exists(env.file("done.txt")));  // the call failed, the script stopped
}

// Any drawable is read as pixels: Edit Layer on a text layer adds a new raster (not text) layer
// with the text layer's size and offsets; the text layer stays a text layer.
TEST_P(PluginGimp3E2E, EditLayerReadsATextLayerAsPixels) {
  NEED_DAEMON();
  Gimp3Env env(GetParam(), test_config());
  Daemon daemon(env.instance, env.file("daemon.log"), fake_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 96 64 96 64 0 0)) (img (car r))"
      "       (t (car (gimp-text-font img -1 6 8 \"Qwen\" 0 TRUE 24 (car "
      "(gimp-context-get-font))))))"
      " (plug-in-qwen-image-edit-layer RUN-NONINTERACTIVE img (vector t) \"make it red\" \"\" 2"
      " 4.0 1 \"\")"
      " (qw-write-layers img " +
      q(env.file("layers.txt")) +
      ")"
      " (let* ((ls (car (gimp-image-get-layers img))) (port (open-output-file " +
      q(env.file("text.txt")) +
      ")))"
      "  (do ((i 0 (+ i 1))) ((= i (vector-length ls)))"
      "   (display (car (gimp-item-id-is-text-layer (vector-ref ls i))) port)"
      "   (newline port))"
      "  (close-output-port port)))");
  auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 3u) << out;
  EXPECT_EQ(layers[0].x, layers[1].x) << out;
  EXPECT_EQ(layers[0].y, layers[1].y);
  EXPECT_EQ(layers[0].w, layers[1].w);
  EXPECT_EQ(layers[0].h, layers[1].h);
  EXPECT_GT(layers[1].w, 0);
  // Script-Fu writes the booleans as 1/0 (or #t/#f): top to bottom result, text, base.
  std::string kinds = read_file(env.file("text.txt"));
  for (auto [from, to] : {std::pair{"#t", "1"}, std::pair{"#f", "0"}})
    for (size_t at; (at = kinds.find(from)) != std::string::npos;) kinds.replace(at, 2, to);
  EXPECT_EQ(kinds, "0\n1\n0\n") << out;
}

// One binary for 3.0 and 3.2: the plug-in built against GIMP 3.0.4's libgimp runs in GIMP 3.2.
TEST(PluginGimp3Compat, PluginBuiltOn30RunsIn32) {
  NEED_DAEMON();
  for (const Gimp* g : {&kGimp30, &kGimp32}) {
    const ChrootSetup& s = setup(*g);
    if (!s.unavailable.empty())
      QWEN_E2E_UNAVAILABLE("GIMP " + g->series + " chroot unavailable: " + s.unavailable);
    ASSERT_TRUE(s.error.empty()) << s.error;
  }
  Gimp3Env env(kGimp32, test_config(), setup(kGimp30).plugin);
  Daemon daemon(env.instance, env.file("daemon.log"), fake_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (l (cadr r)))"
      " (plug-in-qwen-image-generate RUN-NONINTERACTIVE img (vector l) \"a red fox\" \"\" 2"
      " 4.0 42 \"\")"
      " (qw-write-layers img " +
      q(env.file("layers.txt")) + "))");
  auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 2u) << "GIMP " << setup(kGimp32).version << ":\n" << out;
  EXPECT_EQ(layers[0].name, "a red fox");
  EXPECT_EQ((Rect{layers[0].x, layers[0].y, layers[0].w, layers[0].h}), (Rect{0, 0, 64, 48}));
}

// GIMP 3.2's link and vector layers are read as pixels like any drawable: Edit Layer on each adds
// a new raster layer of the same size and offsets; the link and vector layers stay what they are.
TEST(PluginGimp32Layers, LinkAndVectorLayersAreReadAsPixels) {
  NEED_DAEMON();
  const ChrootSetup& s = setup(kGimp32);
  if (!s.unavailable.empty()) QWEN_E2E_UNAVAILABLE("GIMP 3.2 chroot unavailable: " + s.unavailable);
  ASSERT_TRUE(s.error.empty()) << s.error;
  Gimp3Env env(kGimp32, test_config());
  Daemon daemon(env.instance, env.file("daemon.log"), fake_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  const std::string edit = " \"make it red\" \"\" 2 4.0 1 \"\")";
  std::string out = env.run_console(
      "(define (qw-true? r) (let ((v (car r))) (or (eq? v #t) (and (number? v) (= v 1)))))"
      "(let* ((r (qw-make-image RGB 96 64 96 64 0 0)) (img (car r)))"
      " (qw-save-flat img " +
      q(env.file("linked.png")) +
      ")"
      " (let ((ll (car (gimp-link-layer-new img " +
      q(env.file("linked.png")) +
      "))))"
      "  (gimp-image-insert-layer img ll 0 0)"
      "  (gimp-layer-set-offsets ll 4 6)"
      "  (plug-in-qwen-image-edit-layer RUN-NONINTERACTIVE img (vector ll)" +
      edit +
      ")"
      " (let ((p (car (gimp-path-new img \"shape\"))))"
      "  (gimp-image-insert-path img p 0 0)"
      "  (gimp-path-bezier-stroke-new-ellipse p 48 32 20 12 0)"
      "  (let ((vl (car (gimp-vector-layer-new img p))))"
      "   (gimp-image-insert-layer img vl 0 0)"
      "   (plug-in-qwen-image-edit-layer RUN-NONINTERACTIVE img (vector vl)" +
      edit +
      "))"
      " (qw-write-layers img " +
      q(env.file("layers.txt")) +
      ")"
      " (let* ((ls (car (gimp-image-get-layers img))) (port (open-output-file " +
      q(env.file("kinds.txt")) +
      ")))"
      "  (do ((i 0 (+ i 1))) ((= i (vector-length ls)))"
      "   (let ((id (vector-ref ls i)))"
      "    (display (cond ((qw-true? (gimp-item-id-is-link-layer id)) \"link\")"
      "                   ((qw-true? (gimp-item-id-is-vector-layer id)) \"vector\")"
      "                   (else \"raster\")) port)"
      "    (newline port)))"
      "  (close-output-port port)))");
  // Top to bottom: vector result, vector, link result, link, base.
  EXPECT_EQ(read_file(env.file("kinds.txt")), "raster\nvector\nraster\nlink\nraster\n") << out;
  auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 5u) << out;
  for (int i : {0, 2}) {
    EXPECT_EQ((Rect{layers[i].x, layers[i].y, layers[i].w, layers[i].h}),
              (Rect{layers[i + 1].x, layers[i + 1].y, layers[i + 1].w, layers[i + 1].h}))
        << i << "\n"
        << out;
    EXPECT_GT(layers[i].w, 0);
  }
  EXPECT_EQ((Rect{layers[3].x, layers[3].y, layers[3].w, layers[3].h}), (Rect{4, 6, 96, 64}));
}

// Decompose into Layers (issue #16), as tests/plugin/e2e_decompose_test.cpp does on 2.10: the
// fake engine stands in for the tiny Layered model (band layers: layer i holds band i of the
// picture). A 640x640 layer at resolution 640 is decomposed at its own size into a new group
// above it; the group composes exactly to the source, the bottom child is the engine's first
// layer, the source is untouched, and decomposing a resulting layer nests a new group above it.
TEST_P(PluginGimp3E2E, DecomposeStacksRgbaLayersInAGroupAndRecurses) {
  NEED_DAEMON();
  Gimp3Env env(GetParam(), test_config());
  Daemon daemon(env.instance, env.file("daemon.log"),
                {"--fake-engine", "--fake-step-ms", "2", "--model", tiny_model(), "--model",
                 tiny_layered_model()});
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 600 600 640 640 -20 10)) (img (car r)) (src (cadr r)))"
      " (qw-save-flat-showing img (list src) (list src) " +
      q(env.file("src-before.pnm")) +
      ")"
      " (let* ((g (car (plug-in-qwen-image-decompose RUN-NONINTERACTIVE img (vector src)"
      "   \"a poster\" \"\" 2 4.0 7 4 640 FALSE \"\")))"
      "        (kids (qw-children g)) (all (cons src (cons g kids))))"
      "  (qw-save-flat-showing img all (list src) " +
      q(env.file("src-only.pnm")) +
      ")"
      "  (qw-save-flat-showing img all (cons g kids) " +
      q(env.file("group-only.pnm")) +
      ")"
      "  (qw-save-flat-showing img all (list g (list-ref kids 3)) " +
      q(env.file("bottom-only.pnm")) +
      ")"
      "  (plug-in-qwen-image-decompose RUN-NONINTERACTIVE img (vector (list-ref kids 3))"
      "   \"again\" \"\" 1 1.0 5 2 640 TRUE \"\"))"
      " (qw-write-tree img " +
      q(env.file("tree.txt")) + "))");
  const auto tree = read_tree(env.file("tree.txt"));
  ASSERT_EQ(tree.size(), 9u) << out << read_file(env.file("daemon.log"));
  const std::vector<std::pair<int, std::string>> want = {
      {0, "Decomposed: a poster"}, {1, "Layer 4/4 a poster"}, {1, "Layer 3/4 a poster"},
      {1, "Layer 2/4 a poster"},   {1, "Decomposed: again"},  {2, "Layer 2/2 again"},
      {2, "Layer 1/2 again"},      {1, "Layer 1/4 a poster"}, {0, "base"}};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(tree[i].depth, want[i].first) << i;
    EXPECT_EQ(tree[i].name, want[i].second) << i;
    EXPECT_EQ((Rect{tree[i].x, tree[i].y, tree[i].w, tree[i].h}), (Rect{-20, 10, 640, 640}))
        << tree[i].name;
    EXPECT_EQ(tree[i].group, i == 0 || i == 4) << tree[i].name;
    if (!tree[i].group && i != 8) {
      EXPECT_TRUE(tree[i].alpha) << tree[i].name;
    }
  }
  Pnm before = read_pnm(env.file("src-before.pnm")), src_only = read_pnm(env.file("src-only.pnm"));
  Pnm group = read_pnm(env.file("group-only.pnm")), bottom = read_pnm(env.file("bottom-only.pnm"));
  ASSERT_EQ(before.width, 600) << out;
  ASSERT_EQ(group.width, 600) << out;
  ASSERT_EQ(bottom.width, 600) << out;
  EXPECT_EQ(before.data, src_only.data);  // the source is untouched
  EXPECT_EQ(compare(src_only, group, [](int, int) { return true; }).differing, 0);
  // The bottom child holds band 0 (the source's first 160 rows: canvas rows 10..169) only.
  EXPECT_EQ(compare(src_only, bottom, [](int, int y) { return y >= 10 && y < 170; }).differing, 0);
  EXPECT_EQ(compare(src_only, bottom, [](int, int y) { return y >= 490; }).differing, 600 * 110);
}

// Expand Canvas with Prompt (issue #17), as tests/plugin/e2e_expand_test.cpp does on 2.10 (fake
// engine: the fill is the picture with its edges stretched outwards): each original layer saved
// alone before and after is identical at its shifted place, the fill layer alone shows only the
// new area (its mask hides the old canvas), and a failing job leaves canvas, layers and pixels
// as they were.
TEST_P(PluginGimp3E2E, ExpandCanvasKeepsOriginalPixelsAndFillsOnlyTheNewArea) {
  NEED_DAEMON();
  Gimp3Env env(GetParam(), test_config());
  Daemon daemon(env.instance, env.file("daemon.log"),
                {"--fake-engine", "--fake-step-ms", "2", "--model", tiny_model()});
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  auto script = [&](const std::string& tag, const std::string& args) {
    auto f = [&](const std::string& name) { return q(env.file(tag + name)); };
    return "(let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (base (cadr r))"
           "       (top (car (gimp-layer-new img \"top\" 20 10 RGBA-IMAGE 100 LAYER-MODE-NORMAL))))"
           " (gimp-image-insert-layer img top 0 0)"
           " (gimp-layer-set-offsets top 30 20)"
           " (gimp-context-set-foreground '(200 30 30))"
           " (gimp-drawable-fill top FILL-FOREGROUND)"
           " (qw-save-flat img " +
           f("flat-before.pnm") + ") (qw-save-flat-showing img (list base top) (list base) " +
           f("base-before.pnm") + ") (qw-save-flat-showing img (list base top) (list top) " +
           f("top-before.pnm") +
           ")"
           " (let ((fl (catch -1 (car (plug-in-qwen-image-expand-canvas RUN-NONINTERACTIVE img"
           "   (vector base) " +
           args +
           ")))))"
           "  (qw-mark " +
           f("size.txt") +
           "   (string-append (number->string (car (gimp-image-get-width img))) \"x\""
           "                  (number->string (car (gimp-image-get-height img)))))"
           "  (qw-write-layers img " +
           f("layers.txt") + ") (qw-save-flat img " + f("flat-after.pnm") +
           ") (qw-save-flat-showing img (list base top) (list base) " + f("base-after.pnm") +
           ") (qw-save-flat-showing img (list base top) (list top) " + f("top-after.pnm") +
           ") (if (> fl 0) (qw-save-flat-showing img (list base top fl) (list fl) " +
           f("fill-only.pnm") + "))))";
  };
  auto shifted_differences = [](const Pnm& before, const Pnm& after, int dx, int dy) {
    int n = 0;
    for (int y = 0; y < before.height; ++y)
      for (int x = 0; x < before.width; ++x)
        n += std::memcmp(before.px(x, y), after.px(x + dx, y + dy), size_t(before.channels)) != 0;
    return n;
  };
  // Left 16, right 32, bottom 8.
  std::string out =
      env.run_console(script("ok-", "\"a green meadow\" \"\" 2 4.0 7 16 0 32 8 \"\"") + " " +
                      script("fail-", "\"fail\" \"\" 2 4.0 7 16 0 32 8 \"\""));
  EXPECT_EQ(read_file(env.file("ok-size.txt")), "112x56")
      << out << read_file(env.file("daemon.log"));
  auto layers = read_layers(env.file("ok-layers.txt"));
  ASSERT_EQ(layers.size(), 3u) << out;
  EXPECT_EQ(layers[0].name, "top");
  EXPECT_EQ((Rect{layers[0].x, layers[0].y, layers[0].w, layers[0].h}), (Rect{46, 20, 20, 10}));
  EXPECT_EQ(layers[1].name, "Expanded: a green meadow");
  EXPECT_EQ((Rect{layers[1].x, layers[1].y, layers[1].w, layers[1].h}), (Rect{0, 0, 112, 56}));
  EXPECT_TRUE(layers[1].has_mask);
  EXPECT_EQ((Rect{layers[2].x, layers[2].y, layers[2].w, layers[2].h}), (Rect{16, 0, 64, 48}));
  for (const char* name : {"base", "top", "flat"}) {
    Pnm before = read_pnm(env.file(std::string("ok-") + name + "-before.pnm"));
    Pnm after = read_pnm(env.file(std::string("ok-") + name + "-after.pnm"));
    ASSERT_EQ(before.width, 64) << name << out;
    ASSERT_EQ(after.width, 112) << name;
    ASSERT_EQ(after.height, 56) << name;
    EXPECT_EQ(shifted_differences(before, after, 16, 0), 0) << name;
  }
  // The fill alone: the background (220 180 60) over the old canvas, the gradient's stretched
  // left end (40 80 160) in the left margin.
  Pnm fill = read_pnm(env.file("ok-fill-only.pnm"));
  ASSERT_EQ(fill.width, 112) << out;
  Pnm bg_ref = fill;
  for (int y = 0; y < 56; ++y)
    for (int x = 0; x < 112; ++x) {
      unsigned char* p = &bg_ref.data[(size_t(y) * 112 + x) * 3];
      const bool old = x >= 16 && x < 80 && y < 48;
      const int want[3] = {old ? 220 : 40, old ? 180 : 80, old ? 60 : 160};
      for (int c = 0; c < 3; ++c) p[c] = (unsigned char)want[c];
    }
  EXPECT_EQ(
      compare(fill, bg_ref, [](int x, int y) { return x >= 16 && x < 80 && y < 48; }).differing, 0);
  EXPECT_LT(compare(fill, bg_ref, [](int x, int y) { return x < 12 && y >= 4 && y < 44; }).mean_abs,
            6.0);
  // The failing job: the message, and the image exactly as it was.
  EXPECT_NE(out.find("failure requested by the prompt"), std::string::npos) << out;
  EXPECT_EQ(read_file(env.file("fail-size.txt")), "64x48") << out;
  auto kept = read_layers(env.file("fail-layers.txt"));
  ASSERT_EQ(kept.size(), 2u) << out;
  EXPECT_EQ((Rect{kept[1].x, kept[1].y, kept[1].w, kept[1].h}), (Rect{0, 0, 64, 48}));
  for (const char* name : {"base", "top", "flat"}) {
    Pnm before = read_pnm(env.file(std::string("fail-") + name + "-before.pnm"));
    Pnm after = read_pnm(env.file(std::string("fail-") + name + "-after.pnm"));
    ASSERT_EQ(after.width, 64) << name;
    EXPECT_EQ(before.data, after.data) << name;
  }
}
// Live preview (issue #17): a 12-step generate into a selection under QWEN_PLUGIN_TRACE (one line
// per preview event; updates with the pixels read back from the layer through GIMP): the preview
// layer appears at the result's place holding the daemon's flat previews, and is gone afterwards
// (not in the image, undo not left frozen); the result equals the one with `preview = false`.
TEST_P(PluginGimp3E2E, PreviewLayerIsSeenDuringTheJobAndGoneAfterIt) {
  NEED_DAEMON();
  Gimp3Env env(GetParam(), test_config());
  Daemon daemon(
      env.instance, env.file("daemon.log"),
      {"--fake-engine", "--fake-step-ms", "60", "--preview-every", "1", "--model", tiny_model()});
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  const std::string trace = env.file("trace.txt");
  const std::string run =
      " (plug-in-qwen-image-generate RUN-NONINTERACTIVE img (vector l) \"a fox\" \"\" 12 4.0 42"
      " \"\")";
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (l (cadr r)))"
      " (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 10 8 40 30)"
      " (qw-mark " +
          q(env.file("image-id.txt")) + " (number->string img))" + run + " (qw-write-layers img " +
          q(env.file("layers.txt")) +
          ")"
          " (qw-mark " +
          q(env.file("ids.txt")) +
          "  (apply string-append (map (lambda (x) (string-append (number->string x) \" \"))"
          "   (vector->list (car (gimp-image-get-layers img))))))"
          " (qw-mark " +
          q(env.file("undo.txt")) +
          "  (if (qw-true? (car (gimp-image-undo-is-enabled img))) \"1\" \"0\"))"
          " (qw-save-flat img " +
          q(env.file("flat-preview.pnm")) +
          ")"
          // The same job again with the preview turned off: its result covers the first one.
          " (qw-mark " +
          q(env.file("qwen-image.conf")) + " " + q(test_config("preview = false\n")) + ")" + run +
          " (qw-save-flat img " + q(env.file("flat-plain.pnm")) + "))",
      {"QWEN_PLUGIN_TRACE=" + trace});
  std::vector<std::map<std::string, std::string>> adds, updates, removes;
  std::istringstream lines(read_file(trace));
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string kind, w;
    words >> kind;
    std::map<std::string, std::string> f;
    while (words >> w)
      if (auto eq = w.find('='); eq != std::string::npos) f[w.substr(0, eq)] = w.substr(eq + 1);
    (kind == "add" ? adds : kind == "update" ? updates : removes).push_back(f);
  }
  ASSERT_EQ(adds.size(), 1u) << read_file(trace) << out;  // none in the second run
  const std::string layer = adds[0]["layer"];
  EXPECT_EQ(adds[0]["rect"], "10,8,40,30");
  EXPECT_EQ(adds[0]["image"], read_file(env.file("image-id.txt")));
  ASSERT_GE(updates.size(), 1u) << "no preview was seen during the job\n" << read_file(trace);
  for (auto& u : updates) {
    EXPECT_EQ(u["layer"], layer);
    EXPECT_EQ(u["size"], "40x30");
    int r = -1, g = -1, b = -1, a = -1;
    ASSERT_EQ(std::sscanf(u["first"].c_str(), "%d,%d,%d,%d", &r, &g, &b, &a), 4);
    EXPECT_TRUE(r == g && g == b && r > 0 && r % 10 == 0 && a == 255) << u["first"];
    uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64 of the flat 40x30 RGBA picture
    for (int i = 0; i < 40 * 30; ++i)
      for (int c : {r, g, b, a}) h = (h ^ uint64_t(c)) * 0x100000001b3ull;
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
    EXPECT_EQ(u["fnv"], hex) << "the layer does not hold the flat preview";
  }
  ASSERT_EQ(removes.size(), 1u) << read_file(trace);
  EXPECT_EQ(removes[0]["layer"], layer);
  auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 2u) << out;
  EXPECT_EQ(layers[0].name, "a fox");
  EXPECT_EQ((Rect{layers[0].x, layers[0].y, layers[0].w, layers[0].h}), (Rect{10, 8, 40, 30}));
  EXPECT_EQ(layers[1].name, "base");
  EXPECT_EQ((" " + read_file(env.file("ids.txt"))).find(" " + layer + " "), std::string::npos);
  EXPECT_EQ(read_file(env.file("undo.txt")), "1");  // undo not left frozen
  Pnm with = read_pnm(env.file("flat-preview.pnm")), without = read_pnm(env.file("flat-plain.pnm"));
  ASSERT_EQ(with.width, 64) << out;
  EXPECT_EQ(with.data, without.data);
}

// GIMP's Cancel kills the plug-in: its preview layer stays until the next run of a Qwen-Image
// procedure removes it (its owner is gone), and the daemon serves that run.
TEST_P(PluginGimp3E2E, KilledPluginsPreviewIsRemovedByTheNextRun) {
  NEED_DAEMON();
  Gimp3Env env(GetParam(), test_config());
  Daemon daemon(
      env.instance, env.file("daemon.log"),
      {"--fake-engine", "--fake-step-ms", "100", "--preview-every", "1", "--model", tiny_model()});
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  const std::string trace = env.file("trace.txt");
  const std::string script =
      "(begin (load " + q(kHere + "/e2e_helpers3.scm") +
      ") (let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (l (cadr r)))"
      "  (catch #f (plug-in-qwen-image-generate RUN-NONINTERACTIVE img (vector l) \"slow\" \"\""
      " 200 4.0 1 \"\"))"  // 20 s (GIMP 3 takes at most 200 steps)
      "  (qw-write-layers img " +
      q(env.file("layers-killed.txt")) +
      ")"
      "  (plug-in-qwen-image-generate RUN-NONINTERACTIVE img (vector l) \"next\" \"\" 2 4.0 1"
      " \"\")"
      "  (qw-write-layers img " +
      q(env.file("layers-next.txt")) + ")))";
  // As Gimp3Env::run_console, without waiting: gimp-console runs in the chroot (same pid after
  // the execs of in_chroot.sh), the plug-in is its child.
  Child gimp({"/bin/bash",
              kHere + "/in_chroot.sh",
              chroot_root(env.gimp),
              env.dir.path,
              kSource,
              "--",
              "env",
              "HOME=" + env.dir.path,
              "GIMP3_DIRECTORY=" + env.dir.path + "/profile",
              "QWEN_IMAGE_GIMP_CONFIG=" + env.file("qwen-image.conf"),
              "QWEN_IMAGE_INSTANCE=" + env.instance,
              "XDG_CACHE_HOME=" + env.dir.path + "/cache",
              "QWEN_PLUGIN_TRACE=" + trace,
              setup(env.gimp).console,
              "-i",
              "-n",
              "--batch-interpreter=plug-in-script-fu-eval",
              "-b",
              script,
              "--quit"},
             {}, env.file("gimp-output.txt"));
  bool added = false;
  for (int i = 0; i < 600 && !added; ++i) {
    added = read_file(trace).rfind("add ", 0) == 0;
    if (!added) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(added) << read_file(env.file("gimp-output.txt"));
  auto plugins = children_named(gimp.pid(), "qwen-image-gimp");  // comm: 15 characters
  ASSERT_EQ(plugins.size(), 1u) << read_file(env.file("gimp-output.txt"));
  kill(plugins[0], SIGKILL);
  EXPECT_EQ(gimp.wait(240), 0) << read_file(env.file("gimp-output.txt"));
  const std::string t = read_file(trace);
  const std::string layer = t.substr(10, t.find(' ', 10) - 10);  // "add layer=ID ..."
  auto killed = read_layers(env.file("layers-killed.txt"));
  ASSERT_EQ(killed.size(), 2u) << read_file(env.file("gimp-output.txt"));
  EXPECT_EQ(killed[0].name, "Qwen-Image preview (removed when the job ends)");
  EXPECT_NE(t.find("stale layer=" + layer + " owner=pid=" + std::to_string(plugins[0]) + " "),
            std::string::npos)
      << t;
  auto next = read_layers(env.file("layers-next.txt"));
  ASSERT_EQ(next.size(), 2u) << read_file(env.file("gimp-output.txt"));
  EXPECT_EQ(next[0].name, "next");
  EXPECT_EQ(next[1].name, "base");
}

// Reference layers (issue #17): Edit Layer with a reference layer from another open image on the
// tiny Edit-2509 model (CPU, daemon on the host): the new layer is exactly the picture the daemon
// returns for the edited layer followed by the reference (the same job sent straight through the
// client library), as under GIMP 2.10 (PluginReferencesE2E).
TEST_P(PluginGimp3E2E, EditLayerWithAReferenceLayerFromAnotherImage) {
  NEED_DAEMON();
  Gimp3Env env(GetParam(), test_config());
  Daemon daemon(
      env.instance, env.file("daemon.log"),
      {"--device", "cpu", "--dtype", "float32", "--threads", "1", "--model", tiny_edit_model()});
  ASSERT_TRUE(daemon.ready(300)) << read_file(env.file("daemon.log"));
  // Arguments: prompt negative steps cfg seed model loras lightning reference-layer-1 (.. -9).
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 48 32 8 6)) (img (car r)) (l (cadr r))"
      "       (r2 (qw-make-image RGB 40 24 40 24 0 0)) (img2 (car r2)) (ref (cadr r2)))"
      " (gimp-drawable-invert ref FALSE)"
      " (qw-save-flat-showing img (list l) (list l) " +
      q(env.file("target.pnm")) + ") (qw-save-flat img2 " + q(env.file("ref.pnm")) +
      ")"
      " (let ((nl (car (plug-in-qwen-image-edit-layer RUN-NONINTERACTIVE img (vector l)"
      "   \"put the jacket on the person\" \"\" 2 1.0 5 \"\" \"\" FALSE ref))))"
      "  (qw-save-flat-showing img (list l nl) (list nl) " +
      q(env.file("result.pnm")) + ")) (qw-write-layers img " + q(env.file("layers.txt")) + "))");
  const auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 2u) << out << read_file(env.file("daemon.log"));
  EXPECT_EQ((Rect{layers[0].x, layers[0].y, layers[0].w, layers[0].h}), (Rect{8, 6, 48, 32}));
  const Pnm target = read_pnm(env.file("target.pnm")), ref = read_pnm(env.file("ref.pnm"));
  const Pnm result = read_pnm(env.file("result.pnm"));
  ASSERT_EQ(target.width, 64) << out;
  ASSERT_EQ(ref.width, 40) << out;
  ASSERT_EQ(result.width, 64) << out;
  std::vector<uint8_t> t3, r3;
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 48; ++x)
      t3.insert(t3.end(), target.px(8 + x, 6 + y), target.px(8 + x, 6 + y) + 3);
  for (int y = 0; y < 24; ++y)
    for (int x = 0; x < 40; ++x) r3.insert(r3.end(), ref.px(x, y), ref.px(x, y) + 3);
  qwen::ipc::JobRequest req;
  req.pipeline = "edit-auto";
  req.prompts = {"put the jacket on the person"};
  req.width = 48;
  req.height = 32;
  req.steps = 2;
  req.true_cfg_scale = 1.0f;
  req.seed = 5;
  req.exact_geometry = false;
  req.result_format = qwen::ipc::PixelFormat::RGB8;
  req.images = {qwen::ipc::ImageView{48, 32, qwen::ipc::PixelFormat::RGB8, 0, t3.data()},
                qwen::ipc::ImageView{40, 24, qwen::ipc::PixelFormat::RGB8, 0, r3.data()}};
  auto client = qwen::ipc::Client::connect(env.instance);
  const auto images = client.run(req);
  ASSERT_EQ(images.size(), 1u);
  ASSERT_EQ(images[0].width, 48);
  int differ = 0;
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 48; ++x)
      for (int c = 0; c < 3; ++c)
        differ += result.px(8 + x, 6 + y)[c] != images[0].bytes[(size_t(y) * 48 + x) * 3 + c];
  EXPECT_EQ(differ, 0) << "channel values of the layer that differ from the daemon's picture";
}

// Qwen-Image-2.1 (issue #15) on a fresh random tiny 2.1 model served by qwen-imaged on the host
// (CPU): Generate, Edit Layer with an RGBA reference layer and Edit Selection, each compared with
// what the `qwen-image` CLI writes for the same job, as under GIMP 2.10 (PluginQwen21E2E; the
// cases and their checks: tests/plugin/e2e_qwen21_util.h).
#ifdef QWEN_E2E_TEST_PNG
#define NEED_QWEN21()                                                           \
  NEED_DAEMON();                                                                \
  if (auto why = qwen21_unavailable(); !why.empty()) QWEN_E2E_UNAVAILABLE(why); \
  TinyQwen21 m(GetParam().series == "3.0" ? 7 : 8);                             \
  ASSERT_FALSE(m.model.empty()) << m.log;                                       \
  Gimp3Env env(GetParam(), kQwen21Config);                                      \
  Daemon daemon(env.instance, env.file("daemon.log"), m.daemon_args());         \
  ASSERT_TRUE(daemon.ready(300)) << read_file(env.file("daemon.log"))
#define F(name) q(env.file(name))
#else
#define NEED_QWEN21() \
  QWEN_E2E_UNAVAILABLE("built without the daemon's PNG library and CLI (plug-in-only build)")
#endif

TEST_P(PluginGimp3E2E, Qwen21GenerateGivesALayerWithTheClisAlpha) {
  NEED_QWEN21();
#ifdef QWEN_E2E_TEST_PNG
  const std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 64 64 64 0 0)) (img (car r)) (l (cadr r)))"
      " (let ((nl (car (plug-in-qwen-image-generate RUN-NONINTERACTIVE img (vector l) " +
      q(kQwen21GeneratePrompt) + " \"\" 2 1.0 5 \"\"))))  (qw-save-drawable nl #f " +
      F("result.pam") + ")) (qw-write-layers img " + F("layers.txt") + "))");
  expect_qwen21_generate(m, env.dir.path, ".pam", out);
#endif
}

TEST_P(PluginGimp3E2E, Qwen21EditLayerWithAnRgbaReferenceGivesTheClisEditOnTheLayersGrid) {
  NEED_QWEN21();
#ifdef QWEN_E2E_TEST_PNG
  const std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 96 72 77 53 9 11)) (img (car r)) (l (cadr r))"
      "       (r2 (qw-make-image RGB 40 24 40 24 0 0)) (img2 (car r2)) (ref (cadr r2)))"
      " (gimp-layer-add-alpha l)"
      " (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 20 20 15 10)"
      " (gimp-drawable-edit-clear l) (gimp-selection-none img)"
      " (gimp-drawable-invert ref FALSE) (gimp-layer-add-alpha ref)"
      " (gimp-image-select-rectangle img2 CHANNEL-OP-REPLACE 0 0 10 24)"
      " (gimp-drawable-edit-clear ref) (gimp-selection-none img2)"
      " (qw-save-drawable l #f " +
      F("target.pam") + ") (qw-save-drawable ref #f " + F("ref.pam") +
      ")"
      " (let ((nl (car (plug-in-qwen-image-edit-layer RUN-NONINTERACTIVE img (vector l) " +
      q(kQwen21EditLayerPrompt) + " \"\" 2 1.0 5 \"\" \"\" FALSE ref))))" +
      "  (qw-save-drawable nl #f " + F("result.pam") + ")) (qw-write-layers img " +
      F("layers.txt") + "))");
  expect_qwen21_edit_layer(m, env.dir.path, ".pam", out);
#endif
}

TEST_P(PluginGimp3E2E, Qwen21EditSelectionMasksTheClisEditOfTheCropToTheSelection) {
  NEED_QWEN21();
#ifdef QWEN_E2E_TEST_PNG
  const std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 150 110 140 100 5 4)) (img (car r)) (l (cadr r)))"
      " (gimp-context-set-antialias FALSE)"
      " (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 61 41 37 25)"
      " (qw-save-drawable (car (gimp-image-get-selection img)) #t " +
      F("selection.pgm") + ") (qw-save-drawable l #f " + F("src-before.pam") +
      ") (qw-save-flat img " + F("flat-before.pnm") +
      ")"
      " (let ((nl (car (plug-in-qwen-image-edit-selection RUN-NONINTERACTIVE img (vector l) " +
      q(kQwen21EditSelectionPrompt) + " \"\" 2 1.0 5 0.9 \"\"))))" + "  (qw-save-drawable nl #f " +
      F("result.pam") + ")" + "  (qw-save-drawable (car " + "(gimp-layer-get-mask nl)) #t " +
      F("mask.pgm") + "))" + " (qw-save-drawable l #f " + F("src-after.pam") +
      ") (qw-save-flat img " + F("flat-after.pnm") + ") (qw-write-layers img " + F("layers.txt") +
      "))");
  expect_qwen21_edit_selection(m, env.dir.path, ".pam", out);
#endif
}

INSTANTIATE_TEST_SUITE_P(Gimp, PluginGimp3E2E, ::testing::Values(kGimp30, kGimp32),
                         [](const ::testing::TestParamInfo<Gimp>& info) {
                           return info.param.series == "3.0" ? "Gimp3_0" : "Gimp3_2";
                         });

// The procedure table's appended arguments on GIMP 3 (issue #17): loras, lightning (and for the
// edits reference-layer-1 .. -9) come after the historic ones with defaults, so the old positional calls
// above keep working and a script can add them; the LoRAs are recorded in the result's
// "qwen-image-params" parasite, and a bad LoRA string is refused naming the entry.
TEST_P(PluginGimp3E2E, AppendedLoraArgumentsRunAndAreRecorded) {
  NEED_DAEMON();
  Gimp3Env env(GetParam(), test_config());
  auto args = fake_args();
  args.push_back("--lora-dir");
  args.push_back(kSource + "/tests/fixtures/lora-samples");
  Daemon daemon(env.instance, env.file("daemon.log"), args);
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  auto mark = [&](const std::string& file, const std::string& call) {
    return " (let ((nl (car " + call + "))) (qw-mark " + q(env.file(file)) +
           " (caddr (car (gimp-item-get-parasite nl \"qwen-image-params\")))))";
  };
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (l (cadr r))"
      "       (r2 (qw-make-image RGB 32 32 32 32 0 0)) (ref (cadr r2)))" +
      mark("gen.txt",
           "(plug-in-qwen-image-generate RUN-NONINTERACTIVE img (vector l) \"a red fox\" \"\" 2"
           " 4.0 42 \"\" \"kohya_musubi:0.7,diffsynth:-0.3\" TRUE)") +
      mark("edit.txt",
           "(plug-in-qwen-image-edit-layer RUN-NONINTERACTIVE img (vector l) \"make it night\""
           " \"\" 2 4.0 1 \"qwen-image-edit-2509-tiny\" \"kohya_musubi\" FALSE ref)") +
      mark("old.txt",
           "(plug-in-qwen-image-generate RUN-NONINTERACTIVE img (vector l) \"a red fox\" \"\" 2"
           " 4.0 42 \"\")") +
      " (qw-write-layers img " + q(env.file("layers.txt")) + "))");
  auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 4u) << out << read_file(env.file("daemon.log"));
  const std::string gen = read_file(env.file("gen.txt"));
  EXPECT_NE(gen.find("\nloras=kohya_musubi:0.7,diffsynth:-0.3\nlightning=1"), std::string::npos)
      << gen << out;
  const std::string edit = read_file(env.file("edit.txt"));
  EXPECT_NE(edit.find("pipeline=edit-auto\nmodel=qwen-image-edit-2509-tiny\n"), std::string::npos)
      << edit;
  EXPECT_NE(edit.find("\nloras=kohya_musubi:1\nlightning=0"), std::string::npos) << edit;
  const std::string old = read_file(env.file("old.txt"));
  EXPECT_NE(old.find("\nloras=\nlightning=0"), std::string::npos) << old;

  out = env.run_console(
      "(let* ((r (qw-make-image RGB 32 32 32 32 0 0)) (img (car r)) (l (cadr r)))"
      " (plug-in-qwen-image-generate RUN-NONINTERACTIVE img (vector l) \"x\" \"\" 2 4.0 1 \"\""
      " \"kohya_musubi:0.5,style:strong\" FALSE)"
      " (qw-mark " +
      q(env.file("done.txt")) + " \"done\"))");
  EXPECT_NE(out.find("LoRA entry 'style:strong'"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(env.file("done.txt")));  // the call failed, the script stopped
}

// The LoRA rows of the GIMP 3 dialog (issue #14), in the full GIMP (gimp-3.x in the chroot, on a
// host Xvfb): the `loras` string a script passes is split into the rows (a LoRA the daemon lists)
// and the "Other LoRAs" text (an absolute path); a LoRA chosen in the next row's list, with a
// negative strength (the plug-in's QWEN_IMAGE_GIMP_DIALOG_PICK test hook, which then presses OK),
// is composed into the one string the procedure runs with and records in the result's parasite.
// A name that is not in the daemon's list cannot be chosen (the dialog is cancelled).
TEST_P(PluginGimp3E2E, DialogLoraRowsComposeTheLorasStringTheProcedureRecords) {
  NEED_DAEMON();
  if (!fs::exists("/usr/bin/Xvfb")) QWEN_E2E_UNAVAILABLE("needs Xvfb (apt-get install xvfb)");
  const std::string gui = "/usr/bin/gimp-" + GetParam().series;
  if (!fs::exists(chroot_root(GetParam()) + gui))
    QWEN_E2E_UNAVAILABLE("no " + gui + " in " + chroot_root(GetParam()));
  Gimp3Env env(GetParam(), test_config());
  const std::string loras = env.file("loras");
  const std::string samples = kSource + "/tests/fixtures/lora-samples/";
  fs::create_directories(loras);
  fs::copy_file(samples + "lightx2v.safetensors",
                loras + "/Qwen-Image-Lightning-8steps-V1.0.safetensors");
  fs::copy_file(samples + "kohya_musubi.safetensors", loras + "/kohya_musubi.safetensors");
  fs::copy_file(samples + "aitoolkit.safetensors", loras + "/aitoolkit.safetensors");
  auto args = fake_args();
  args.push_back("--lora-dir");
  args.push_back(loras);
  Daemon daemon(env.instance, env.file("daemon.log"), args);
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));

  int n = 90;
  while (fs::exists("/tmp/.X" + std::to_string(n) + "-lock") ||
         fs::exists("/tmp/.X11-unix/X" + std::to_string(n)))
    ++n;
  const std::string display = ":" + std::to_string(n);
  Child xvfb({"/usr/bin/Xvfb", display, "-screen", "0", "1280x1024x24", "-nolisten", "tcp"}, {},
             env.file("xvfb.log"));
  for (int i = 0; i < 100 && !fs::exists("/tmp/.X11-unix/X" + std::to_string(n)); ++i)
    usleep(100000);
  ASSERT_TRUE(fs::exists("/tmp/.X11-unix/X" + std::to_string(n)))
      << read_file(env.file("xvfb.log"));

  const std::string abs = loras + "/aitoolkit.safetensors";
  auto run_dialog = [&](const std::string& pick, const std::string& mark) {
    const std::string script =
        "(begin (load " + q(kHere + "/e2e_helpers3.scm") +
        ") (let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (l (cadr r)))"
        " (let ((nl (car (plug-in-qwen-image-generate RUN-INTERACTIVE img (vector l)"
        " \"a red fox\" \"\" 2 4.0 42 \"\" " +
        q("kohya_musubi:0.7," + abs + ":0.5") + " FALSE)))) (qw-mark " + q(env.file(mark)) +
        " (caddr (car (gimp-item-get-parasite nl \"qwen-image-params\")))))))";
    std::string out;
    const int rc = run({"/bin/bash",
                        kHere + "/in_chroot.sh",
                        chroot_root(GetParam()),
                        env.dir.path,
                        kSource,
                        "/tmp/.X11-unix",
                        "--",
                        "env",
                        "HOME=" + env.dir.path,
                        "GIMP3_DIRECTORY=" + env.dir.path + "/profile",
                        "QWEN_IMAGE_GIMP_CONFIG=" + env.file("qwen-image.conf"),
                        "QWEN_IMAGE_INSTANCE=" + env.instance,
                        "XDG_CACHE_HOME=" + env.dir.path + "/cache",
                        "DISPLAY=" + display,
                        "QWEN_IMAGE_GIMP_DIALOG_SNAPSHOT=" + env.dir.path,
                        "QWEN_IMAGE_GIMP_DIALOG_PICK=" + pick,
                        "QWEN_IMAGE_GIMP_DIALOG_ACCEPT=1",
                        gui,
                        "-d",
                        "-f",
                        "-s",
                        "--batch-interpreter=plug-in-script-fu-eval",
                        "-b",
                        script,
                        "--quit"},  // also after a batch command failed (the cancelled dialog)
                       300, out);
    EXPECT_NE(rc, -1) << "GIMP did not finish in 300 s: " << out;
    return out;
  };
  std::string out = run_dialog("aitoolkit:-0.3", "params.txt");
  const std::string params = read_file(env.file("params.txt"));
  EXPECT_NE(params.find("\nloras=kohya_musubi:0.7,aitoolkit:-0.3," + abs + ":0.5\n"),
            std::string::npos)
      << params << out << read_file(env.file("daemon.log"));
  EXPECT_TRUE(fs::exists(env.file("gimp3-plug-in-qwen-image-generate.png"))) << out;

  out = run_dialog("not-in-the-list:1", "none.txt");
  EXPECT_NE(out.find("no LoRA 'not-in-the-list' in the list"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(env.file("none.txt")));  // cancelled: no layer, no parasite
}
