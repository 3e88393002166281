// Shared-memory plumbing: names, owner-only segments, bounded waits, flock liveness.
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>

#include "qwen_image/client.h"
#include "qwen_image/shm.h"

using namespace qwen::ipc;

namespace {
std::string unique_instance(const char* tag) {
  return std::string("t-") + tag + "-" + std::to_string(::getpid());
}
}  // namespace

TEST(Shm, NamesArePerUserAndInstance) {
  const std::string p = shm::prefix("abc");
  EXPECT_EQ(p, "qwen-image." + std::to_string(::geteuid()) + ".abc");
  EXPECT_NE(shm::control_name("a"), shm::control_name("b"));
  EXPECT_THROW(shm::prefix("../evil"), ClientError);
  EXPECT_THROW(shm::prefix(""), ClientError);
  EXPECT_THROW(shm::prefix(std::string(65, 'a')), ClientError);
}

TEST(Shm, ResolveInstance) {
  ::unsetenv("QWEN_IMAGE_INSTANCE");
  EXPECT_EQ(resolve_instance(), "default");
  ::setenv("QWEN_IMAGE_INSTANCE", "env1", 1);
  EXPECT_EQ(resolve_instance(), "env1");
  EXPECT_EQ(resolve_instance("given"), "given");
  ::unsetenv("QWEN_IMAGE_INSTANCE");
}

TEST(Shm, SegmentsAreOwnerOnlyEvenWithPermissiveUmask) {
  const mode_t old = ::umask(0);
  const std::string name = shm::job_name(unique_instance("perm"), ::getpid(), 1);
  {
    shm::Segment s = shm::Segment::create(name, 4096);
    unsigned mode = 0, uid = 0;
    ASSERT_TRUE(shm::stat_mode(name, &mode, &uid));
    EXPECT_EQ(mode, 0600u);
    EXPECT_EQ(uid, ::geteuid());
    EXPECT_TRUE(s.owner_only());
    EXPECT_EQ(s.size(), 4096u);
    EXPECT_THROW(shm::Segment::create(name, 4096), ClientError);  // never reuses a name
    s.unlink();
  }
  ::umask(old);
  EXPECT_FALSE(shm::remove(name));
}

TEST(Shm, MappingOutlivesTheName) {
  const std::string name = shm::job_name(unique_instance("unlink"), ::getpid(), 2);
  shm::Segment a = shm::Segment::create(name, 8192);
  static_cast<char*>(a.data())[100] = 42;
  shm::Segment b = shm::Segment::open(name, false);
  a.unlink();
  a = shm::Segment();
  EXPECT_EQ(static_cast<const char*>(b.data())[100], 42);
  bool missing = false;
  shm::Segment c = shm::Segment::open(name, false, &missing);
  EXPECT_TRUE(missing);
  EXPECT_FALSE(c.valid());
}

TEST(Shm, FutexWaitHasADeadline) {
  uint32_t word = 5;
  const auto t0 = std::chrono::steady_clock::now();
  shm::futex_wait(&word, 5, 150);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_GE(ms, 100);
  EXPECT_LT(ms, 2000);
  const auto t1 = std::chrono::steady_clock::now();
  shm::futex_wait(&word, 6, 5000);  // value differs: returns at once
  EXPECT_LT(std::chrono::steady_clock::now() - t1, std::chrono::milliseconds(500));
}

TEST(Shm, FlockProbeSeesAHolderDie) {
  const std::string name = shm::lock_name(unique_instance("lock"));
  const int fd = shm::open_lock(name, true);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(shm::unlocked(fd));
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    const int cfd = shm::open_lock(name, false);
    ::flock(cfd, LOCK_EX);
    char c = 1;
    (void)!::write(pipefd[1], &c, 1);
    ::pause();
    ::_exit(0);
  }
  char c;
  ASSERT_EQ(::read(pipefd[0], &c, 1), 1);
  EXPECT_FALSE(shm::unlocked(fd));
  ::kill(child, SIGKILL);
  // Released when the process dies, before anyone reaps it.
  bool released = false;
  for (int i = 0; i < 200 && !released; ++i) {
    released = shm::unlocked(fd);
    if (!released) ::usleep(10000);
  }
  EXPECT_TRUE(released);
  ::waitpid(child, nullptr, 0);
  ::close(fd);
  shm::remove(name);
  ::close(pipefd[0]);
  ::close(pipefd[1]);
}

TEST(Client, NoDaemonFailsFastWithAClearMessage) {
  const auto t0 = std::chrono::steady_clock::now();
  try {
    Client::connect(unique_instance("none"), 3000);
    FAIL() << "connected to nothing";
  } catch (const ClientError& e) {
    EXPECT_EQ(e.kind, ClientError::Kind::NoDaemon);
    EXPECT_NE(std::string(e.what()).find("no qwen-imaged serves instance"), std::string::npos);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
}

TEST(Client, RefusesADaemonOfAnotherProtocolVersion) {
  const std::string inst = unique_instance("oldproto");
  const int lock = shm::open_lock(shm::lock_name(inst), true);
  ASSERT_EQ(::flock(lock, LOCK_EX | LOCK_NB), 0);  // pose as a live daemon
  {
    shm::Segment ctl = shm::Segment::create(shm::control_name(inst), 4096);
    auto* pre = static_cast<uint32_t*>(ctl.data());
    pre[0] = 0x43494D51;  // control magic
    pre[1] = 999;         // a future protocol
    try {
      Client::connect(inst, 1000);
      FAIL() << "connected";
    } catch (const ClientError& e) {
      EXPECT_EQ(e.kind, ClientError::Kind::ProtocolMismatch);
      EXPECT_NE(std::string(e.what()).find("protocol version mismatch"), std::string::npos)
          << e.what();
    }
    ctl.unlink();
  }
  ::close(lock);
  shm::remove(shm::lock_name(inst));
}
