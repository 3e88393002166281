#include "server/server.h"

#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "qwen_image/pixels.h"
#include "qwen_image/shm.h"
#include "server/job.h"
#include "server/log.h"
#include "server/lora_list.h"
#include "server/lora_resolve.h"
#include "server/model_caps.h"

namespace qwen::server {

using namespace ipc::proto;
using ipc::shm::atom;
namespace shm = ipc::shm;

namespace {

bool pid_alive(int64_t pid) {
  if (pid <= 0 || pid > INT32_MAX) return false;
  return ::kill(pid_t(pid), 0) == 0 || errno == EPERM;
}

// "<prefix>.job.<pid>.<id>" -> pid (0 when the name does not parse).
int64_t pid_of(const std::string& name, const std::string& pre) {
  if (name.size() <= pre.size()) return 0;
  return std::atoll(name.c_str() + pre.size());
}

int64_t rss_bytes() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return int64_t(resident) * ::sysconf(_SC_PAGESIZE);
}

void copy_str(char* dst, size_t cap, const std::string& s) {
  const size_t n = std::min(cap - 1, s.size());
  std::memcpy(dst, s.data(), n);
  dst[n] = '\0';
}

}  // namespace

struct Server::State {
  DaemonConfig cfg;
  EngineFactory factory;
  std::string pre;  // name prefix
  int lock_fd = -1;
  shm::Segment control;
  std::atomic<bool> stop{false};
  bool started = false;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<JobPtr> queue;
  JobPtr running;
  std::vector<JobPtr> finished;  // results not yet collected
  Models models;
  std::atomic<int64_t> jobs_done{0};
  std::thread worker;
  // The LoRAs of the lora_dir folders for the status block (protocol version 4), rescanned every
  // few seconds by the serving thread.
  LoraCatalog lora_catalog;
  std::vector<ipc::LoraInfo> loras;  // guarded by mu

  void refresh_loras() {
    if (cfg.lora_dirs.empty()) return;
    auto found = lora_catalog.scan(cfg.lora_dirs);
    std::lock_guard<std::mutex> lk(mu);
    loras = std::move(found);
  }

  ControlHeader* ctl() { return static_cast<ControlHeader*>(control.data()); }

  void remove_stale_segments(bool at_start) {
    for (const char* kind : {".job.", ".res."}) {
      const std::string p = pre + kind;
      for (const auto& n : shm::list(p)) {
        const bool dead = !pid_alive(pid_of(n, p));
        // At start every result is stale: its daemon is gone.
        if (dead || (at_start && kind[1] == 'r')) {
          bool tracked = false;
          {
            std::lock_guard<std::mutex> lk(mu);
            for (auto& j : finished) tracked |= j->result_name == n;
          }
          if (tracked) continue;
          if (shm::remove(n)) log_info("removed stale segment /dev/shm/" + n);
        }
      }
    }
  }

  void update_positions() {
    std::lock_guard<std::mutex> lk(mu);
    int pos = 1;
    for (auto& j : queue) {
      atom(j->h()->queue_position).store(pos++);
      publish(*j);
    }
  }

  void publish_status() {
    ControlHeader* c = ctl();
    StatusBlock b{};
    copy_str(b.version, sizeof b.version, QWEN_IMAGE_VERSION);
    copy_str(b.instance, sizeof b.instance, cfg.instance);
    {
      std::lock_guard<std::mutex> lk(mu);
      encode_models(models.entries(), b.models, sizeof b.models, loras);
      std::string dev = models.loaded_device();
      if (dev.empty()) dev = (cfg.device.empty() ? "auto" : cfg.device) + " (no model loaded)";
      if (cfg.fake_engine) dev += " [fake engine]";
      copy_str(b.device, sizeof b.device, dev);
      b.model_bytes = models.resident_bytes();
      b.queued = int32_t(queue.size());
      b.busy = running ? 1 : 0;
      if (running) {
        b.step = atom(running->h()->step).load();
        b.total = atom(running->h()->total).load();
      }
    }
    b.rss_bytes = rss_bytes();
    b.jobs_done = jobs_done.load();
    atom(c->status_seq).fetch_add(1, std::memory_order_acq_rel);  // odd: writing
    std::atomic_thread_fence(std::memory_order_release);
    std::memcpy(&c->status, &b, sizeof b);
    atom(c->status_seq).fetch_add(1, std::memory_order_release);
  }

  void accept(int64_t pid, uint64_t id) {
    const std::string name = shm::job_name(cfg.instance, pid, id);
    bool missing = false;
    shm::Segment seg;
    try {
      seg = shm::Segment::open(name, true, &missing);
    } catch (const std::exception& e) {
      log_warn(std::string("job segment: ") + e.what());
      return;
    }
    if (missing) {
      log_warn("job segment /dev/shm/" + name + " vanished before it was read");
      return;
    }
    auto j = std::make_shared<Job>();
    j->seg = std::move(seg);
    j->name = name;
    const bool can_reply = j->seg.size() >= kJobHeaderV2Size;  // the fields a reply writes
    auto reject = [&](ErrorKind k, const std::string& msg) {
      log_warn("rejected job " + name + ": " + msg);
      if (can_reply) finish(*j, JobState::Rejected, k, msg);
    };
    if (!j->seg.owner_only())
      return reject(ErrorKind::Rejected,
                    "the job segment must belong to the daemon's user and have mode 0600");
    ErrorKind kind;
    std::string err = validate_job(j->seg.data(), j->seg.size(), cfg.limits, &j->req, &kind);
    if (!err.empty()) return reject(kind, err);
    if (j->req.client_pid != pid || j->req.job_id != id)
      return reject(ErrorKind::Rejected, "the job header names another job than its segment");
    std::string known;
    {
      std::lock_guard<std::mutex> lk(mu);
      j->model = models.find(j->req.model, &known);
      if (j->model < 0)
        return reject(ErrorKind::Rejected,
                      "unknown model '" + j->req.model + "'; this daemon serves: " + known);
      // A pipeline the model cannot run (decompose on a non-Layered model and the reverse).
      if (std::string e =
              check_pipeline(models.caps(j->model), j->req.pipeline, models.name(j->model));
          !e.empty())
        return reject(ErrorKind::Rejected, e);
    }
    // A LoRA that cannot be resolved is refused now, naming it, rather than failing when the job
    // starts (run_job resolves again: the file may change while the job waits).
    for (const auto& l : j->req.loras) {
      std::string file;
      if (std::string e = resolve_job_lora(l.name, cfg.lora_dirs, j->req.client_pid, &file);
          !e.empty())
        return reject(ErrorKind::Rejected, e);
    }
    {
      std::lock_guard<std::mutex> lk(mu);
      if (int(queue.size()) >= cfg.max_queue)
        return reject(ErrorKind::Rejected,
                      "the queue is full (" + std::to_string(queue.size()) + " jobs waiting)");
      atom(j->h()->state).store(uint32_t(JobState::Queued), std::memory_order_release);
      queue.push_back(j);
    }
    log_info("queued job " + std::to_string(id) + " from pid " + std::to_string(pid) + ": " +
             j->req.pipeline + ", " +
             (j->req.steps ? std::to_string(j->req.steps) : std::string("the model's default")) +
             " steps");
    update_positions();
    cv.notify_all();
  }

  // Submissions, stale claims, abandoned queued jobs and collected results.
  void poll(std::array<std::pair<uint64_t, int64_t>, kSlots>& claims) {
    ControlHeader* c = ctl();
    const int64_t now = shm::now_ns();
    for (int i = 0; i < kSlots; ++i) {
      Slot& s = c->slots[i];
      uint64_t w = atom(s.word).load(std::memory_order_acquire);
      const uint64_t gen = w >> 8;
      const auto st = SlotState(w & 0xff);
      if (st == SlotState::Submitted) {
        const int64_t pid = atom(s.pid).load();
        const uint64_t id = atom(s.job_id).load();
        atom(s.word).compare_exchange_strong(w, ((gen + 1) << 8) | uint64_t(SlotState::Free));
        accept(pid, id);
      } else if (st == SlotState::Claimed) {
        if (claims[i].first != w) {
          claims[i] = {w, now};
        } else if (now - claims[i].second > 2'000'000'000LL) {
          // A client died between claiming and submitting.
          atom(s.word).compare_exchange_strong(w, ((gen + 1) << 8) | uint64_t(SlotState::Free));
        }
      } else if (st != SlotState::Free) {
        atom(s.word).compare_exchange_strong(w, ((gen + 1) << 8) | uint64_t(SlotState::Free));
      }
    }
    bool changed = false;
    std::vector<JobPtr> dropped;
    {
      std::lock_guard<std::mutex> lk(mu);
      for (auto it = queue.begin(); it != queue.end();) {
        if (atom((*it)->h()->cancel).load() || (*it)->client_gone()) {
          dropped.push_back(*it);
          it = queue.erase(it);
          changed = true;
        } else {
          ++it;
        }
      }
      for (auto it = finished.begin(); it != finished.end();) {
        if ((*it)->client_gone()) {
          (*it)->release();
          it = finished.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& j : dropped) {
      log_info("dropped queued job " + j->name + ": client cancelled or gone");
      finish(*j, JobState::Cancelled, ErrorKind::Cancelled, "job cancelled");
      j->seg.unlink();
    }
    if (changed) update_positions();
  }

  void work() {
    if (!cfg.lazy) {
      for (size_t i = 0; i < models.size() && !stop; ++i) {
        std::string err;
        models.get(int(i), mu, &err);
        if (!err.empty()) log_error(err);
      }
    }
    while (!stop) {
      JobPtr j;
      {
        std::unique_lock<std::mutex> lk(mu);
        cv.wait_for(lk, std::chrono::milliseconds(200), [&] { return stop || !queue.empty(); });
        if (stop || queue.empty()) continue;
        j = queue.front();
        queue.pop_front();
        running = j;
      }
      update_positions();
      run_job(*j, models, mu, cfg, stop);
      std::lock_guard<std::mutex> lk(mu);
      running.reset();
      finished.push_back(j);
      jobs_done.fetch_add(1);
    }
  }
};

Server::Server(DaemonConfig config, EngineFactory factory) : s_(std::make_unique<State>()) {
  s_->cfg = std::move(config);
  s_->factory = std::move(factory);
  s_->models.init(s_->cfg, s_->factory);
}

Server::~Server() {
  request_stop();
  if (s_->worker.joinable()) s_->worker.join();
  if (s_->lock_fd >= 0) ::close(s_->lock_fd);
}

void Server::request_stop() {
  s_->stop.store(true);
  if (s_->control.valid()) {
    atom(s_->ctl()->doorbell).fetch_add(1);
    shm::futex_wake(&s_->ctl()->doorbell);
  }
}

std::string Server::start() {
  State& s = *s_;
  try {
    s.pre = shm::prefix(s.cfg.instance);
    const std::string lock = shm::lock_name(s.cfg.instance);
    // Own the instance: an exclusive flock held for the daemon's whole life. The lock object may
    // be replaced by a daemon that is shutting down, so check we locked the current one.
    for (int attempt = 0;; ++attempt) {
      const int fd = shm::open_lock(lock, true);
      if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
        struct stat a, b;
        if (::fstat(fd, &a) == 0 && ::stat(("/dev/shm/" + lock).c_str(), &b) == 0 &&
            a.st_ino == b.st_ino) {
          s.lock_fd = fd;
          break;
        }
      }
      ::close(fd);
      if (attempt >= 100) {
        std::string who;
        bool missing = false;
        shm::Segment c = shm::Segment::open(shm::control_name(s.cfg.instance), false, &missing);
        if (!missing && c.size() >= sizeof(ControlHeader))
          who = " (pid " +
                std::to_string(atom(static_cast<ControlHeader*>(c.data())->daemon_pid).load()) +
                ")";
        return "another qwen-imaged already serves instance '" + s.cfg.instance + "'" + who +
               "; stop it or use --instance NAME";
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (shm::remove(shm::control_name(s.cfg.instance)))
      log_info("removed the control block left by a daemon that died");
    s.remove_stale_segments(true);
    s.refresh_loras();
    s.control = shm::Segment::create(shm::control_name(s.cfg.instance), sizeof(ControlHeader));
  } catch (const std::exception& e) {
    return e.what();
  }
  ControlHeader* c = s.ctl();
  std::memset(c, 0, sizeof *c);
  c->daemon_pid = ::getpid();
  c->started_unix = ::time(nullptr);
  c->heartbeat_ns = shm::now_ns();
  s.publish_status();
  c->prefix = {0, kControlVersion, uint32_t(sizeof(ControlHeader)), 0, sizeof(ControlHeader)};
  atom(c->prefix.magic).store(kMagicControl, std::memory_order_release);
  s.started = true;
  s.worker = std::thread([&s] { s.work(); });
  log_info("serving instance '" + s.cfg.instance + "' at /dev/shm/" + s.control.name() +
           " (protocol " + std::to_string(kProtocolVersion) + ", " +
           std::to_string(s.models.size()) + " model(s)" + (s.cfg.lazy ? ", lazy" : "") + ")");
  return {};
}

void Server::serve() {
  State& s = *s_;
  if (!s.started) return;
  std::array<std::pair<uint64_t, int64_t>, kSlots> claims{};
  int64_t last_scan = shm::now_ns();
  ControlHeader* c = s.ctl();
  while (!s.stop) {
    const uint32_t bell = atom(c->doorbell).load(std::memory_order_acquire);
    atom(c->heartbeat_ns).store(shm::now_ns(), std::memory_order_release);
    s.poll(claims);
    s.publish_status();
    if (shm::now_ns() - last_scan > 5'000'000'000LL) {
      s.remove_stale_segments(false);
      s.refresh_loras();
      last_scan = shm::now_ns();
    }
    shm::futex_wait(&c->doorbell, bell, 100);
  }
  log_info("shutting down");
  s.cv.notify_all();
  if (s.worker.joinable()) s.worker.join();
  std::vector<JobPtr> left;
  {
    std::lock_guard<std::mutex> lk(s.mu);
    left.assign(s.queue.begin(), s.queue.end());
    s.queue.clear();
  }
  for (auto& j : left)
    finish(*j, JobState::Cancelled, ErrorKind::ShuttingDown, "qwen-imaged is shutting down");
  // Give clients a moment to copy finished results out, then remove everything.
  for (int i = 0; i < 20; ++i) {
    std::lock_guard<std::mutex> lk(s.mu);
    bool pending = false;
    for (auto& j : s.finished) pending |= !j->client_gone();
    if (!pending) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  {
    std::lock_guard<std::mutex> lk(s.mu);
    for (auto& j : s.finished) j->release();
    s.finished.clear();
  }
  atom(c->prefix.magic).store(0);
  s.control.unlink();
  // Unlink the lock while holding it; a daemon starting now re-checks which object it locked.
  shm::remove(shm::lock_name(s.cfg.instance));
  log_info("stopped; shared memory removed");
}

}  // namespace qwen::server
