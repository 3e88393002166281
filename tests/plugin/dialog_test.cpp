// The dialogs in full GIMP under Xvfb: each procedure run interactively shows its dialog, which
// renders (the plug-in's test hook saves a snapshot and cancels). The snapshots are kept in
// <build>/plugin-dialogs/ (docs/screenshots/ holds copies for the README). The LoRA rows (issue
// #14) list the daemon's LoRAs and compose the `loras` string the procedure records.
#include <gdk-pixbuf/gdk-pixbuf.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "e2e_util.h"

using namespace qwen::plugin::test;
namespace fs = std::filesystem;

namespace {

// A lora_dir with a Lightning LoRA (recognised by its file name) and two plain ones.
std::string make_lora_dir(const GimpEnv& env) {
  const std::string dir = env.file("loras");
  const std::string samples = QWEN_PLUGIN_TEST_DIR "/../fixtures/lora-samples/";
  fs::create_directories(dir);
  fs::copy_file(samples + "lightx2v.safetensors",
                dir + "/Qwen-Image-Lightning-8steps-V1.0.safetensors");
  fs::copy_file(samples + "kohya_musubi.safetensors", dir + "/kohya_musubi.safetensors");
  fs::copy_file(samples + "aitoolkit.safetensors", dir + "/aitoolkit.safetensors");
  return dir;
}

std::vector<std::string> gimp_argv() {
  return {"/usr/bin/xvfb-run",  "-a", "-s", "-screen 0 1280x1024x24",
          "/usr/bin/gimp-2.10", "-d", "-f", "-s"};
}

}  // namespace

TEST(PluginDialog, RendersInFullGimpUnderXvfb) {
  if (plugin_binary().empty()) QWEN_E2E_UNAVAILABLE("the GIMP plug-in is not built");
  if (daemon_binary().empty())
    QWEN_E2E_UNAVAILABLE("qwen-imaged is not built (plug-in-only build)");
  if (!fs::exists("/usr/bin/xvfb-run") || !fs::exists("/usr/bin/gimp-2.10"))
    QWEN_E2E_UNAVAILABLE("needs xvfb-run and gimp-2.10");
  GimpEnv env("min_pixels = 0\nmax_pixels = 16384\nautostart = false\n");
  Daemon daemon(env, {"--fake-engine", "--model", tiny_model(), "--model", tiny_edit_model(),
                      "--lora-dir", make_lora_dir(env)});
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));

  const std::string shots = QWEN_BINARY_DIR "/plugin-dialogs";
  fs::remove_all(shots);
  fs::create_directories(shots);
  auto env_vars = env.env();
  env_vars["QWEN_IMAGE_GIMP_DIALOG_SNAPSHOT"] = shots;
  env_vars["QWEN_IMAGE_GIMP_DIALOG_PICK"] = "kohya_musubi:0.8";  // row 1 of the LoRA rows
  auto argv = gimp_argv();
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

// The LoRA rows of the 2.10 dialog: the string a script presets is split into the rows (a LoRA
// the daemon lists) and the text (an absolute path); a LoRA chosen in the next row's list, with
// a negative strength, is composed into the string the procedure runs with and records in the
// result's parasite. A name that is not in the daemon's list cannot be chosen.
TEST(PluginDialog, LoraRowsComposeTheLorasStringTheProcedureRecords) {
  if (plugin_binary().empty()) QWEN_E2E_UNAVAILABLE("the GIMP plug-in is not built");
  if (daemon_binary().empty())
    QWEN_E2E_UNAVAILABLE("qwen-imaged is not built (plug-in-only build)");
  if (!fs::exists("/usr/bin/xvfb-run") || !fs::exists("/usr/bin/gimp-2.10"))
    QWEN_E2E_UNAVAILABLE("needs xvfb-run and gimp-2.10");
  GimpEnv env("min_pixels = 0\nmax_pixels = 16384\nautostart = false\n");
  Daemon daemon(env, {"--fake-engine", "--fake-step-ms", "5", "--model", tiny_model(), "--lora-dir",
                      make_lora_dir(env)});
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  const std::string abs = env.file("loras") + "/aitoolkit.safetensors";
  auto run = [&](const std::string& pick, const std::string& mark) {
    auto env_vars = env.env();
    env_vars["QWEN_IMAGE_GIMP_DIALOG_SNAPSHOT"] = env.file("");
    env_vars["QWEN_IMAGE_GIMP_DIALOG_PICK"] = pick;
    env_vars["QWEN_IMAGE_GIMP_DIALOG_ACCEPT"] = "1";
    auto argv = gimp_argv();
    argv.push_back("-b");
    argv.push_back("(begin (load \"" QWEN_PLUGIN_TEST_DIR
                   "/e2e_helpers.scm\")"
                   " (let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (l (cadr r)))"
                   " (let ((nl (car (plug-in-qwen-image-generate2 RUN-INTERACTIVE img l"
                   " \"a red fox\" \"\" 2 4.0 42 \"\" " +
                   q("kohya_musubi:0.7," + abs + ":0.5") +
                   " 0))))"
                   " (qw-mark " +
                   q(env.file(mark)) +
                   " (caddr (car (gimp-item-get-parasite nl \"qwen-image-params\")))))))");
    argv.push_back("-b");
    argv.push_back("(gimp-quit 1)");
    Child gimp(argv, env_vars, env.file(mark + ".out"));
    EXPECT_NE(gimp.wait(300), -1) << "GIMP did not finish in 300 s";
    return read_file(env.file(mark + ".out"));
  };
  std::string out = run("aitoolkit:-0.3", "params.txt");
  const std::string params = read_file(env.file("params.txt"));
  EXPECT_NE(params.find("\nloras=kohya_musubi:0.7,aitoolkit:-0.3," + abs + ":0.5\n"),
            std::string::npos)
      << params << out << read_file(env.file("daemon.log"));
  EXPECT_TRUE(fs::exists(env.file("plug-in-qwen-image-generate.png")));

  out = run("not-in-the-list:1", "none.txt");
  EXPECT_NE(out.find("no LoRA 'not-in-the-list' in the list"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(env.file("none.txt")));  // cancelled: no layer, no parasite
}
