// Talking to qwen-imaged: connect, start it on demand, run jobs with GIMP's progress bar.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "frontend.h"

namespace qwen::plugin {

namespace ipc = qwen::ipc;

namespace {

ErrorKind kind_of(ipc::ClientError::Kind k) {
  switch (k) {
    case ipc::ClientError::Kind::NoDaemon:
      return ErrorKind::NoDaemon;
    case ipc::ClientError::Kind::DaemonDied:
      return ErrorKind::DaemonDied;
    case ipc::ClientError::Kind::ProtocolMismatch:
      return ErrorKind::ProtocolMismatch;
    case ipc::ClientError::Kind::Rejected:
      return ErrorKind::Rejected;
    case ipc::ClientError::Kind::JobFailed:
      return ErrorKind::JobFailed;
    case ipc::ClientError::Kind::Cancelled:
      return ErrorKind::Cancelled;
    case ipc::ClientError::Kind::Timeout:
      return ErrorKind::Timeout;
    case ipc::ClientError::Kind::SharedMemory:
      return ErrorKind::SharedMemory;
  }
  return ErrorKind::JobFailed;
}

std::string instance_of(const PluginConfig& config) {
  return ipc::resolve_instance(config.instance);
}

std::string log_path(const PluginConfig& config) {
  if (!config.log.empty()) return config.log;
  return std::string(g_get_user_cache_dir()) + "/qwen-image/qwen-imaged.log";
}

std::string tail_of(const std::string& path, size_t max_lines) {
  std::ifstream f(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(f, l);) {
    lines.push_back(l);
    if (lines.size() > max_lines) lines.erase(lines.begin());
  }
  std::string out;
  for (auto& l : lines) out += (out.empty() ? "" : "\n") + l;
  return out;
}

void child_setup(gpointer) { setsid(); }  // the daemon outlives the plug-in

}  // namespace

UserError to_user_error(const ipc::ClientError& e, const PluginConfig& config) {
  return UserError(user_message(kind_of(e.kind), e.what(), config));
}

DaemonInfo probe_daemon(const PluginConfig& config) {
  DaemonInfo info;
  try {
    auto client = ipc::Client::connect(instance_of(config), 1500);
    auto st = client.status();
    info.running = true;
    info.device = st.device;
    info.models = st.models;
    info.caps = st.model_caps;
    info.protocol_version = st.protocol_version;
    info.loras = st.loras;
  } catch (const ipc::ClientError&) {
  }
  return info;
}

ipc::Client connect_or_start(Host& host, const PluginConfig& config) {
  const std::string instance = instance_of(config);
  try {
    return ipc::Client::connect(instance, 3000);
  } catch (const ipc::ClientError& e) {
    if (e.kind != ipc::ClientError::Kind::NoDaemon || !config.autostart)
      throw to_user_error(e, config);
  }
  gchar* exe = g_find_program_in_path(config.daemon.c_str());
  if (!exe)
    throw UserError(user_message(ErrorKind::NoDaemon,
                                 "and the daemon program '" + config.daemon + "' was not found",
                                 config));
  auto argv = daemon_argv(config, instance);
  argv[0] = exe;
  g_free(exe);
  std::string cmdline;
  for (auto& a : argv) cmdline += (cmdline.empty() ? "" : " ") + a;

  const std::string log = log_path(config);
  gchar* dir = g_path_get_dirname(log.c_str());
  g_mkdir_with_parents(dir, 0700);
  g_free(dir);
  int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  std::vector<gchar*> cargv;
  for (auto& a : argv) cargv.push_back(const_cast<gchar*>(a.c_str()));
  cargv.push_back(nullptr);
  GPid pid = 0;
  GError* error = nullptr;
  gboolean ok =
      g_spawn_async_with_fds(nullptr, cargv.data(), nullptr,
                             GSpawnFlags(G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDIN_FROM_DEV_NULL),
                             child_setup, nullptr, &pid, -1, fd, fd, &error);
  if (fd >= 0) close(fd);
  if (!ok) {
    std::string why = error ? error->message : "unknown error";
    g_clear_error(&error);
    throw UserError(
        user_message(ErrorKind::NoDaemon, "and starting '" + cmdline + "' failed: " + why, config));
  }
  host.message(("Qwen-Image: no daemon was running, so the plug-in started it:\n" + cmdline +
                "\nLoading the model can take a while; its log is " + log + ".")
                   .c_str());
  host.progress_text("Qwen-Image: starting the daemon…");

  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(config.start_timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      std::string tail = tail_of(log, 6);
      throw UserError(
          "Qwen-Image: the daemon started by the plug-in exited (" +
          std::string(WIFEXITED(status) ? "status " + std::to_string(WEXITSTATUS(status))
                                        : "killed") +
          "). Command: " + cmdline + (tail.empty() ? "" : "\nLast lines of " + log + ":\n" + tail) +
          "\n" + how_to_start(config));
    }
    try {
      return ipc::Client::connect(instance, 500);
    } catch (const ipc::ClientError& e) {
      if (e.kind != ipc::ClientError::Kind::NoDaemon) throw to_user_error(e, config);
    }
    host.progress_pulse();
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  throw UserError(user_message(ErrorKind::NoDaemon,
                               "the started daemon did not answer within " +
                                   std::to_string(config.start_timeout_s) + " s; see " + log,
                               config));
}

// run_job: preview.cpp (progress and the live preview, issue #17).

Pixels to_rgb(const qwen::ipc::Image& img) {
  const int c = qwen::ipc::channels(img.format);
  if (qwen::ipc::bytes_per_channel(img.format) != 1)
    throw UserError("Qwen-Image: the daemon returned a float image; expected 8-bit pixels.");
  Pixels out(img.width, img.height, 3);
  for (size_t i = 0, n = size_t(img.width) * img.height; i < n; ++i)
    for (int ch = 0; ch < 3; ++ch) out.data[i * 3 + ch] = img.bytes[i * c + (c >= 3 ? ch : 0)];
  return out;
}

Pixels to_rgba(const qwen::ipc::Image& img) {
  const int c = qwen::ipc::channels(img.format);
  if (qwen::ipc::bytes_per_channel(img.format) != 1)
    throw UserError("Qwen-Image: the daemon returned a float image; expected 8-bit pixels.");
  Pixels out(img.width, img.height, 4, 255);
  for (size_t i = 0, n = size_t(img.width) * img.height; i < n; ++i) {
    for (int ch = 0; ch < 3; ++ch) out.data[i * 4 + ch] = img.bytes[i * c + (c >= 3 ? ch : 0)];
    if (c == 4) out.data[i * 4 + 3] = img.bytes[i * 4 + 3];
  }
  return out;
}

}  // namespace qwen::plugin
