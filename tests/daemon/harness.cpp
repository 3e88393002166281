#include "harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <stdexcept>

#include "qwen_image/shm.h"

namespace qwen::test {

std::string unique_instance(const std::string& tag) {
  static std::atomic<int> n{0};
  return "td-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
}

namespace {
pid_t spawn(const std::vector<std::string>& args, int out_fd, std::string bin = QWEN_FAKE_DAEMON) {
  std::vector<char*> argv;
  argv.push_back(bin.data());
  std::vector<std::string> copy = args;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (out_fd >= 0) {
      ::dup2(out_fd, 2);
      ::dup2(out_fd, 1);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

int decode(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }
}  // namespace

Daemon::Daemon(const std::string& instance, std::vector<std::string> extra) : instance_(instance) {
  extra.insert(extra.begin(), "--fake-engine");
  start(QWEN_FAKE_DAEMON, extra);
}

Daemon::Daemon(const std::string& binary, const std::string& instance,
               std::vector<std::string> args)
    : instance_(instance) {
  start(binary, args);
}

void Daemon::start(const std::string& binary, std::vector<std::string> extra) {
  std::vector<std::string> args = {"--no-config", "--instance", instance_};
  args.insert(args.end(), extra.begin(), extra.end());
  pid_ = spawn(args, -1, binary);
  if (pid_ <= 0) throw std::runtime_error("fork failed");
  const bool up = wait_until(
      [&] {
        int st;
        if (::waitpid(pid_, &st, WNOHANG) == pid_) {
          pid_ = -1;
          return true;
        }
        try {
          ipc::Client::connect(instance_, 100);
          return true;
        } catch (const ipc::ClientError&) {
          return false;
        }
      },
      10000);
  if (!up || pid_ < 0) {
    if (pid_ > 0) signal(SIGKILL), wait_exit(5000);
    throw std::runtime_error("test daemon for instance " + instance_ + " did not come up");
  }
}

Daemon::~Daemon() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  for (const auto& n : segments_of(instance_)) ipc::shm::remove(n);
}

void Daemon::signal(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

int Daemon::wait_exit(int timeout_ms) {
  if (pid_ <= 0) return -1;
  int result = -1;
  wait_until(
      [&] {
        int st;
        if (::waitpid(pid_, &st, WNOHANG) == pid_) {
          result = decode(st);
          return true;
        }
        return false;
      },
      timeout_ms);
  if (result >= 0) pid_ = -1;
  return result;
}

int run_daemon_binary(const std::vector<std::string>& args, std::string* output, int timeout_ms) {
  char path[] = "/tmp/qwen-daemon-test-XXXXXX";
  const int fd = ::mkstemp(path);
  const pid_t pid = spawn(args, fd);
  int result = -1;
  wait_until(
      [&] {
        int st;
        if (::waitpid(pid, &st, WNOHANG) == pid) {
          result = decode(st);
          return true;
        }
        return false;
      },
      timeout_ms);
  if (result < 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  output->clear();
  ::lseek(fd, 0, SEEK_SET);
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) output->append(buf, size_t(n));
  ::close(fd);
  ::unlink(path);
  return result;
}

std::vector<std::string> segments_of(const std::string& instance) {
  return ipc::shm::list(ipc::shm::prefix(instance) + ".");
}

}  // namespace qwen::test
