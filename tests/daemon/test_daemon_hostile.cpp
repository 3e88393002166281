// Hostile job segments submitted straight into the control block (bypassing the client library):
// the daemon answers each with a specific rejection and keeps serving.
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstring>
#include <functional>

#include "harness.h"
#include "qwen_image/protocol.h"
#include "qwen_image/shm.h"

using namespace qwen::ipc;
using namespace qwen::ipc::proto;
using qwen::test::Daemon;
using qwen::test::unique_instance;
using qwen::test::wait_until;

namespace {

// Submits a valid generate request after `mutate`; returns the daemon's final state and message.
std::pair<JobState, std::string> submit_raw(const std::string& inst, uint64_t id,
                                            const std::function<void(JobHeader*)>& mutate,
                                            mode_t mode = 0600) {
  JobRequest r;
  r.prompts = {"hello"};
  r.steps = 1;
  const JobLayout L = plan_job(r);
  const int64_t pid = ::getpid();
  shm::Segment seg = shm::Segment::create(shm::job_name(inst, pid, id), L.total);
  encode_job(r, L, pid, id, seg.data());
  auto* h = static_cast<JobHeader*>(seg.data());
  mutate(h);
  ::fchmod(seg.fd(), mode);
  ::flock(seg.fd(), LOCK_EX);
  bool missing = false;
  shm::Segment ctl = shm::Segment::open(shm::control_name(inst), true, &missing);
  auto* c = static_cast<ControlHeader*>(ctl.data());
  for (int i = 0; i < kSlots; ++i) {
    uint64_t w = shm::atom(c->slots[i].word).load();
    if ((w & 0xff) != 0) continue;
    const uint64_t gen = w >> 8;
    if (!shm::atom(c->slots[i].word).compare_exchange_strong(w, (gen << 8) | 1)) continue;
    c->slots[i].pid = pid;
    c->slots[i].job_id = id;
    shm::atom(c->slots[i].word).store((gen << 8) | 2);
    shm::atom(c->doorbell).fetch_add(1);
    shm::futex_wake(&c->doorbell);
    break;
  }
  wait_until([&] { return is_final(JobState(shm::atom(h->state).load())); }, 5000);
  std::pair<JobState, std::string> out{JobState(shm::atom(h->state).load()), std::string(h->error)};
  seg.unlink();
  return out;
}

}  // namespace

TEST(DaemonHostile, EachBadSegmentGetsASpecificRejection) {
  Daemon d(unique_instance("hostile"));
  struct Case {
    const char* expect;
    std::function<void(JobHeader*)> mutate;
  };
  const Case cases[] = {
      {"protocol version mismatch", [](JobHeader* h) { h->prefix.version = 7; }},
      {"bad magic", [](JobHeader* h) { h->prefix.magic = 1; }},
      {"segment size disagrees", [](JobHeader* h) { h->prefix.segment_size = 1 << 30; }},
      {"out of range", [](JobHeader* h) { h->width = 1 << 30; }},
      {"unknown pipeline", [](JobHeader* h) { std::strcpy(h->pipeline, "\xff\xfe"); }},
      {"lies outside the segment", [](JobHeader* h) { h->text_offset = ~0ULL - 4; }},
      {"names another job", [](JobHeader* h) { h->job_id ^= 1; }},
  };
  uint64_t id = 100;
  for (const auto& c : cases) {
    auto [state, msg] = submit_raw(d.instance(), id++, c.mutate);
    EXPECT_EQ(state, JobState::Rejected) << c.expect;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << "expected '" << c.expect << "': " << msg;
  }
  auto [state, msg] = submit_raw(
      d.instance(), id++, [](JobHeader*) {}, 0644);
  EXPECT_EQ(state, JobState::Rejected);
  EXPECT_NE(msg.find("mode 0600"), std::string::npos) << msg;
  auto ok = submit_raw(d.instance(), id++, [](JobHeader*) {});
  EXPECT_EQ(ok.first, JobState::Done) << ok.second;
  ::kill(d.pid(), 0);
  EXPECT_TRUE(d.running());
}

// A version-2 client (its job header ends before the version-3 decompose fields) still gets its
// job run by a version-3 daemon, and finds the control block as before (format and version
// number unchanged, like the result segment's: proto::kControlVersion).
TEST(DaemonHostile, Version2ClientJobsStillRun) {
  Daemon d(unique_instance("v2"));
  auto [state, msg] = submit_raw(d.instance(), 500, [](JobHeader* h) {
    h->prefix.version = 2;
    h->prefix.header_size = uint32_t(kJobHeaderV2Size);
    std::memset(&h->layers, 0xff, sizeof(JobHeader) - kJobHeaderV2Size);  // beyond a v2 header
  });
  EXPECT_EQ(state, JobState::Done) << msg;
  bool missing = false;
  shm::Segment ctl = shm::Segment::open(shm::control_name(d.instance()), true, &missing);
  ASSERT_FALSE(missing);
  const auto* c = static_cast<const ControlHeader*>(ctl.data());
  EXPECT_EQ(c->prefix.version, 2u);
  EXPECT_EQ(c->prefix.header_size, uint32_t(sizeof(ControlHeader)));
  // What a version-2 client reads of the model list: the lines, up to the first NUL.
  EXPECT_EQ(std::string(c->status.models).rfind("fake\t", 0), 0u) << c->status.models;
}

// A version-3 client (protocol version 4 appended kv_cache, output_resolution, more images and
// the phase): its shorter header is taken, whatever lies beyond it.
TEST(DaemonHostile, Version3ClientJobsStillRun) {
  Daemon d(unique_instance("v3"));
  auto [state, msg] = submit_raw(d.instance(), 501, [](JobHeader* h) {
    h->prefix.version = 3;
    h->prefix.header_size = uint32_t(kJobHeaderV3Size);
    std::memset(&h->kv_cache, 0xff, sizeof(JobHeader) - kJobHeaderV3Size);  // beyond a v3 header
  });
  EXPECT_EQ(state, JobState::Done) << msg;
}

// A version-4 client (protocol version 5 only gave steps 0 and true_cfg_scale -1 the meaning "the
// model's default", with the same header): its jobs run, and 0 / -1 are refused as before.
TEST(DaemonHostile, Version4ClientJobsStillRun) {
  Daemon d(unique_instance("v4"));
  auto v4 = [](JobHeader* h) { h->prefix.version = 4; };
  auto [state, msg] = submit_raw(d.instance(), 502, v4);
  EXPECT_EQ(state, JobState::Done) << msg;
  auto [zero, zero_msg] = submit_raw(d.instance(), 503, [&](JobHeader* h) {
    v4(h);
    h->steps = 0;
  });
  EXPECT_EQ(zero, JobState::Rejected);
  EXPECT_NE(zero_msg.find("steps must be 1..1000, got 0"), std::string::npos) << zero_msg;
  // The same job as version 5: the model's default (the fake engine's 50 steps).
  auto [dflt, dflt_msg] = submit_raw(d.instance(), 504, [](JobHeader* h) {
    h->steps = 0;
    h->true_cfg_scale = -1.0f;
  });
  EXPECT_EQ(dflt, JobState::Done) << dflt_msg;
}
