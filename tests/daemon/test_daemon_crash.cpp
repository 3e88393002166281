// Nothing wedges: concurrent clients, clients and daemons killed mid-job, restarts, permissions.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "harness.h"
#include "qwen_image/client.h"
#include "qwen_image/shm.h"
#include "server/fake_engine.h"

using namespace qwen;
using namespace qwen::ipc;
using qwen::test::Daemon;
using qwen::test::segments_of;
using qwen::test::unique_instance;
using qwen::test::wait_until;
using Clock = std::chrono::steady_clock;

namespace {

JobRequest generate(int64_t seed, int steps) {
  JobRequest r;
  r.prompts = {"prompt " + std::to_string(seed)};
  r.width = 32;
  r.height = 32;
  r.seed = seed;
  r.steps = steps;
  r.result_format = PixelFormat::RGB8;
  return r;
}

bool matches_fake(const JobRequest& r, const Image& got) {
  RunParams p;
  p.prompts = r.prompts;
  p.width = r.width;
  p.height = r.height;
  p.seed = r.seed;
  p.steps = r.steps;
  auto want = server::fake_results(p);
  return got.width == want[0].width && got.height == want[0].height && got.bytes == want[0].pixels;
}

// A child process that runs one long job and signals through a pipe once it is running.
pid_t spawn_busy_client(const std::string& instance, int* ready_fd) {
  int fds[2];
  if (::pipe(fds) != 0) return -1;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    try {
      Client c = Client::connect(instance);
      bool told = false;
      c.run(generate(99, 1000), [&](const JobProgress& p) {
        if (p.step >= 1 && !told) {
          char x = 1;
          (void)!::write(fds[1], &x, 1);
          told = true;
        }
        return true;
      });
    } catch (...) {
    }
    ::_exit(3);
  }
  ::close(fds[1]);
  *ready_fd = fds[0];
  return pid;
}

bool read_ready(int fd) {
  char x;
  const bool ok = ::read(fd, &x, 1) == 1;
  ::close(fd);
  return ok;
}

}  // namespace

TEST(DaemonCrash, EightClientsAtOnceAllGetTheirOwnResults) {
  Daemon d(unique_instance("eight"), {"--fake-step-ms", "5"});
  std::vector<pid_t> kids;
  for (int i = 0; i < 8; ++i) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      int rc = 1;
      try {
        Client c = Client::connect(d.instance());
        JobRequest r = generate(1000 + i, 4);
        auto out = c.run(r);
        rc = out.size() == 1 && matches_fake(r, out[0]) ? 0 : 1;
      } catch (...) {
        rc = 2;
      }
      ::_exit(rc);
    }
    kids.push_back(pid);
  }
  for (pid_t k : kids) {
    int st = -1;
    const bool done = wait_until([&] { return ::waitpid(k, &st, WNOHANG) == k; }, 60000);
    if (!done) ::kill(k, SIGKILL), ::waitpid(k, &st, 0);
    EXPECT_TRUE(done);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "client exit " << st;
  }
  // Also from threads of one process.
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&, i] {
      try {
        Client c = Client::connect(d.instance());
        JobRequest r = generate(2000 + i, 3);
        auto out = c.run(r);
        if (out.size() == 1 && matches_fake(r, out[0])) ++good;
      } catch (...) {
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 8);
  Client c = Client::connect(d.instance());
  EXPECT_TRUE(wait_until([&] { return c.status().jobs_done == 16; }, 2000)) << c.status().jobs_done;
}

TEST(DaemonCrash, KilledClientFreesTheDaemonWithinASecond) {
  Daemon d(unique_instance("kclient"), {"--fake-step-ms", "20"});
  int ready = -1;
  const pid_t kid = spawn_busy_client(d.instance(), &ready);
  ASSERT_TRUE(read_ready(ready));
  Client c = Client::connect(d.instance());
  EXPECT_TRUE(wait_until([&] { return c.status().busy; }, 2000));
  ::kill(kid, SIGKILL);
  const auto t0 = Clock::now();
  ::waitpid(kid, nullptr, 0);
  auto out = c.run(generate(7, 1));
  const auto dt = Clock::now() - t0;
  ASSERT_EQ(out.size(), 1u);
  EXPECT_LT(dt, std::chrono::seconds(1))
      << std::chrono::duration_cast<std::chrono::milliseconds>(dt).count() << " ms";
  // The dead client's job segment is gone once the daemon noticed.
  EXPECT_TRUE(wait_until(
      [&] {
        for (const auto& n : segments_of(d.instance()))
          if (n.find(".job." + std::to_string(kid) + ".") != std::string::npos) return false;
        return true;
      },
      3000));
}

TEST(DaemonCrash, KilledDaemonMakesTheClientFailWithin5s) {
  Daemon d(unique_instance("kdaemon"), {"--fake-step-ms", "20"});
  Client c = Client::connect(d.instance());
  Clock::time_point killed{};
  try {
    c.run(generate(1, 1000), [&](const JobProgress& p) {
      if (p.step >= 2 && killed == Clock::time_point{}) {
        d.signal(SIGKILL);  // not reaped yet: the daemon is a zombie child of this process
        killed = Clock::now();
      }
      return true;
    });
    FAIL() << "the job finished";
  } catch (const ClientError& e) {
    EXPECT_EQ(e.kind, ClientError::Kind::DaemonDied);
    EXPECT_NE(std::string(e.what()).find("died"), std::string::npos) << e.what();
  }
  EXPECT_LT(Clock::now() - killed, std::chrono::seconds(5));
  // A client process exits non-zero too.
}

TEST(DaemonCrash, KilledDaemonMakesAClientProcessExitNonZero) {
  auto d = std::make_unique<Daemon>(unique_instance("kdproc"),
                                    std::vector<std::string>{"--fake-step-ms", "20"});
  int ready = -1;
  const pid_t kid = spawn_busy_client(d->instance(), &ready);
  ASSERT_TRUE(read_ready(ready));
  d->signal(SIGKILL);
  const auto t0 = Clock::now();
  int st = 0;
  const bool exited = wait_until([&] { return ::waitpid(kid, &st, WNOHANG) == kid; }, 5000);
  if (!exited) ::kill(kid, SIGKILL), ::waitpid(kid, &st, 0);
  EXPECT_TRUE(exited) << "client still running 5 s after the daemon died";
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 3);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5));
}

TEST(DaemonCrash, RestartRemovesEverythingTheDeadDaemonLeft) {
  const std::string inst = unique_instance("restart");
  pid_t kid = -1;
  {
    Daemon d(inst, {"--fake-step-ms", "20"});
    // A finished result nobody collected, a running job, then both processes die hard.
    int ready = -1;
    kid = spawn_busy_client(inst, &ready);
    ASSERT_TRUE(read_ready(ready));
    ::kill(kid, SIGSTOP);  // keep the client's segment around
    d.signal(SIGKILL);
    ASSERT_GE(d.wait_exit(5000), 0);
    ::kill(kid, SIGKILL);
    ::waitpid(kid, nullptr, 0);
    const auto left = segments_of(inst);
    EXPECT_GE(left.size(), 2u);  // lock, control, the dead client's job
    // The destructor would clean up: restart before it runs.
    Daemon again(inst);
    std::vector<std::string> now = segments_of(inst);
    std::sort(now.begin(), now.end());
    const std::string pre = shm::prefix(inst);
    EXPECT_EQ(now, (std::vector<std::string>{pre + ".ctl", pre + ".lock"}));
    EXPECT_EQ(Client::connect(inst).status().pid, again.pid());
  }
  EXPECT_TRUE(segments_of(inst).empty());
}

TEST(DaemonCrash, EverySegmentIsOwnerOnly) {
  Daemon d(unique_instance("perm"), {"--fake-step-ms", "20"});
  int ready = -1;
  const pid_t kid = spawn_busy_client(d.instance(), &ready);
  ASSERT_TRUE(read_ready(ready));
  // A finished job whose result is not collected yet: run one and look while it is held.
  auto names = segments_of(d.instance());
  bool saw_job = false;
  for (const auto& n : names) {
    unsigned mode = 0, uid = 0;
    ASSERT_TRUE(shm::stat_mode(n, &mode, &uid)) << n;
    EXPECT_EQ(mode, 0600u) << n;
    EXPECT_EQ(uid, ::geteuid()) << n;
    saw_job |= n.find(".job.") != std::string::npos;
  }
  EXPECT_TRUE(saw_job);
  EXPECT_GE(names.size(), 3u);
  // The result segment too.
  Client c = Client::connect(d.instance());
  ::kill(kid, SIGKILL);
  ::waitpid(kid, nullptr, 0);
  auto out = c.run(generate(3, 1), [&](const JobProgress&) {
    for (const auto& n : segments_of(d.instance())) {
      unsigned mode = 0, uid = 0;
      if (shm::stat_mode(n, &mode, &uid)) {
        EXPECT_EQ(mode, 0600u) << n;
      }
    }
    return true;
  });
  EXPECT_EQ(out.size(), 1u);
}

TEST(DaemonCrash, QueuedJobOfADeadClientIsDropped) {
  Daemon d(unique_instance("queue"), {"--fake-step-ms", "20"});
  int ready = -1;
  const pid_t busy = spawn_busy_client(d.instance(), &ready);
  ASSERT_TRUE(read_ready(ready));
  // Queue a second job from another process, then kill that process while it waits.
  const pid_t queued = ::fork();
  if (queued == 0) {
    try {
      Client::connect(d.instance()).run(generate(5, 1000));
    } catch (...) {
    }
    ::_exit(3);
  }
  Client c = Client::connect(d.instance());
  ASSERT_TRUE(wait_until([&] { return c.status().queued_jobs == 1; }, 5000));
  ::kill(queued, SIGKILL);
  ::waitpid(queued, nullptr, 0);
  EXPECT_TRUE(wait_until([&] { return c.status().queued_jobs == 0; }, 2000));
  ::kill(busy, SIGKILL);
  ::waitpid(busy, nullptr, 0);
  EXPECT_EQ(c.run(generate(6, 1)).size(), 1u);
}

TEST(DaemonCrash, AHungDaemonIsNoticedByItsHeartbeat) {
  Daemon d(unique_instance("hung"), {"--fake-step-ms", "20"});
  Client c = Client::connect(d.instance());
  Clock::time_point stopped{};
  try {
    c.run(generate(1, 1000), [&](const JobProgress& p) {
      if (p.step >= 2 && stopped == Clock::time_point{}) {
        d.signal(SIGSTOP);
        stopped = Clock::now();
      }
      return true;
    });
    FAIL() << "the job finished";
  } catch (const ClientError& e) {
    EXPECT_EQ(e.kind, ClientError::Kind::DaemonDied);
    EXPECT_NE(std::string(e.what()).find("stopped responding"), std::string::npos) << e.what();
  }
  const auto waited = Clock::now() - stopped;
  EXPECT_GE(waited, std::chrono::seconds(4));
  EXPECT_LT(waited, std::chrono::seconds(8));
  d.signal(SIGCONT);
}
