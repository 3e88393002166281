#include "e2e_util.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "qwen_image/client.h"

extern char** environ;

namespace fs = std::filesystem;

namespace qwen::plugin::test {

namespace {
std::string existing(const std::string& p) { return fs::exists(p) ? p : ""; }
}  // namespace

bool in_ci() {
  const char* ci = std::getenv("CI");
  if (!ci || !*ci) return false;
  std::string v = ci;
  for (auto& c : v) c = char(std::tolower(static_cast<unsigned char>(c)));
  return v != "0" && v != "false" && v != "no";
}

std::string plugin_binary() { return existing(QWEN_BINARY_DIR "/plugin/qwen-image-gimp"); }
std::string daemon_binary() {
  // $QWEN_TEST_DAEMON: a qwen-imaged built elsewhere (e.g. to run these tests from a plug-in-only
  // build).
  if (const char* d = std::getenv("QWEN_TEST_DAEMON"); d && *d) return existing(d);
  return existing(QWEN_BINARY_DIR "/daemon/server/qwen-imaged");
}
std::string tiny_model() { return QWEN_FIXTURES "/models/qwen-image-tiny"; }
std::string tiny_edit_model() { return QWEN_FIXTURES "/models/qwen-image-edit-2509-tiny"; }
std::string tiny_layered_model() { return QWEN_FIXTURES "/models/qwen-image-layered-tiny"; }

std::string unique_name(const std::string& prefix) {
  static std::atomic<int> counter{0};
  return prefix + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
}

Child::Child(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
             const std::string& output_file) {
  std::map<std::string, std::string> all;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos) all[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (auto& [k, v] : env) all[k] = v;
  std::vector<std::string> envs;
  for (auto& [k, v] : all) envs.push_back(k + "=" + v);
  std::vector<char*> cargv, cenv;
  for (auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (auto& e : envs) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, output_file.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  // Its own process group, so that stop() also ends what it started (GIMP's plug-ins, Xvfb).
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  if (posix_spawn(&pid_, cargv[0], &fa, &attr, cargv.data(), cenv.data()) != 0) pid_ = -1;
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
}

Child::~Child() { stop(); }

int Child::wait(double seconds) {
  if (pid_ <= 0) return -3;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!reaped_) {
    pid_t r = waitpid(pid_, &status_, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return WIFEXITED(status_) ? WEXITSTATUS(status_) : -2;
}

bool Child::running() { return pid_ > 0 && wait(0) == -1; }

void Child::stop() {
  if (pid_ <= 0 || reaped_) return;
  // Signal the whole group while the leader is alive or a zombie (its pid cannot be reused yet).
  kill(-pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    siginfo_t info{};
    if (waitid(P_PID, id_t(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid_)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(-pid_, SIGKILL);
  waitpid(pid_, &status_, 0);
  reaped_ = true;
}

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "qwen-gimp-e2e-XXXXXX").string();
  path = mkdtemp(tmpl.data()) ? tmpl : "";
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path.empty() && !std::getenv("QWEN_KEEP_TEST_DIRS")) fs::remove_all(path, ec);
}

std::vector<pid_t> children_named(pid_t parent, const std::string& comm) {
  std::vector<pid_t> out;
  for (auto& e : fs::directory_iterator("/proc")) {
    std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string stat = read_file(e.path() / "stat");
    auto l = stat.find('('), r = stat.rfind(')');
    if (l == std::string::npos || r == std::string::npos) continue;
    std::istringstream rest(stat.substr(r + 2));
    char state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent && stat.substr(l + 1, r - l - 1) == comm) out.push_back(std::stoi(name));
  }
  return out;
}

int stop_daemons_of_instance(const std::string& instance) {
  std::vector<pid_t> pids;
  for (auto& e : fs::directory_iterator("/proc")) {
    std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmd = read_file(e.path() / "cmdline");
    std::vector<std::string> args;
    for (size_t a = 0, b; a < cmd.size(); a = b + 1) {
      b = cmd.find('\0', a);
      if (b == std::string::npos) b = cmd.size();
      args.push_back(cmd.substr(a, b - a));
    }
    bool daemon = !args.empty() && fs::path(args[0]).filename() == "qwen-imaged";
    for (size_t i = 0; daemon && i + 1 < args.size(); ++i)
      if (args[i] == "--instance" && args[i + 1] == instance) pids.push_back(std::stoi(name));
  }
  for (pid_t p : pids) kill(p, SIGTERM);
  for (pid_t p : pids) {
    for (int i = 0; i < 100 && kill(p, 0) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (kill(p, 0) == 0) kill(p, SIGKILL);
  }
  return int(pids.size());
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Pnm read_pnm(const std::string& path) {
  Pnm p;
  std::string s = read_file(path);
  size_t i = 0;
  auto token = [&]() {
    std::string t;
    while (i < s.size()) {
      if (s[i] == '#') {
        while (i < s.size() && s[i] != '\n') ++i;
      } else if (isspace(static_cast<unsigned char>(s[i]))) {
        if (!t.empty()) break;
        ++i;
      } else {
        t += s[i++];
      }
    }
    return t;
  };
  std::string magic = token();
  if (magic == "P7") {  // PAM: "KEY value" lines up to ENDHDR
    int w = 0, h = 0, depth = 0, maxval = 0;
    for (std::string key = token(); !key.empty() && key != "ENDHDR"; key = token()) {
      if (key == "TUPLTYPE") {
        token();
        continue;
      }
      const int v = std::atoi(token().c_str());
      if (key == "WIDTH") w = v;
      if (key == "HEIGHT") h = v;
      if (key == "DEPTH") depth = v;
      if (key == "MAXVAL") maxval = v;
    }
    ++i;  // the newline after ENDHDR
    if (maxval != 255 || w <= 0 || h <= 0 || depth < 1 || depth > 4 ||
        s.size() < i + size_t(w) * h * depth)
      return p;
    p.width = w, p.height = h, p.channels = depth;
    p.data.assign(s.begin() + i, s.begin() + i + size_t(w) * h * depth);
    return p;
  }
  if (magic != "P5" && magic != "P6") return p;
  int w = std::atoi(token().c_str()), h = std::atoi(token().c_str());
  int maxval = std::atoi(token().c_str());
  ++i;  // the single whitespace after maxval
  int c = magic == "P6" ? 3 : 1;
  if (maxval != 255 || s.size() < i + size_t(w) * h * c) return p;
  p.width = w, p.height = h, p.channels = c;
  p.data.assign(s.begin() + i, s.begin() + i + size_t(w) * h * c);
  return p;
}

Pixels read_dump(const std::string& path, int* channels) {
  std::istringstream in(read_file(path));
  int w = 0, h = 0, c = 0;
  in >> w >> h >> c;
  if (channels) *channels = 0;
  if (w <= 0 || h <= 0 || c < 1 || c > 4) return {};
  Pixels p(w, h, 4, 255);
  for (int i = 0; i < w * h; ++i) {
    uint8_t* o = &p.data[size_t(i) * 4];
    for (int k = 0; k < c; ++k) {
      int v = 0;
      in >> v;
      o[k] = uint8_t(v);
    }
    if (c <= 2) {  // gray (+ alpha)
      o[3] = c == 2 ? o[1] : 255;
      o[1] = o[2] = o[0];
    }
  }
  if (!in) return {};
  if (channels) *channels = c;
  return p;
}

std::vector<LayerInfo> read_layers(const std::string& path) {
  std::vector<LayerInfo> out;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) {
    std::istringstream l(line);
    LayerInfo info;
    std::getline(l, info.name, '\t');
    int mask = 0;
    l >> info.x >> info.y >> info.w >> info.h >> mask;
    info.has_mask = mask != 0;
    out.push_back(info);
  }
  return out;
}

std::vector<TreeItem> read_tree(const std::string& path) {
  std::vector<TreeItem> out;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) {
    std::istringstream l(line);
    TreeItem t;
    std::string depth;
    std::getline(l, depth, '\t');
    if (depth.empty()) continue;
    t.depth = std::stoi(depth);
    std::getline(l, t.name, '\t');
    int alpha = 0, group = 0;
    l >> t.x >> t.y >> t.w >> t.h >> alpha >> group;
    t.alpha = alpha != 0;
    t.group = group != 0;
    out.push_back(t);
  }
  return out;
}

GimpEnv::GimpEnv(const std::string& config_text) : instance(unique_name("gimp-e2e")) {
  fs::create_directories(dir.path + "/profile/plug-ins/qwen-image-gimp");
  fs::copy_file(plugin_binary(), dir.path + "/profile/plug-ins/qwen-image-gimp/qwen-image-gimp");
  config_path = dir.path + "/qwen-image.conf";
  std::ofstream(config_path) << config_text;
}

GimpEnv::~GimpEnv() { stop_daemons_of_instance(instance); }

std::map<std::string, std::string> GimpEnv::env() const {
  return {{"GIMP2_DIRECTORY", dir.path + "/profile"},
          {"QWEN_IMAGE_GIMP_CONFIG", config_path},
          {"QWEN_IMAGE_INSTANCE", instance},
          {"XDG_CACHE_HOME", dir.path + "/cache"}};
}

std::string GimpEnv::run_console(const std::string& script, double timeout_s) {
  std::string out = file("gimp-output.txt");
  std::ofstream(out, std::ios::trunc).close();
  std::string batch = "(begin (load \"" QWEN_PLUGIN_TEST_DIR "/e2e_helpers.scm\") " + script + ")";
  {
    Child gimp({"/usr/bin/gimp-console-2.10", "-i", "-d", "-f", "-b", batch, "-b", "(gimp-quit 0)"},
               env(), out);
    if (gimp.wait(timeout_s) == -1) std::ofstream(out, std::ios::app) << "\nTEST: GIMP TIMED OUT\n";
  }
  return read_file(out);
}

Daemon::Daemon(const GimpEnv& env, const std::vector<std::string>& extra_args)
    : Daemon(env.instance, env.file("daemon.log"), extra_args) {}

Daemon::Daemon(const std::string& instance_name, const std::string& log,
               const std::vector<std::string>& extra_args)
    : instance(instance_name),
      child(
          [&] {
            std::vector<std::string> argv{daemon_binary(), "--no-config", "--instance",
                                          instance_name};
            argv.insert(argv.end(), extra_args.begin(), extra_args.end());
            return argv;
          }(),
          {}, log) {}

bool Daemon::ready(double timeout_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!child.running()) return false;
    try {
      auto c = qwen::ipc::Client::connect(instance, 500);
      return true;
    } catch (const qwen::ipc::ClientError&) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

std::string q(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace qwen::plugin::test
