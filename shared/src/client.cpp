// Client library: submits jobs to qwen-imaged through shared memory (see protocol.h).
#include "qwen_image/client.h"

#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "qwen_image/protocol.h"
#include "qwen_image/shm.h"

namespace qwen::ipc {

using namespace proto;
using shm::atom;

namespace {

constexpr int64_t kHeartbeatStaleNs = 5'000'000'000LL;  // daemon silent this long = hung
constexpr int64_t kPickupTimeoutNs = 15'000'000'000LL;  // a live daemon must see a job by then

std::string copy_cstr(const char* p, size_t cap) {
  const void* nul = std::memchr(p, 0, cap);
  return std::string(p, nul ? static_cast<const char*>(nul) : p + cap);
}

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

}  // namespace

const char* to_string(JobPhase p) {
  switch (p) {
    case JobPhase::Queued:
      return "queued";
    case JobPhase::LoadingModel:
      return "loading model";
    case JobPhase::EncodingPrompt:
      return "encoding prompt";
    case JobPhase::Denoising:
      return "denoising";
    case JobPhase::Decoding:
      return "decoding";
  }
  return "unknown";
}

std::string resolve_instance(const std::string& explicit_name) {
  if (!explicit_name.empty()) return explicit_name;
  if (const char* e = std::getenv("QWEN_IMAGE_INSTANCE"); e && *e) return e;
  return "default";
}

struct Client::Impl {
  std::string instance;
  shm::Segment control;
  int lock_fd = -1;
  int64_t daemon_pid = 0;

  ~Impl() {
    if (lock_fd >= 0) ::close(lock_fd);
  }
  ControlHeader* ctl() const { return static_cast<ControlHeader*>(control.data()); }

  // Opens (or re-opens, after a daemon restart) the lock and control objects.
  void attach(int timeout_ms) {
    const auto deadline = shm::now_ns() + int64_t(timeout_ms) * 1000000;
    const std::string who = "no qwen-imaged serves instance '" + instance +
                            "' for this user (start one with `qwen-imaged --model DIR` or "
                            "`systemctl --user start qwen-imaged`)";
    for (;;) {
      if (lock_fd >= 0) ::close(lock_fd);
      lock_fd = shm::open_lock(shm::lock_name(instance), false);
      const bool daemon_holds_lock = lock_fd >= 0 && !shm::unlocked(lock_fd);
      if (!daemon_holds_lock) throw ClientError(ClientError::Kind::NoDaemon, who);
      bool missing = false;
      shm::Segment seg;
      try {
        seg = shm::Segment::open(shm::control_name(instance), true, &missing);
      } catch (const ClientError&) {
        missing = true;  // being created right now (still empty): retry
        if (shm::now_ns() > deadline) throw;
      }
      if (!missing && seg.size() >= sizeof(SegmentPrefix)) {
        SegmentPrefix pre;
        std::memcpy(&pre, seg.data(), sizeof pre);
        pre.magic = atom(static_cast<SegmentPrefix*>(seg.data())->magic).load();
        if (pre.magic != 0) {  // 0: the daemon is still initialising it
          if (pre.magic != kMagicControl)
            throw ClientError(ClientError::Kind::ProtocolMismatch,
                              "the daemon's control block has a foreign format (bad magic)");
          if (pre.version != kControlVersion || pre.header_size != sizeof(ControlHeader) ||
              seg.size() < sizeof(ControlHeader))
            throw ClientError(ClientError::Kind::ProtocolMismatch,
                              "protocol version mismatch: qwen-imaged's control block has "
                              "version " +
                                  std::to_string(pre.version) + ", this client reads version " +
                                  std::to_string(kControlVersion) +
                                  "; install the plug-in and the daemon from the same release");
          control = std::move(seg);
          daemon_pid = atom(ctl()->daemon_pid).load();
          if (daemon_pid != 0) return;
        }
      }
      if (shm::now_ns() > deadline)
        throw ClientError(ClientError::Kind::NoDaemon,
                          "qwen-imaged for instance '" + instance + "' is starting; try again");
      sleep_ms(20);
    }
  }

  // Empty when the daemon looks alive, otherwise why not.
  std::string daemon_problem() const {
    if (lock_fd < 0 || shm::unlocked(lock_fd))
      return "qwen-imaged (pid " + std::to_string(daemon_pid) + ", instance '" + instance +
             "') died during the job";
    const int64_t age = shm::now_ns() - atom(ctl()->heartbeat_ns).load();
    if (age > kHeartbeatStaleNs)
      return "qwen-imaged (pid " + std::to_string(daemon_pid) +
             ") stopped responding (no heartbeat for " + std::to_string(age / 1000000000) + " s)";
    return {};
  }

  void submit(int64_t pid, uint64_t job_id) {
    const int64_t deadline = shm::now_ns() + kPickupTimeoutNs;
    ControlHeader* c = ctl();
    for (;;) {
      for (int i = 0; i < kSlots; ++i) {
        Slot& s = c->slots[i];
        uint64_t w = atom(s.word).load();
        if ((w & 0xff) != uint64_t(SlotState::Free)) continue;
        const uint64_t gen = w >> 8;
        const uint64_t claimed = (gen << 8) | uint64_t(SlotState::Claimed);
        if (!atom(s.word).compare_exchange_strong(w, claimed)) continue;
        atom(s.pid).store(pid);
        atom(s.job_id).store(job_id);
        atom(s.claim_ns).store(shm::now_ns());
        uint64_t expect = claimed;
        if (!atom(s.word).compare_exchange_strong(expect,
                                                  (gen << 8) | uint64_t(SlotState::Submitted)))
          continue;  // the daemon reclaimed the slot as stale; take another
        atom(c->doorbell).fetch_add(1);
        shm::futex_wake(&c->doorbell);
        return;
      }
      if (std::string p = daemon_problem(); !p.empty())
        throw ClientError(ClientError::Kind::DaemonDied, p);
      if (shm::now_ns() > deadline)
        throw ClientError(ClientError::Kind::Timeout, "the daemon's submission slots stay full");
      sleep_ms(5);
    }
  }
};

Client Client::connect(const std::string& instance, int timeout_ms) {
  Client c;
  c.impl_ = new Impl;
  c.impl_->instance = resolve_instance(instance);
  c.impl_->attach(timeout_ms);
  return c;
}

Client::Client(Client&& o) noexcept : impl_(o.impl_) { o.impl_ = nullptr; }
Client& Client::operator=(Client&& o) noexcept {
  if (this != &o) {
    delete impl_;
    impl_ = o.impl_;
    o.impl_ = nullptr;
  }
  return *this;
}
Client::~Client() { delete impl_; }

DaemonStatus Client::status() {
  impl_->attach(1000);
  ControlHeader* c = impl_->ctl();
  StatusBlock b;
  for (int tries = 0;; ++tries) {
    const uint32_t s1 = atom(c->status_seq).load(std::memory_order_acquire);
    if ((s1 & 1) == 0) {
      std::memcpy(&b, &c->status, sizeof b);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (atom(c->status_seq).load(std::memory_order_relaxed) == s1) break;
    }
    if (tries > 1000) throw ClientError(ClientError::Kind::Timeout, "daemon status keeps changing");
    sleep_ms(1);
  }
  DaemonStatus st;
  st.pid = atom(c->daemon_pid).load();
  st.version = copy_cstr(b.version, sizeof b.version);
  st.device = copy_cstr(b.device, sizeof b.device);
  st.instance = copy_cstr(b.instance, sizeof b.instance);
  // The daemon's job protocol version (2 for a daemon without the capability section).
  for (auto& m : decode_models(b.models, sizeof b.models, &st.protocol_version, &st.loras,
                               &st.loras_left_out)) {
    st.models.push_back(m.name);
    st.model_states.push_back(m.name + "\t" + m.state + "\t" + m.dir);
    st.model_caps.push_back(m.caps);
  }
  st.queued_jobs = b.queued;
  st.busy = b.busy != 0;
  st.step = b.step;
  st.total = b.total;
  st.memory_bytes = b.rss_bytes;
  st.device_memory_bytes = b.model_bytes;
  st.jobs_done = b.jobs_done;
  st.heartbeat_age_s = double(shm::now_ns() - atom(c->heartbeat_ns).load()) / 1e9;
  if (impl_->lock_fd < 0 || shm::unlocked(impl_->lock_fd))
    throw ClientError(ClientError::Kind::NoDaemon,
                      "qwen-imaged for instance '" + impl_->instance + "' is gone");
  return st;
}

namespace {
// Removes the job's shared-memory names whatever way run() leaves.
struct JobCleanup {
  shm::Segment* job;
  std::string result;
  ~JobCleanup() {
    if (job->valid()) job->unlink();
    if (!result.empty()) shm::remove(result);
  }
};
}  // namespace

std::vector<Image> Client::run(const JobRequest& request,
                               const std::function<bool(const JobProgress&)>& progress) {
  Impl& im = *impl_;
  im.attach(3000);
  const JobLayout layout = plan_job(request);
  static std::atomic<uint64_t> counter{0};
  const int64_t pid = ::getpid();
  shm::Segment job;
  uint64_t job_id = 0;
  for (int attempt = 0; !job.valid(); ++attempt) {
    job_id = (uint64_t(shm::now_ns()) << 8) ^ counter.fetch_add(1);
    try {
      job = shm::Segment::create(shm::job_name(im.instance, pid, job_id), layout.total);
    } catch (const ClientError&) {
      if (attempt >= 3) throw;
    }
  }
  JobCleanup cleanup{&job, shm::result_name(im.instance, pid, job_id)};
  // Held for the whole job: the daemon treats a job whose lock is free as abandoned.
  if (::flock(job.fd(), LOCK_EX | LOCK_NB) != 0)
    throw ClientError(ClientError::Kind::SharedMemory, "cannot lock the job segment");
  encode_job(request, layout, pid, job_id, job.data());
  auto* h = static_cast<JobHeader*>(job.data());
  im.submit(pid, job_id);

  const int64_t submitted = shm::now_ns();
  int last_step = -1, last_total = -1, last_position = -1;
  uint32_t last_preview = 0;
  JobProgress last_phase;    // phase, fraction and detail last reported
  last_phase.detail = "\n";  // differs from anything the daemon writes: the first one is reported
  for (;;) {
    const uint32_t seq = atom(h->seq).load(std::memory_order_acquire);
    const auto state = static_cast<JobState>(atom(h->state).load(std::memory_order_acquire));
    if (is_final(state)) break;
    const int step = atom(h->step).load(), total = atom(h->total).load();
    const int position = atom(h->queue_position).load();
    const uint32_t pseq = atom(h->preview_seq).load(std::memory_order_acquire);
    JobProgress p;
    p.step = step;
    p.total = total;
    p.queue_position = position;
    // The phase (protocol version 4): queued, loading model (with the component), encoding
    // prompt, denoising, decoding. A version-4 daemon writes it; keep the last one while it is
    // being rewritten.
    if (!read_phase(job.data(), &p)) {
      p.phase = last_phase.phase;
      p.fraction = last_phase.fraction;
      p.detail = last_phase.detail;
    }
    // A daemon older than version 4 never writes the phase: a running job is then denoising.
    if (state == JobState::Running && p.phase == JobPhase::Queued) p.phase = JobPhase::Denoising;
    const bool phase_changed = p.phase != last_phase.phase || p.fraction != last_phase.fraction ||
                               p.detail != last_phase.detail;
    const bool queued = state == JobState::Queued && p.phase == JobPhase::Queued;
    if (progress && (state == JobState::Running || queued) &&
        (step != last_step || total != last_total || pseq != last_preview || phase_changed ||
         position != last_position)) {
      if (pseq != last_preview)
        p.preview = read_preview(job.data(), job.size(), layout.preview_offset, pseq);
      last_step = step;
      last_total = total;
      last_preview = pseq;
      last_position = position;
      last_phase.phase = p.phase;
      last_phase.fraction = p.fraction;
      last_phase.detail = p.detail;
      if (!progress(p)) {
        atom(h->cancel).store(1);
        throw ClientError(ClientError::Kind::Cancelled, "job cancelled");
      }
    }
    if (std::string p = im.daemon_problem(); !p.empty())
      throw ClientError(ClientError::Kind::DaemonDied, p);
    if (state == JobState::Submitted && shm::now_ns() - submitted > kPickupTimeoutNs)
      throw ClientError(ClientError::Kind::Timeout, "qwen-imaged did not pick up the job");
    shm::futex_wait(&h->seq, seq, 200);
  }

  const auto state = static_cast<JobState>(atom(h->state).load(std::memory_order_acquire));
  const std::string err = copy_cstr(h->error, kErrorBytes);
  const auto kind = static_cast<ErrorKind>(h->error_kind);
  switch (state) {
    case JobState::Done:
      break;
    case JobState::Rejected:
      throw ClientError(kind == ErrorKind::ProtocolMismatch ? ClientError::Kind::ProtocolMismatch
                                                            : ClientError::Kind::Rejected,
                        "qwen-imaged rejected the job: " + err);
    case JobState::Cancelled:
      throw ClientError(ClientError::Kind::Cancelled, err.empty() ? "job cancelled" : err);
    default:
      throw ClientError(ClientError::Kind::JobFailed, "the job failed: " + err);
  }

  shm::Segment res = shm::Segment::open(cleanup.result, false);
  std::vector<Image> out;
  if (std::string e = read_result(res.data(), res.size(), &out); !e.empty())
    throw ClientError(ClientError::Kind::ProtocolMismatch,
                      "malformed result from qwen-imaged: " + e);
  atom(h->collected).store(1, std::memory_order_release);
  return out;
}

}  // namespace qwen::ipc
