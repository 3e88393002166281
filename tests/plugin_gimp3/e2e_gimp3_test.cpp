// End-to-end on GIMP 3.0: the GIMP 3 plug-in is built inside a Debian 13 (trixie) chroot with
// GIMP 3.0.4 (setup_chroot.sh, cached in /var/cache/qwen-image/trixie-gimp3), then
// gimp-console-3.0 runs there with a fresh profile while qwen-imaged (fake engine) runs on the
// host; the chroot shares the host's /dev/shm (in_chroot.sh). The cases mirror the 2.10 ones in
// tests/plugin/e2e_test.cpp. Everything skips (not passes) where the chroot cannot be made.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "e2e_util.h"
#include "geometry.h"

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

std::string chroot_root() {
  const char* r = std::getenv("QWEN_GIMP3_CHROOT");
  return r && *r ? r : "/var/cache/qwen-image/trixie-gimp3";
}

std::string q(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
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

// The chroot and the plug-in built in it, once per test process.
struct ChrootSetup {
  std::string skip;    // why the tests skip ("" = ready)
  std::string error;   // why they fail
  std::string plugin;  // the built plug-in (host path)
};
const ChrootSetup& setup() {
  static const ChrootSetup s = [] {
    ChrootSetup s;
    if (geteuid() != 0) {
      s.skip = "the GIMP 3 tests need root (debootstrap, chroot, mount namespaces)";
      return s;
    }
    std::string out;
    int rc = run({"/bin/bash", kHere + "/setup_chroot.sh", chroot_root()}, 780, out);
    if (rc == 77 || rc == -1) {
      s.skip = rc == -1 ? "making the trixie chroot took too long" : tail(out, 600);
      return s;
    }
    if (rc != 0) {
      s.error = "setup_chroot.sh failed: " + tail(out);
      return s;
    }
    // Incremental build of the GIMP 3 plug-in inside the chroot (the source bound read-write at
    // the same path; the build folder lives in the chroot, so it is cached with it).
    const std::string build =
        std::string("flock ") + kBuildInside + ".lock sh -c 'cmake -S " + kSource + " -B " +
        kBuildInside +
        " -DQWEN_IMAGE_PLUGIN_ONLY=ON -DQWEN_IMAGE_BUILD_TESTS=OFF >/dev/null && cmake --build " +
        kBuildInside + " -j2 --target qwen-image-gimp3'";
    rc = run(
        {"/bin/bash", kHere + "/in_chroot.sh", chroot_root(), kSource, "--", "bash", "-c", build},
        300, out);
    if (rc != 0) {
      s.error = "building the GIMP 3 plug-in in the chroot failed (" + std::to_string(rc) +
                "): " + tail(out);
      return s;
    }
    s.plugin = chroot_root() + kBuildInside + "/plugin/qwen-image-gimp3";
    if (!fs::exists(s.plugin)) s.error = "no plug-in at " + s.plugin;
    return s;
  }();
  return s;
}

// A GIMP 3 profile with the plug-in, a plug-in config and a unique daemon instance; the folder is
// bound into the chroot at the same path.
struct Gimp3Env {
  explicit Gimp3Env(const std::string& config_text) : instance(unique_name("gimp3-e2e")) {
    fs::create_directories(dir.path + "/profile/plug-ins/qwen-image-gimp3");
    fs::copy_file(setup().plugin, dir.path + "/profile/plug-ins/qwen-image-gimp3/qwen-image-gimp3");
    std::ofstream(dir.path + "/qwen-image.conf") << config_text;
  }
  ~Gimp3Env() { stop_daemons_of_instance(instance); }
  TempDir dir;
  std::string instance;
  std::string file(const std::string& name) const { return dir.path + "/" + name; }
  std::string run_console(const std::string& script,
                          const std::vector<std::string>& extra_env = {}) {
    std::vector<std::string> argv = {"/bin/bash",
                                     kHere + "/in_chroot.sh",
                                     chroot_root(),
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
         {"gimp-console-3.0", "-i", "-n", "--batch-interpreter=plug-in-script-fu-eval", "-b"})
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

// Skips the test (GTEST_SKIP must be in the test body itself) when there is no daemon to run.
#define NEED_DAEMON()          \
  if (daemon_binary().empty()) \
  GTEST_SKIP() << "qwen-imaged is not built (plug-in-only build; set QWEN_TEST_DAEMON)"

class PluginGimp3E2E : public ::testing::Test {
 protected:
  void SetUp() override {
    const ChrootSetup& s = setup();
    if (!s.skip.empty()) GTEST_SKIP() << "GIMP 3 chroot unavailable: " << s.skip;
    ASSERT_TRUE(s.error.empty()) << s.error;
  }
};

}  // namespace

TEST_F(PluginGimp3E2E, GenerateAddsCanvasSizedLayerAboveActive) {
  NEED_DAEMON();
  Gimp3Env env(test_config());
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

TEST_F(PluginGimp3E2E, GenerateUsesSelectionBoundsOnGrayOffsetLayer) {
  NEED_DAEMON();
  Gimp3Env env(test_config());
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

TEST_F(PluginGimp3E2E, EditSelectionKeepsEverythingOutsideTheSelection) {
  NEED_DAEMON();
  Gimp3Env env(test_config());
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

TEST_F(PluginGimp3E2E, EditSelectionChangesOnlyInsideTheEllipse) {
  NEED_DAEMON();
  Gimp3Env env(test_config());
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

TEST_F(PluginGimp3E2E, EditLayerKeepsSizeAndOffsets) {
  NEED_DAEMON();
  Gimp3Env env(test_config());
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
TEST_F(PluginGimp3E2E, UnreachableDaemonInFlatpakSaysHowToGrantShm) {
  Gimp3Env env(test_config());
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
  EXPECT_NE(flatpak.find("~/.var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins/"), std::string::npos)
      << flatpak;
  EXPECT_FALSE(fs::exists(env.file("done.txt")));  // the call failed, the script stopped
}
