// End-to-end, Qwen-Image-2.1 results in GIMP (issue #15, "a transparent result becomes a layer
// with alpha") under gimp-console-2.10: Generate with a fresh random tiny 2.1 model folder
// (tests/reference/gen_qwen21_pipeline.py --parts model, ~87 MB, so made by the test rather than
// committed) on the real engine (CPU) adds a layer with an alpha channel whose pixels, alpha
// included, are exactly the RGBA PNG `qwen-image generate` writes for the same prompt, seed and
// size.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "e2e_util.h"
#include "geometry.h"
#ifdef QWEN_E2E_TEST_PNG
#include "image/png.h"
#endif

using namespace qwen::plugin;
using namespace qwen::plugin::test;
namespace fs = std::filesystem;

namespace {

// Runs `cmd` (stderr into the output); returns its exit status, -1 when it did not exit.
int shell(const std::string& cmd, std::string* output) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) output->append(buf, n);
  const int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// qw-dump-pixels output: width height bpp, then the values.
struct Dump {
  int w = 0, h = 0, c = 0;
  std::vector<int> v;
};
Dump read_dump(const std::string& path) {
  std::istringstream in(read_file(path));
  Dump d;
  in >> d.w >> d.h >> d.c;
  if (d.w <= 0 || d.h <= 0 || d.c <= 0) return {};
  d.v.resize(size_t(d.w) * d.h * d.c);
  for (auto& x : d.v) in >> x;
  return in ? d : Dump{};
}

// The reference interpreter: $QWEN_REFERENCE_PYTHON, else the checkout's .venv.
std::string reference_python() {
  if (const char* p = std::getenv("QWEN_REFERENCE_PYTHON"); p && *p) return p;
  return QWEN_PLUGIN_TEST_DIR "/../../.venv/bin/python";
}

}  // namespace

TEST(PluginQwen21E2E, GenerateGivesALayerWithTheClisAlpha) {
  if (plugin_binary().empty()) QWEN_E2E_UNAVAILABLE("the GIMP plug-in is not built");
  if (daemon_binary().empty()) QWEN_E2E_UNAVAILABLE("qwen-imaged is not built");
#ifndef QWEN_E2E_TEST_PNG
  QWEN_E2E_UNAVAILABLE("built without the daemon's PNG library (plug-in-only build)");
#else
  const std::string cli = QWEN_BINARY_DIR "/daemon/cli/qwen-image";
  if (!fs::exists(cli)) QWEN_E2E_UNAVAILABLE("the qwen-image CLI is not built");
  const std::string python = reference_python();
  if (!fs::exists(python))
    QWEN_E2E_UNAVAILABLE("no reference venv at " + python + " (installers/setup.sh makes it)");
  TempDir gen;
  std::string log;
  const std::string make = "OMP_NUM_THREADS=1 " + python +
                           " " QWEN_PLUGIN_TEST_DIR "/../reference/gen_qwen21_pipeline.py " +
                           gen.path + " --seed 3 --parts model --threads 1";
  ASSERT_EQ(shell(make, &log), 0) << make << "\n" << log;
  const std::string model = gen.path + "/model";

  GimpEnv env("min_pixels = 0\nmax_pixels = 16384\nstart_timeout = 60\nautostart = false\n");
  Daemon daemon(env, {"--device", "cpu", "--dtype", "float32", "--threads", "1", "--model", model});
  ASSERT_TRUE(daemon.ready(300)) << read_file(env.file("daemon.log"));
  const std::string prompt = "a red apple on a transparent background";
  const std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 64 64 64 0 0)) (img (car r)) (l (cadr r)))"
      " (let ((nl (car (plug-in-qwen-image-generate RUN-NONINTERACTIVE img l " +
      q(prompt) + " \"\" 2 1.0 5 \"\"))))" + "  (qw-dump-pixels nl " + q(env.file("layer.txt")) +
      ")"
      "  (qw-mark " +
      q(env.file("alpha.txt")) + "   (number->string (car (gimp-drawable-has-alpha nl))))))");
  const Dump layer = read_dump(env.file("layer.txt"));
  ASSERT_EQ(layer.w, 64) << out << read_file(env.file("daemon.log"));
  ASSERT_EQ(layer.h, 64);
  EXPECT_EQ(read_file(env.file("alpha.txt")), "1");
  ASSERT_EQ(layer.c, 4);

  log.clear();
  const std::string png = env.file("cli.png");
  const std::string run = cli + " generate --model " + model + " --prompt '" + prompt +
                          "' --width 64 --height 64 --steps 2 --seed 5 --true-cfg-scale 1 "
                          "--device cpu --dtype float32 --threads 1 -q --output " +
                          png;
  ASSERT_EQ(shell(run, &log), 0) << run << "\n" << log;
  const qwen::ImageU8 want = qwen::read_png(png);
  ASSERT_EQ(want.channels, 4);
  ASSERT_EQ(want.width, 64);
  ASSERT_EQ(want.height, 64);
  int differ = 0, translucent = 0;
  for (size_t i = 0; i < want.pixels.size(); ++i) differ += layer.v[i] != int(want.pixels[i]);
  for (size_t i = 3; i < want.pixels.size(); i += 4) translucent += want.pixels[i] < 255;
  EXPECT_EQ(differ, 0) << "channel values of the layer that differ from the CLI's RGBA PNG";
  // The random tiny model's alpha is not all opaque: the layer's alpha is the model's.
  EXPECT_GT(translucent, 0);
#endif
}

// Edit Layer with a reference layer on the same kind of tiny 2.1 folder: the layer goes to the
// model as RGBA, the reference after it, and the new layer (with alpha) is exactly the RGBA PNG of
// `qwen-image edit --image layer.png --image ref.png` at the layer's size.
TEST(PluginQwen21E2E, EditLayerWithAReferenceGivesTheClisRgba) {
  if (plugin_binary().empty()) QWEN_E2E_UNAVAILABLE("the GIMP plug-in is not built");
  if (daemon_binary().empty()) QWEN_E2E_UNAVAILABLE("qwen-imaged is not built");
#ifndef QWEN_E2E_TEST_PNG
  QWEN_E2E_UNAVAILABLE("built without the daemon's PNG library (plug-in-only build)");
#else
  const std::string cli = QWEN_BINARY_DIR "/daemon/cli/qwen-image";
  if (!fs::exists(cli)) QWEN_E2E_UNAVAILABLE("the qwen-image CLI is not built");
  const std::string python = reference_python();
  if (!fs::exists(python))
    QWEN_E2E_UNAVAILABLE("no reference venv at " + python + " (installers/setup.sh makes it)");
  TempDir gen;
  std::string log;
  const std::string make = "OMP_NUM_THREADS=1 " + python +
                           " " QWEN_PLUGIN_TEST_DIR "/../reference/gen_qwen21_pipeline.py " +
                           gen.path + " --seed 4 --parts model --threads 1";
  ASSERT_EQ(shell(make, &log), 0) << make << "\n" << log;
  const std::string model = gen.path + "/model";

  GimpEnv env("min_pixels = 0\nmax_pixels = 16384\nstart_timeout = 60\nautostart = false\n");
  Daemon daemon(env, {"--device", "cpu", "--dtype", "float32", "--threads", "1", "--model", model});
  ASSERT_TRUE(daemon.ready(300)) << read_file(env.file("daemon.log"));
  const std::string prompt = "put the hat from picture 2 on the cat";
  const std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 64 64 32 0 8)) (img (car r)) (l (cadr r))"
      "       (r2 (qw-make-image RGB 40 24 40 24 0 0)) (ref (cadr r2)))"
      " (gimp-drawable-invert ref FALSE)"
      " (qw-dump-pixels l " +
      q(env.file("target.txt")) + ") (qw-dump-pixels ref " + q(env.file("ref.txt")) +
      ")"
      " (let ((nl (car (plug-in-qwen-image-edit-layer2 RUN-NONINTERACTIVE img l " +
      q(prompt) + " \"\" 2 1.0 5 \"\" \"\" 0 1 (vector ref)))))" + "  (qw-dump-pixels nl " +
      q(env.file("layer.txt")) + ")))");
  const Dump target = read_dump(env.file("target.txt")), ref = read_dump(env.file("ref.txt"));
  const Dump layer = read_dump(env.file("layer.txt"));
  ASSERT_EQ(target.w, 64) << out;
  ASSERT_EQ(ref.w, 40) << out;
  ASSERT_EQ(layer.w, 64) << out << read_file(env.file("daemon.log"));
  ASSERT_EQ(layer.h, 32);
  ASSERT_EQ(layer.c, 4);
  // The RGB layers as the plug-in reads them (R'G'B'A, alpha 255) into PNGs for the CLI.
  auto to_png = [](const Dump& d, const std::string& path) {
    qwen::ImageU8 im(d.w, d.h, 4, 255);
    for (size_t i = 0; i < size_t(d.w) * d.h; ++i)
      for (int c = 0; c < std::min(d.c, 4); ++c)
        im.pixels[i * 4 + size_t(c)] = uint8_t(d.v[i * d.c + size_t(c)]);
    qwen::write_png(path, im);
  };
  to_png(target, env.file("target.png"));
  to_png(ref, env.file("ref.png"));
  log.clear();
  const std::string png = env.file("cli.png");
  const std::string run = cli + " edit --model " + model + " --image " + env.file("target.png") +
                          " --image " + env.file("ref.png") + " --prompt '" + prompt +
                          "' --width 64 --height 32 --steps 2 --seed 5 --true-cfg-scale 1 "
                          "--device cpu --dtype float32 --threads 1 -q --output " +
                          png;
  ASSERT_EQ(shell(run, &log), 0) << run << "\n" << log;
  const qwen::ImageU8 want = qwen::read_png(png);
  ASSERT_EQ(want.channels, 4);
  ASSERT_EQ(want.width, 64);
  ASSERT_EQ(want.height, 32);
  int differ = 0;
  for (size_t i = 0; i < want.pixels.size(); ++i) differ += layer.v[i] != int(want.pixels[i]);
  EXPECT_EQ(differ, 0) << "channel values of the layer that differ from the CLI's RGBA PNG";
#endif
}
