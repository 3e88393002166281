// Helpers of the plug-in's end-to-end tests: child processes with bounded waits, a fresh GIMP
// profile with the plug-in installed, a daemon on a unique instance, PNM images.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "geometry.h"

// Ends the current test (test body or SetUp) because it cannot run here: a skip on a developer's
// machine, a failure under CI=true, so that no end-to-end test is silently skipped in CI.
#define QWEN_E2E_UNAVAILABLE(why)                                    \
  do {                                                               \
    if (::qwen::plugin::test::in_ci()) {                             \
      FAIL() << "cannot run, and CI=true forbids skipping: " << why; \
    } else {                                                         \
      GTEST_SKIP() << why << " (under CI=true this fails)";          \
    }                                                                \
  } while (0)

namespace qwen::plugin::test {

// True when $CI is set to anything but "", "0" or "false": an end-to-end test that cannot run
// there FAILS instead of skipping (see QWEN_E2E_UNAVAILABLE).
bool in_ci();

std::string plugin_binary();  // the built plug-in (empty when not built)
std::string daemon_binary();  // the built qwen-imaged (empty when not built)
std::string tiny_model();
std::string tiny_edit_model();
std::string tiny_layered_model();                    // Qwen-Image-Layered (decompose, issue #16)
std::string unique_name(const std::string& prefix);  // unique across processes and calls
// A Script-Fu string literal of `s` (quotes and backslashes escaped).
std::string q(const std::string& s);

// A child process. The destructor kills it (SIGTERM, then SIGKILL) and reaps it.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
        const std::string& output_file);
  Child(Child&&) = delete;
  ~Child();
  pid_t pid() const { return pid_; }
  // Waits up to `seconds`; returns the exit status (or -1 on timeout, -2 when killed by a signal).
  int wait(double seconds);
  bool running();
  void stop();  // SIGTERM, 10 s, SIGKILL

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
};

// A temporary folder removed on destruction.
struct TempDir {
  TempDir();
  ~TempDir();
  std::string path;
};

// Stops (SIGTERM, then SIGKILL after 10 s) every qwen-imaged started with `--instance <instance>`
// (instance names of these tests are unique to this test process). Returns how many there were.
int stop_daemons_of_instance(const std::string& instance);

// Pids of the direct children of `parent` whose command name is `comm`.
std::vector<pid_t> children_named(pid_t parent, const std::string& comm);

std::string read_file(const std::string& path);

struct Pnm {
  int width = 0, height = 0, channels = 0;
  std::vector<unsigned char> data;
  const unsigned char* px(int x, int y) const { return &data[(size_t(y) * width + x) * channels]; }
};
// P5 / P6, and P7 (PAM: GIMP 3's export with alpha, 1-4 channels), 8 bit; width 0 when unreadable
Pnm read_pnm(const std::string& path);

// What qw-dump-pixels (e2e_helpers.scm) wrote: "w h bpp" then the values. As RGBA (1-channel dumps
// replicated to RGB, 3-channel ones with alpha 255), with the dump's own channel count in
// `*channels`; {} when unreadable.
Pixels read_dump(const std::string& path, int* channels = nullptr);

struct LayerInfo {
  std::string name;
  int x = 0, y = 0, w = 0, h = 0;
  bool has_mask = false;
};
std::vector<LayerInfo> read_layers(const std::string& path);  // written by qw-write-layers

// The layer tree (decompose, issue #16), depth first and top first, written by qw-write-tree.
struct TreeItem {
  int depth = 0;
  std::string name;
  int x = 0, y = 0, w = 0, h = 0;
  bool alpha = false, group = false;
};
std::vector<TreeItem> read_tree(const std::string& path);

// A GIMP profile with the plug-in installed, a plug-in config and a unique daemon instance.
struct GimpEnv {
  explicit GimpEnv(const std::string& config_text = "");
  ~GimpEnv();  // stops a daemon the plug-in may have started on this instance
  TempDir dir;
  std::string instance;
  std::string config_path;
  std::map<std::string, std::string> env() const;
  std::string file(const std::string& name) const { return dir.path + "/" + name; }
  // Runs gimp-console-2.10 with `script` (Script-Fu, e2e_helpers.scm loaded); returns its output.
  std::string run_console(const std::string& script, double timeout_s = 600);
};

// qwen-imaged on the env's instance; the destructor stops it.
struct Daemon {
  Daemon(const GimpEnv& env, const std::vector<std::string>& extra_args);
  // On `instance`, logging into `log` (for tests without a GimpEnv, e.g. the GIMP 3 ones).
  Daemon(const std::string& instance, const std::string& log,
         const std::vector<std::string>& extra_args);
  bool ready(double timeout_s);  // true once a client can connect
  std::string instance;
  Child child;
};

}  // namespace qwen::plugin::test
