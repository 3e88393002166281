#include "server/job.h"

#include <cstring>
#include <new>

#include "io/checkpoint.h"
#include "plan/memory_plan.h"
#include "plan/model_sizes.h"
#include "qwen_image/pixels.h"
#include "server/log.h"
#include "server/lora_resolve.h"
#include "server/model_caps.h"

namespace qwen::server {

using namespace ipc::proto;
using ipc::PixelFormat;
using ipc::shm::atom;
namespace shm = ipc::shm;

void Job::release() {
  if (!result_name.empty()) shm::remove(result_name);
  result_name.clear();
  seg.unlink();
}

void publish(Job& j) {
  atom(j.h()->seq).fetch_add(1, std::memory_order_release);
  shm::futex_wake(&j.h()->seq);
}

void finish(Job& j, JobState state, ErrorKind kind, const std::string& msg) {
  JobHeader* h = j.h();
  const size_t n = std::min(msg.size(), kErrorBytes - 1);
  std::memcpy(h->error, msg.data(), n);
  h->error[n] = '\0';
  h->error_kind = uint32_t(kind);
  atom(h->queue_position).store(0);
  atom(h->state).store(uint32_t(state), std::memory_order_release);
  publish(j);
}

namespace {
std::string gib(int64_t b) { return plan::format_gib(b); }
DeviceMemoryProbe& device_memory_probe_slot() {
  static DeviceMemoryProbe probe;
  return probe;
}
}  // namespace

void Models::init(const DaemonConfig& cfg, EngineFactory factory) {
  cfg_ = cfg;
  factory_ = std::move(factory);
  for (const auto& m : cfg.models)
    entries_.push_back(Entry{m, nullptr, "configured", 0, {}, {}, false});
  if (entries_.empty() && cfg.fake_engine)
    entries_.push_back(Entry{ModelSpec{"fake", "(fake engine)", {}, {}, {}, {}}, nullptr, "configured", 0, {}, {}, false});
  device_bytes_.reset();
  if (cfg.vram > 0)
    device_bytes_ = cfg.vram;
  else if (cfg.max_resident_models == DaemonConfig::kAutoResident && device_memory_probe_slot() &&
           !cfg.fake_engine)
    device_bytes_ = device_memory_probe_slot()(cfg.device);
}

void set_device_memory_probe(DeviceMemoryProbe probe) {
  device_memory_probe_slot() = std::move(probe);
}

std::optional<int64_t> predicted_peak_bytes(const ModelSpec& spec, const DaemonConfig& cfg,
                                            int64_t device_bytes) {
  try {
    io::ModelSources sources;
    sources.folder = spec.dir;
    sources.transformer = spec.transformer;
    sources.text_encoder = spec.text_encoder;
    sources.vae = spec.vae;
    sources.model_type = spec.model_type;
    const auto folder = io::ModelFolder::open(sources);
    // The engine's dtype: float32 when asked for, and by default on the CPU; else bfloat16.
    const bool f32 = cfg.dtype == "float32" || cfg.dtype == "fp32" ||
                     (cfg.dtype.empty() && cfg.device.rfind("cpu", 0) == 0);
    const auto sizes =
        plan::model_sizes(folder, f32 ? 4 : 2, io::parse_quantize_mode(cfg.quantize));
    // The job the engine plans the model for (pipelines/placement.cpp plan_engine_memory).
    const plan::JobShape job = plan::planned_job(folder, sizes);
    const std::string mode = cfg.memory.empty() ? "auto" : cfg.memory;
    return plan::plan_memory(sizes, job, device_bytes, mode).peak;
  } catch (const std::exception&) {
    return std::nullopt;  // a model the planner cannot size: its load reports what is wrong
  }
}

std::optional<int64_t> Models::peak_of(Entry& e) {
  if (!e.peak_known && device_bytes_) {
    e.peak = predicted_peak_bytes(e.spec, cfg_, *device_bytes_);
    e.peak_known = true;
  }
  return e.peak;
}

std::string Models::make_room_for(int index, std::mutex& mu) {
  Entry& e = entries_[size_t(index)];
  const auto need = device_bytes_ ? peak_of(e) : std::nullopt;
  if (!need) return {};  // the device memory or the model's size is unknown: no limit
  // Two models resident share one CUDA context and run one job at a time, but each keeps its
  // weights: the sum of their predicted peaks, the reserve (context, workspaces) counted once,
  // must stay 3 % under the device memory like one plan (plan/memory_plan.h).
  const int64_t budget = *device_bytes_ / 100 * 97;
  for (;;) {
    int64_t together = *need;
    std::string with;
    int lru = -1;
    for (size_t i = 0; i < entries_.size(); ++i) {
      if (int(i) == index || !entries_[i].engine) continue;
      const auto p = peak_of(entries_[i]);
      if (!p) continue;
      together += *p - plan::kDeviceReserve;
      with += (with.empty() ? "" : ", ") + entries_[i].spec.name + " (" + gib(*p) + ")";
      if (lru < 0 || entries_[i].last_used < entries_[size_t(lru)].last_used) lru = int(i);
    }
    if (lru < 0) return {};  // alone (or next to models of unknown size)
    const std::string sizes = e.spec.name + " (" + gib(*need) + ") and " + with + ": " +
                              gib(together) + " of " + gib(*device_bytes_) + " device memory";
    if (together <= budget) {
      log_info("model " + e.spec.name + " fits next to the loaded model(s): predicted peaks " +
               sizes + " (max_resident_models = auto)");
      return "resident together with " + with + " (predicted " + gib(together) + " of " +
             gib(*device_bytes_) + ")";
    }
    const std::string victim = entries_[size_t(lru)].spec.name;
    std::unique_ptr<Engine> old;
    {
      std::lock_guard<std::mutex> lk(mu);
      old = std::move(entries_[size_t(lru)].engine);
      entries_[size_t(lru)].state = "unloaded: does not fit next to " + e.spec.name +
                                    " (predicted peaks " + sizes + ")";
    }
    old.reset();  // freed before the next check / the load
    log_info("unloaded model " + victim + ": it does not fit next to " + e.spec.name +
             " (predicted peaks " + sizes + "; max_resident_models = auto)");
  }
}

int Models::find(const std::string& name, std::string* known) const {
  if (name.empty()) return entries_.empty() ? -1 : 0;
  for (size_t i = 0; i < entries_.size(); ++i)
    if (entries_[i].spec.name == name || entries_[i].spec.dir == name) return int(i);
  known->clear();
  for (const auto& e : entries_) *known += (known->empty() ? "" : ", ") + e.spec.name;
  return -1;
}

std::vector<ModelEntry> Models::entries() const {
  std::vector<ModelEntry> out;
  for (size_t i = 0; i < entries_.size(); ++i)
    out.push_back({entries_[i].spec.name, entries_[i].state, entries_[i].spec.dir, caps(int(i))});
  return out;
}

std::string Models::describe() const {
  std::string s;
  for (const auto& e : entries_) s += e.spec.name + "\t" + e.state + "\t" + e.spec.dir + "\n";
  return s;
}

ipc::ModelCaps Models::caps(int index) const {
  const Entry& e = entries_[size_t(index)];
  return e.engine ? caps_of(e.engine->info()) : caps_before_load(e.spec);
}

int64_t Models::resident_bytes() const {
  int64_t b = 0;
  for (const auto& e : entries_)
    if (e.engine) b += e.engine->info().bytes;
  return b;
}

std::string Models::loaded_device() const {
  for (const auto& e : entries_)
    if (e.engine) return e.engine->info().device + " " + e.engine->info().dtype;
  return {};
}

Engine* Models::get(int index, std::mutex& mu, std::string* error, const LoadingFn& loading) {
  Entry& e = entries_[size_t(index)];
  {
    std::lock_guard<std::mutex> lk(mu);
    e.last_used = ++clock_;
    if (e.engine) return e.engine.get();
    // A load that failed (does not fit, broken files) fails again the same way: every job would
    // retry it, holding the worker and the device memory for nothing.
    if (!e.error.empty()) {
      *error = e.error + " (not retried; fix the configuration and restart qwen-imaged)";
      return nullptr;
    }
  }
  std::string residency;
  if (cfg_.max_resident_models == DaemonConfig::kAutoResident) residency = make_room_for(index, mu);
  if (cfg_.max_resident_models > 0) {
    for (;;) {
      int loaded = 0, lru = -1;
      for (size_t i = 0; i < entries_.size(); ++i)
        if (entries_[i].engine) {
          ++loaded;
          if (lru < 0 || entries_[i].last_used < entries_[size_t(lru)].last_used) lru = int(i);
        }
      if (loaded < cfg_.max_resident_models || lru < 0) break;
      std::unique_ptr<Engine> old;
      {
        std::lock_guard<std::mutex> lk(mu);
        old = std::move(entries_[size_t(lru)].engine);
        entries_[size_t(lru)].state = "unloaded";
      }
      log_info("unloaded model " + entries_[size_t(lru)].spec.name + " (max_resident_models)");
    }
  }
  {
    std::lock_guard<std::mutex> lk(mu);
    e.state = "loading";
  }
  log_info("loading model " + e.spec.name + " from " +
           (e.spec.dir.empty() ? e.spec.transformer : e.spec.dir) +
           (!e.spec.dir.empty() && !e.spec.transformer.empty() ? " (transformer " + e.spec.transformer + ")" : ""));
  EngineOptions o;
  o.model_dir = e.spec.dir;
  o.transformer_file = e.spec.transformer;
  o.text_encoder_file = e.spec.text_encoder;
  o.vae_file = e.spec.vae;
  o.model_type = e.spec.model_type;
  o.device = cfg_.device;
  o.dtype = cfg_.dtype;
  o.threads = cfg_.threads;
  o.vision_processor = cfg_.vision_processor;
  o.sdpa_backend = cfg_.attention;
  o.memory = cfg_.memory;
  o.quantize = cfg_.quantize;
  o.lora_mode = cfg_.lora_mode;
  o.fp8_matmul = cfg_.fp8_matmul;
  o.preview = cfg_.preview_every > 0;
  o.preview_every = cfg_.preview_every;  // the engine then builds only the previews published below
  const std::string name = e.spec.name;
  o.log = [name](const std::string& m) { log_info("model " + name + ": " + m); };  // load rates
  // The job's "loading model" phase: each component as the engine starts loading it. The slot is
  // emptied once the factory returns, so the engine's copy of on_load never reaches the job later.
  auto slot = std::make_shared<LoadingFn>(loading);
  struct ClearSlot {
    std::shared_ptr<LoadingFn> s;
    ~ClearSlot() { *s = nullptr; }
  } clear_slot{slot};
  if (loading) {
    loading(0.0f, "loading model " + name);
    o.on_load = [slot](const std::string& component, int i, int n) {
      if (*slot)
        (*slot)(n > 0 ? float(i - 1) / float(n) : -1.0f,
                "loading " + component + " (" + std::to_string(i) + "/" + std::to_string(n) + ")");
    };
  }
  try {
    auto eng = factory_(o);
    if (!eng) throw EngineError("the engine factory returned nothing");
    std::lock_guard<std::mutex> lk(mu);
    e.engine = std::move(eng);
    e.state = "loaded";
    // `status` shows the memory plan with the state (issue #13).
    if (!e.engine->info().memory.empty()) e.state += ", " + e.engine->info().memory;
    if (!residency.empty()) e.state += "; " + residency;
    log_info("model " + e.spec.name + " loaded (" + e.engine->info().device + ", " +
             e.engine->info().dtype + ")");
    return e.engine.get();
  } catch (const std::exception& ex) {
    *error = "cannot load model " + e.spec.name + " from " + e.spec.dir + ": " + ex.what();
    std::lock_guard<std::mutex> lk(mu);
    e.state = "failed";
    e.error = *error;  // what it held is freed (Engine::open returns the cached blocks too)
    return nullptr;
  }
}

namespace {

ImageU8 read_image(const Job& j, const ImageDesc& d) {
  ImageU8 img;
  img.width = d.width;
  img.height = d.height;
  img.channels =
      ipc::channels(PixelFormat(d.format)) == 1 ? 1 : ipc::channels(PixelFormat(d.format));
  img.pixels.resize(img.size_bytes());
  ipc::pixels::to_u8(static_cast<const uint8_t*>(j.seg.data()), d, img.channels, img.pixels.data());
  return img;
}

// The result segment's format is shared/'s (proto::plan_result / write_result, read by the
// client's read_result).
void write_results(Job& j, const std::vector<ImageU8>& images, const DaemonConfig& cfg) {
  std::vector<ResultPixels> px;
  for (const ImageU8& im : images) {
    if (im.empty() || im.pixels.size() != im.size_bytes())
      throw EngineError("the engine returned a malformed image");
    px.push_back({im.width, im.height, im.channels, im.pixels.data()});
  }
  ResultHeader rh;
  try {
    rh = plan_result(px, j.req.result_format);
  } catch (const std::invalid_argument& e) {
    throw EngineError(e.what());
  }
  const size_t size = rh.prefix.segment_size;
  const std::string name = shm::result_name(cfg.instance, j.req.client_pid, j.req.job_id);
  shm::remove(name);
  shm::Segment res = shm::Segment::create(name, size);
  j.result_name = name;
  write_result(rh, px, res.data());
  atom(j.h()->num_results).store(rh.count);
  j.h()->result_size = size;
}

}  // namespace

void run_job(Job& j, Models& models, std::mutex& mu, const DaemonConfig& cfg,
             const std::atomic<bool>& stop) {
  JobHeader* h = j.h();
  const std::string tag = "job " + std::to_string(j.req.job_id);
  if (atom(h->cancel).load() || j.client_gone()) {
    log_info(tag + ": client cancelled or gone before it started");
    finish(j, JobState::Cancelled, ErrorKind::Cancelled, "job cancelled");
    return;
  }
  // The job's phase (protocol version 4 segments only; older headers end before it): set before
  // the job shows as running, so a client never sees a running job still "queued".
  const bool phases = j.req.version >= 4;
  if (phases) {
    bool loaded;
    {
      std::lock_guard<std::mutex> lk(mu);
      loaded = models.loaded(j.model);
    }
    if (loaded)
      set_phase(j.seg.data(), ipc::JobPhase::EncodingPrompt);
    else
      set_phase(j.seg.data(), ipc::JobPhase::LoadingModel, 0.0f,
                "loading model " + models.name(j.model));
  }
  atom(h->step).store(0);
  atom(h->total).store(j.req.steps);
  atom(h->queue_position).store(0);
  atom(h->state).store(uint32_t(JobState::Running), std::memory_order_release);
  publish(j);
  bool client_died = false;
  auto phase = [&](ipc::JobPhase ph, float fraction = -1.0f, const std::string& detail = "") {
    if (!phases) return;
    set_phase(j.seg.data(), ph, fraction, detail);
    publish(j);
  };
  try {
    std::string err;
    Engine* engine = models.get(j.model, mu, &err, [&](float fraction, const std::string& d) {
      phase(ipc::JobPhase::LoadingModel, fraction, d);
    });
    if (!engine) {
      log_error(err);
      finish(j, JobState::Failed, ErrorKind::JobFailed, err);
      return;
    }
    RunParams p;
    if (j.req.pipeline == "edit-auto")
      p.pipeline = edit_pipeline_for(engine->info().default_pipeline, j.req.images.size());
    else
      p.pipeline = *pipeline_from_string(j.req.pipeline);
    p.prompts = j.req.prompts;
    p.negative_prompts = j.req.negative_prompts;
    p.width = j.req.width;
    p.height = j.req.height;
    // Steps 0 and an unset CFG / shift (protocol version 5) leave them to the engine, which applies
    // the model's defaults or a Lightning LoRA's (QwenEngine::run), as for the CLI in-process.
    p.steps = j.req.steps;
    p.true_cfg_scale = j.req.true_cfg_scale;
    p.seed = j.req.seed;
    p.num_images_per_prompt = j.req.num_images_per_prompt;
    p.strength = j.req.strength;
    p.geometry = j.req.exact_geometry ? GeometryMode::Exact : GeometryMode::Reference;
    p.max_sequence_length = j.req.max_sequence_length;
    for (const auto& d : j.req.images) p.images.push_back(read_image(j, d));
    if (j.req.mask) p.mask = read_image(j, *j.req.mask);
    for (const auto& l : j.req.loras) {
      std::string file;
      const std::string e = resolve_job_lora(l.name, cfg.lora_dirs, j.req.client_pid, &file);
      if (!e.empty()) {
        log_error(tag + ": " + e);
        finish(j, JobState::Failed, ErrorKind::JobFailed, e);
        return;
      }
      p.loras.push_back({file, double(l.strength)});
    }
    if (j.req.shift) p.shift = double(*j.req.shift);
    p.lightning = j.req.lightning;
    // Decompose (Qwen-Image-Layered, issue #16): ranges checked by validate_job.
    p.layers = j.req.layers;
    p.resolution = j.req.resolution;
    p.cfg_normalize = j.req.cfg_normalize;
    // Qwen-Image-2.1 (protocol version 4): 0 keeps the engine's default output_resolution.
    p.kv_cache = j.req.kv_cache;
    if (j.req.output_resolution != 0) p.output_resolution = j.req.output_resolution;
    // Now that the model is loaded its capabilities are exact (accept() could only infer them).
    if (const std::string e = check_pipeline(caps_of(engine->info()), to_string(p.pipeline),
                                             j.req.model.empty() ? "(default)" : j.req.model);
        !e.empty()) {
      log_error(tag + ": " + e);
      finish(j, JobState::Failed, ErrorKind::JobFailed, e);
      return;
    }

    // The engine encodes the prompts first, reports every denoising step, then decodes.
    phase(ipc::JobPhase::EncodingPrompt);
    int last_preview = -1000000;
    auto progress = [&](const ProgressInfo& info) {
      // A job leaving its steps to the model learns them here: max_steps holds for them too.
      if (info.total > cfg.limits.max_steps)
        throw EngineError("the model's default of " + std::to_string(info.total) +
                          " steps is more than this daemon's max_steps (" +
                          std::to_string(cfg.limits.max_steps) + "): give the job a step count");
      atom(h->step).store(info.step);
      atom(h->total).store(info.total);
      if (phases) {
        const auto now =
            info.step >= info.total ? ipc::JobPhase::Decoding : ipc::JobPhase::Denoising;
        if (atom(h->phase).load() != uint32_t(now)) set_phase(j.seg.data(), now);
      }
      if (!info.preview.empty() && info.preview.channels == 3 && h->preview_size > 0 &&
          cfg.preview_every > 0 &&
          (info.step - last_preview >= cfg.preview_every || info.step == info.total)) {
        publish_preview(j.seg.data(), info.preview.pixels.data(), info.preview.width,
                        info.preview.height);
        last_preview = info.step;
      }
      publish(j);
      if (j.client_gone()) client_died = true;
      return !(stop.load() || client_died || atom(h->cancel).load() != 0);
    };
    auto images = engine->run(p, progress);
    write_results(j, images, cfg);
    finish(j, JobState::Done, ErrorKind::None, "");
    log_info(tag + ": done, " + std::to_string(images.size()) + " image(s)");
  } catch (const CancelledError&) {
    const std::string why = stop.load()   ? "qwen-imaged is shutting down"
                            : client_died ? "the client went away"
                                          : "job cancelled";
    log_info(tag + ": cancelled (" + why + ")");
    finish(j, JobState::Cancelled, stop.load() ? ErrorKind::ShuttingDown : ErrorKind::Cancelled,
           why);
  } catch (const std::bad_alloc&) {
    log_error(tag + ": out of memory");
    finish(j, JobState::Failed, ErrorKind::JobFailed, "out of memory");
  } catch (const std::exception& e) {
    log_error(tag + ": " + e.what());
    finish(j, JobState::Failed, ErrorKind::JobFailed, e.what());
  }
}

}  // namespace qwen::server
