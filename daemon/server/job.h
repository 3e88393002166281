// One job as the daemon holds it, the resident models, and running a job on an engine.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "pipelines/engine.h"
#include "qwen_image/protocol.h"
#include "qwen_image/shm.h"
#include "server/config.h"

namespace qwen::server {

using EngineFactory = std::function<std::unique_ptr<Engine>(const EngineOptions&)>;

// Issue #13, two models: the device memory the daemon plans residency with when daemon.conf has
// no `vram` (qwen-imaged asks the device; nullopt: unknown, e.g. the CPU). Set before Models::init.
using DeviceMemoryProbe = std::function<std::optional<int64_t>(const std::string& device)>;
void set_device_memory_probe(DeviceMemoryProbe probe);
// The planner's predicted peak device bytes of `spec` under `cfg`'s memory mode on a device of
// `device_bytes` (the job the engine plans for: 1328x1328 with CFG, one condition image for edit
// models, 4 layers at 640 for Layered, 1024x1024 for Qwen-Image-2.1), from the weight files'
// headers; nullopt when they cannot be read.
std::optional<int64_t> predicted_peak_bytes(const ModelSpec& spec, const DaemonConfig& cfg,
                                            int64_t device_bytes);

// The daemon keeps the client's segment mapped (so its memory stays valid) until the client has
// released its lock on it: it finished reading the result, cancelled, or died.
struct Job {
  ipc::shm::Segment seg;
  std::string name;
  ipc::proto::Request req;
  int model = -1;
  std::string result_name;  // set once a result segment exists

  ipc::proto::JobHeader* h() const { return static_cast<ipc::proto::JobHeader*>(seg.data()); }
  bool client_gone() const { return ipc::shm::unlocked(seg.fd()); }
  void release();  // removes the result and job names
};
using JobPtr = std::shared_ptr<Job>;

// Bumps the job's futex word and wakes the client.
void publish(Job& j);
// Stores a final state with its message.
void finish(Job& j, ipc::proto::JobState state, ipc::proto::ErrorKind kind, const std::string& msg);

// The configured models; engines load once (at start or on first use) and stay resident, except
// that with max_resident_models the least recently used one is unloaded to make room.
class Models {
 public:
  void init(const DaemonConfig& cfg, EngineFactory factory);
  size_t size() const { return entries_.size(); }
  // Index of the model a request names ("" = the default, else its name or folder); -1 when
  // unknown, with the served names in *known. Caller holds the mutex.
  int find(const std::string& name, std::string* known) const;
  // Name, state, folder and capabilities of every model, for the status block. Caller holds the
  // mutex.
  std::vector<ipc::proto::ModelEntry> entries() const;
  std::string describe() const;  // "name<TAB>state<TAB>dir" lines; caller holds the mutex
  // What model `index` can do: from its engine once loaded, else inferred (model_caps.h). Caller
  // holds the mutex.
  ipc::ModelCaps caps(int index) const;
  const std::string& name(int index) const { return entries_[size_t(index)].spec.name; }
  // Whether model `index` is loaded now. Caller holds the mutex.
  bool loaded(int index) const { return entries_[size_t(index)].engine != nullptr; }
  int64_t resident_bytes() const;
  // "device dtype" of the first loaded engine, or "" when none is loaded. Caller holds the mutex.
  std::string loaded_device() const;
  // Loads if needed (worker thread only). nullptr with *error when the model cannot load.
  // `loading` (optional) hears about a load as it happens: (share of the components loaded,
  // "loading transformer (1/3)"), from the engine's EngineOptions::on_load; only while get() runs.
  using LoadingFn = std::function<void(float fraction, const std::string& detail)>;
  Engine* get(int index, std::mutex& mu, std::string* error, const LoadingFn& loading = {});

 private:
  struct Entry {
    ModelSpec spec;
    std::unique_ptr<Engine> engine;
    std::string state = "configured";
    int64_t last_used = 0;
    std::string error;  // why the last load failed: not retried on every job (issue #13)
    std::optional<int64_t> peak;  // predicted peak (max_resident_models = auto)
    bool peak_known = false;      // peak computed (it may still be nullopt: unknown)
  };
  // max_resident_models = auto: unloads the least recently used models until `index`'s predicted
  // peak fits the device next to the ones still loaded; says why in the log and `status`.
  // Returns the note for the loaded model's state ("resident together with ..."), or "".
  std::string make_room_for(int index, std::mutex& mu);
  std::optional<int64_t> peak_of(Entry& e);
  std::optional<int64_t> device_bytes_;  // cfg.vram, else the probe's answer at init
  std::vector<Entry> entries_;
  EngineFactory factory_;
  DaemonConfig cfg_;
  int64_t clock_ = 0;
};

// Runs a job to its final state (Done, Failed or Cancelled); never throws.
void run_job(Job& j, Models& models, std::mutex& mu, const DaemonConfig& cfg,
             const std::atomic<bool>& stop);

}  // namespace qwen::server
