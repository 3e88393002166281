// The dialogs in full GIMP under Xvfb: each procedure run interactively shows its dialog, which
// renders (the plug-in's test hook saves a snapshot and cancels). The snapshots are kept in
// <build>/plugin-dialogs/ (docs/screenshots/ holds copies for the README).
#include <gdk-pixbuf/gdk-pixbuf.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "e2e_util.h"

using namespace qwen::plugin::test;
namespace fs = std::filesystem;

TEST(PluginDialog, RendersInFullGimpUnderXvfb) {
  if (plugin_binary().empty()) QWEN_E2E_UNAVAILABLE("the GIMP plug-in is not built");
  if (daemon_binary().empty())
    QWEN_E2E_UNAVAILABLE("qwen-imaged is not built (plug-in-only build)");
  if (!fs::exists("/usr/bin/xvfb-run") || !fs::exists("/usr/bin/gimp-2.10"))
    QWEN_E2E_UNAVAILABLE("needs xvfb-run and gimp-2.10");
  GimpEnv env("min_pixels = 0\nmax_pixels = 16384\nautostart = false\n");
  Daemon daemon(env, {"--fake-engine", "--model", tiny_model(), "--model", tiny_edit_model()});
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));

  const std::string shots = QWEN_BINARY_DIR "/plugin-dialogs";
  fs::remove_all(shots);
  fs::create_directories(shots);
  auto env_vars = env.env();
  env_vars["QWEN_IMAGE_GIMP_DIALOG_SNAPSHOT"] = shots;
  std::vector<std::string> argv{"/usr/bin/xvfb-run",  "-a", "-s", "-screen 0 1280x1024x24",
                                "/usr/bin/gimp-2.10", "-d", "-f", "-s"};
  const char* procs[] = {"plug-in-qwen-image-generate", "plug-in-qwen-image-edit-selection",
                         "plug-in-qwen-image-edit-layer", "plug-in-qwen-image-decompose"};
  for (const char* proc : procs) {
    std::string extra = std::string(proc) == "plug-in-qwen-image-edit-selection" ? " 0.9"
                        : std::string(proc) == "plug-in-qwen-image-decompose"
                            ? " 4 640 0"  // layers, resolution, cfg-normalize
                            : "";
    std::string prompt = std::string(proc) == "plug-in-qwen-image-edit-layer"
                             ? "turn the sky into a starry night"
                             : "a lighthouse on a cliff at sunset, watercolor";
    argv.push_back("-b");
    argv.push_back("(begin (load \"" QWEN_PLUGIN_TEST_DIR
                   "/e2e_helpers.scm\")"
                   " (let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (l (cadr r)))"
                   " (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 8 8 40 30) (" +
                   std::string(proc) + " RUN-INTERACTIVE img l \"" + prompt +
                   "\" \"blurry\""
                   " 30 4.0 -1" +
                   extra + " \"\")))");
  }
  argv.push_back("-b");
  argv.push_back("(gimp-quit 1)");
  {
    Child gimp(argv, env_vars, env.file("gimp-output.txt"));
    ASSERT_NE(gimp.wait(300), -1) << "GIMP did not finish in 300 s:\n"
                                  << read_file(env.file("gimp-output.txt"));
  }
  for (const char* proc : procs) {
    std::string path = shots + "/" + proc + ".png";
    GError* error = nullptr;
    GdkPixbuf* pb = gdk_pixbuf_new_from_file(path.c_str(), &error);
    ASSERT_NE(pb, nullptr) << path << ": " << (error ? error->message : "") << "\n"
                           << read_file(env.file("gimp-output.txt"));
    int w = gdk_pixbuf_get_width(pb), h = gdk_pixbuf_get_height(pb);
    EXPECT_GE(w, 300) << proc;
    EXPECT_GE(h, 200) << proc;
    // Rendered widgets and text: many distinct colours, not a blank window.
    std::set<uint32_t> colours;
    const guchar* px = gdk_pixbuf_get_pixels(pb);
    int stride = gdk_pixbuf_get_rowstride(pb), n = gdk_pixbuf_get_n_channels(pb);
    for (int y = 0; y < h; y += 2)
      for (int x = 0; x < w; x += 2) {
        const guchar* p = px + y * stride + x * n;
        colours.insert(uint32_t(p[0]) << 16 | uint32_t(p[1]) << 8 | p[2]);
      }
    EXPECT_GT(colours.size(), 16u) << proc;
    g_object_unref(pb);
  }
}
