#include "config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

using namespace qwen::plugin;

TEST(PluginConfig, SplitArgs) {
  EXPECT_EQ(split_args(R"(--model "/data/my models/Qwen" --device  cuda 'a b' c\ d)"),
            (std::vector<std::string>{"--model", "/data/my models/Qwen", "--device", "cuda", "a b",
                                      "c d"}));
  EXPECT_EQ(split_args("  "), std::vector<std::string>{});
  EXPECT_EQ(split_args("\"\""), std::vector<std::string>{""});
}

TEST(PluginConfig, ParseKeysAndWarnings) {
  auto c = parse_config(
      "# comment\n daemon = /opt/q/qwen-imaged\n"
      "daemon_args = --model /m --device cpu\ninstance=test\nstart_timeout = 30\n"
      "min_pixels = 1024\nmax_pixels=4096\nautostart = no\nbogus = 1\nnot a pair\nmax_pixels = "
      "x\n");
  EXPECT_EQ(c.daemon, "/opt/q/qwen-imaged");
  EXPECT_EQ(c.daemon_args, (std::vector<std::string>{"--model", "/m", "--device", "cpu"}));
  EXPECT_EQ(c.instance, "test");
  EXPECT_EQ(c.start_timeout_s, 30);
  EXPECT_EQ(c.limits.min_pixels, 1024);
  EXPECT_EQ(c.limits.max_pixels, 4096);
  EXPECT_FALSE(c.autostart);
  EXPECT_EQ(c.warnings.size(), 3u);
}

TEST(PluginConfig, PreviewCanBeTurnedOff) {
  EXPECT_TRUE(parse_config("").preview);
  EXPECT_TRUE(parse_config("preview = yes\n").preview);
  EXPECT_FALSE(parse_config("preview = off\n").preview);
  EXPECT_FALSE(parse_config("preview=false\n").preview);
  EXPECT_TRUE(parse_config("preview = off\n").warnings.empty());
}

TEST(PluginConfig, DaemonArgvAddsInstanceOnce) {
  PluginConfig c;
  c.daemon = "/bin/qwen-imaged";
  c.daemon_args = {"--model", "/m"};
  EXPECT_EQ(daemon_argv(c, "abc"),
            (std::vector<std::string>{"/bin/qwen-imaged", "--model", "/m", "--instance", "abc"}));
  c.daemon_args.push_back("--instance=x");
  EXPECT_EQ(daemon_argv(c, "abc").size(), 4u);
}

TEST(PluginConfig, LoadFromFileAndMissingFile) {
  auto dir =
      std::filesystem::temp_directory_path() / ("qwen-plugin-config-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  auto path = (dir / "qwen-image.conf").string();
  std::ofstream(path) << "daemon = ~/bin/qd\n";
  setenv("HOME", "/home/someone", 1);
  auto c = load_config(path);
  EXPECT_EQ(c.path, path);
  EXPECT_EQ(c.daemon, "/home/someone/bin/qd");
  auto d = load_config((dir / "missing.conf").string());
  EXPECT_EQ(d.path, "");
  EXPECT_EQ(d.daemon, "qwen-imaged");
  setenv("QWEN_IMAGE_GIMP_CONFIG", path.c_str(), 1);
  EXPECT_EQ(default_config_path(), path);
  unsetenv("QWEN_IMAGE_GIMP_CONFIG");
  std::filesystem::remove_all(dir);
}

TEST(PluginConfig, EditModelNames) {
  EXPECT_TRUE(is_edit_model("qwen-image-edit-2509-tiny"));
  EXPECT_TRUE(is_edit_model("Qwen-Image-Edit"));
  EXPECT_FALSE(is_edit_model("qwen-image-tiny"));
  EXPECT_TRUE(is_edit_model("qie", "/data/models/Qwen-Image-Edit-2509/"));
  EXPECT_FALSE(is_edit_model("qwen", "/data/editors/Qwen-Image"));
}

TEST(PluginConfig, MessagesSayWhatToDo) {
  PluginConfig c;
  c.daemon = "/x/qwen-imaged";
  auto m = user_message(ErrorKind::NoDaemon, "instance 'default'", c);
  EXPECT_NE(m.find("no daemon is running"), std::string::npos);
  EXPECT_NE(m.find("systemctl --user start qwen-imaged"), std::string::npos);
  EXPECT_NE(m.find("/x/qwen-imaged"), std::string::npos);
  EXPECT_NE(user_message(ErrorKind::JobFailed, "CUDA out of memory. Tried to allocate", c)
                .find("GPU ran out of memory"),
            std::string::npos);
  EXPECT_NE(user_message(ErrorKind::Rejected, "unknown model 'foo'", c).find("Qwen/Qwen-Image"),
            std::string::npos);
  EXPECT_NE(user_message(ErrorKind::ProtocolMismatch, "v1 vs v2", c).find("different versions"),
            std::string::npos);
  EXPECT_NE(user_message(ErrorKind::JobFailed, "boom", c).find("boom"), std::string::npos);
}

TEST(PluginConfig, FlatpakSandboxSaysHowToShareDevShm) {
  PluginConfig c;
  ::unsetenv("FLATPAK_ID");
  if (running_in_flatpak()) GTEST_SKIP() << "this test itself runs inside a Flatpak";
  EXPECT_EQ(user_message(ErrorKind::NoDaemon, "x", c).find("flatpak override"), std::string::npos);
  ::setenv("FLATPAK_ID", "org.gimp.GIMP", 1);
  EXPECT_TRUE(running_in_flatpak());
  for (auto kind : {ErrorKind::NoDaemon, ErrorKind::SharedMemory}) {
    auto m = user_message(kind, "instance 'default'", c);
    EXPECT_NE(m.find("flatpak override --user --device=shm org.gimp.GIMP"), std::string::npos);
    EXPECT_NE(m.find("~/.var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins/"), std::string::npos);
    EXPECT_NE(m.find("instance 'default'"), std::string::npos);
  }
  // GIMP 3.2's profile folder when the plug-in runs in 3.2.
  set_gimp_series("3.2");
  EXPECT_NE(user_message(ErrorKind::NoDaemon, "", c)
                .find("~/.var/app/org.gimp.GIMP/config/GIMP/3.2/plug-ins/"),
            std::string::npos);
  set_gimp_series("3.0");
  // Other failures keep their own wording.
  EXPECT_NE(user_message(ErrorKind::JobFailed, "boom", c).find("job failed"), std::string::npos);
  ::unsetenv("FLATPAK_ID");
  EXPECT_FALSE(running_in_flatpak());
}

// Issue #13: on out of memory the plug-in passes on the daemon's cause-specific advice instead of
// always advising a smaller selection (which cannot help when the model itself does not fit).
TEST(PluginConfig, OutOfMemoryAdviceFollowsTheDaemonsCause) {
  PluginConfig c;
  // The daemon's pre-flight refusal (engine.cpp: the planner's advice) and a load that ran out of
  // memory part-way (job.cpp: "cannot load model ...").
  for (const std::string& detail :
       {std::string("cannot load model qie from /m/Edit: model '/m/Edit' does not fit on cuda:0: "
                    "use a transformer file in fp8 (20.4 GiB)"),
        std::string("cannot load model qie from /m/Edit: loading transformer: CUDA out of memory. "
                    "Tried to allocate 72.00 MiB")}) {
    const auto m = user_message(ErrorKind::JobFailed, detail, c);
    EXPECT_NE(m.find("the model does not fit in the GPU's memory"), std::string::npos) << m;
    EXPECT_NE(m.find("A smaller selection will not help"), std::string::npos) << m;
    EXPECT_NE(m.find(detail), std::string::npos) << m;  // the daemon's own advice kept
    EXPECT_EQ(m.find("Use a smaller selection"), std::string::npos) << m;
  }
  // An activation OOM during the job: the daemon's advice for this job, worded as a sentence.
  const std::string job =
      "out of device memory at 640x640: decomposing into 8 layers at 640x640 needs more memory "
      "than is free: use fewer layers, resolution 640, or a lighter memory mode [CUDA out of "
      "memory. Tried to allocate 2.00 GiB]";
  const auto m = user_message(ErrorKind::JobFailed, job, c);
  EXPECT_NE(m.find("ran out of memory during the job"), std::string::npos) << m;
  EXPECT_NE(m.find(". Decomposing into 8 layers at 640x640 needs more memory than is free: use "
                   "fewer layers, resolution 640, or a lighter memory mode."),
            std::string::npos)
      << m;
  EXPECT_EQ(m.find("smaller selection"), std::string::npos) << m;
  // A bare CUDA message (an older daemon) keeps the generic advice.
  EXPECT_NE(user_message(ErrorKind::JobFailed, "CUDA out of memory. Tried to allocate 1 GiB", c)
                .find("Use a smaller selection"),
            std::string::npos);
  // A broken file is not a memory problem.
  EXPECT_EQ(user_message(ErrorKind::JobFailed, "cannot load model q from /m: bad header", c)
                .find("does not fit"),
            std::string::npos);
}
