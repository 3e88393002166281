// Starts and always cleans up test daemons (unique instance names, bounded waits, SIGKILL on
// teardown, leftover segments removed).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "qwen_image/client.h"

namespace qwen::test {

std::string unique_instance(const std::string& tag);

class Daemon {
 public:
  // Starts the fake-engine daemon and waits (at most 10 s) until it accepts clients.
  Daemon(const std::string& instance, std::vector<std::string> extra_args = {});
  // Any daemon binary with exactly `args` (plus --no-config --instance).
  Daemon(const std::string& binary, const std::string& instance, std::vector<std::string> args);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& instance() const { return instance_; }
  void signal(int sig);
  // Exit status (WEXITSTATUS, or 128+signal) within timeout_ms, or -1 if it is still running.
  int wait_exit(int timeout_ms);
  bool running() const { return pid_ > 0; }

 private:
  void start(const std::string& binary, std::vector<std::string> args);
  std::string instance_;
  pid_t pid_ = -1;
};

// Runs the daemon binary with `args` to completion (bounded); returns the exit status and stderr.
int run_daemon_binary(const std::vector<std::string>& args, std::string* output, int timeout_ms);

// Names of this user's shared-memory objects for an instance.
std::vector<std::string> segments_of(const std::string& instance);

// Waits until pred() holds, at most timeout_ms; true if it did.
template <typename F>
bool wait_until(F pred, int timeout_ms);

}  // namespace qwen::test

#include <chrono>
#include <thread>
template <typename F>
bool qwen::test::wait_until(F pred, int timeout_ms) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}
