// Live preview and progress of a running job (issue #17): see preview.h for the design.
#include "preview.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

namespace qwen::plugin {

namespace ipc = qwen::ipc;

namespace {

// Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), "" when unreadable.
std::string start_time_of(const std::string& pid) {
  std::ifstream f("/proc/" + pid + "/stat");
  std::string stat;
  if (!std::getline(f, stat)) return "";
  const auto close = stat.rfind(')');  // the command name may hold spaces and parentheses
  if (close == std::string::npos) return "";
  std::istringstream rest(stat.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22; ++i)
    if (!(rest >> field)) return "";
  return field;
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

ProgressView progress_view(const ipc::JobProgress& p, const std::string& label) {
  ProgressView v;
  switch (p.phase) {
    case ipc::JobPhase::Queued:
      // queue_position counts the waiting jobs (1 = next); a running job is not among them.
      if (p.queue_position > 1)
        v.text = "Qwen-Image: queued behind " + std::to_string(p.queue_position - 1) +
                 (p.queue_position == 2 ? " waiting job" : " waiting jobs");
      else
        v.text = "Qwen-Image: queued, next in line";
      break;
    case ipc::JobPhase::LoadingModel:
      v.text = "Qwen-Image: loading the model…";
      if (p.fraction >= 0 && p.fraction <= 1) {
        v.fraction = p.fraction;
        v.text += " " + std::to_string(int(p.fraction * 100)) + " %";
      }
      if (!p.detail.empty()) v.text += " (" + p.detail + ")";
      break;
    case ipc::JobPhase::EncodingPrompt:
      v.text = "Qwen-Image: encoding the prompt…";
      break;
    case ipc::JobPhase::Decoding:
      v.text = "Qwen-Image: decoding the image…";
      break;
    case ipc::JobPhase::Denoising:
      if (p.total > 0 && p.step > 0) {
        v.text = "Qwen-Image: step " + std::to_string(p.step) + " of " + std::to_string(p.total);
        v.fraction = std::min(1.0, double(p.step) / p.total);
      } else {
        // A version-3 daemon reports step 0 while it loads the model and encodes the prompt.
        v.text = "Qwen-Image: waiting for the daemon (loading the model?)";
      }
      break;
  }
  if (!label.empty()) v.text += " (" + label + ")";
  return v;
}

std::string preview_owner_tag() {
  const std::string pid = std::to_string(::getpid());
  return "pid=" + pid + " start=" + start_time_of(pid);
}

bool preview_owner_alive(const std::string& tag) {
  std::istringstream in(tag);
  std::string pid_field, start_field;
  in >> pid_field >> start_field;
  if (pid_field.rfind("pid=", 0) != 0 || start_field.rfind("start=", 0) != 0) return false;
  const std::string pid = pid_field.substr(4), start = start_field.substr(6);
  if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) return false;
  const long n = std::strtol(pid.c_str(), nullptr, 10);
  if (n <= 0) return false;
  if (start_time_of("self").empty()) {
    // No /proc (not Linux): the pid alone.
    return ::kill(pid_t(n), 0) == 0 || errno == EPERM;
  }
  const std::string now = start_time_of(pid);
  return !now.empty() && now == start;  // gone, or the pid was reused by another process
}

int remove_stale_previews(Host& host) {
  int removed = 0;
  try {
    const char* trace = std::getenv("QWEN_PLUGIN_TRACE");
    for (const auto& [layer, owner] : host.preview_layers()) {
      if (preview_owner_alive(owner)) continue;  // a job still running (another plug-in run)
      host.remove_preview_layer(layer);
      ++removed;
      if (trace && *trace)
        std::ofstream(trace, std::ios::app)
            << "stale layer=" << layer << " owner=" << owner << "\n";
    }
  } catch (const std::exception& e) {
    g_printerr("Qwen-Image: could not remove an old preview layer: %s\n", e.what());
  }
  return removed;
}

uint64_t fnv1a64(const uint8_t* data, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= data[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

Pixels preview_pixels(const ipc::Image& preview, Size size, const Pixels* alpha) {
  Pixels rgb(preview.width, preview.height, 3);
  const int c = ipc::channels(preview.format);
  for (size_t i = 0, n = size_t(preview.width) * preview.height; i < n; ++i)
    for (int ch = 0; ch < 3; ++ch) rgb.data[i * 3 + ch] = preview.bytes[i * c + (c >= 3 ? ch : 0)];
  const Pixels scaled = resize(rgb, size.w, size.h);
  Pixels out(size.w, size.h, 4, 255);
  const bool has_alpha = alpha && alpha->width == size.w && alpha->height == size.h &&
                         (alpha->channels == 1 || alpha->channels == 4);
  for (size_t i = 0, n = size_t(size.w) * size.h; i < n; ++i) {
    for (int ch = 0; ch < 3; ++ch) out.data[i * 4 + ch] = scaled.data[i * 3 + ch];
    if (has_alpha) out.data[i * 4 + 3] = alpha->data[i * alpha->channels + alpha->channels - 1];
  }
  return out;
}

LivePreview::LivePreview(Host& host, const PluginConfig& config, int image, int anchor,
                         const Rect& rect, const Pixels* alpha)
    : host_(host),
      enabled_(config.preview && !rect.empty()),
      image_(image),
      anchor_(anchor),
      rect_(rect) {
  if (const char* t = std::getenv("QWEN_PLUGIN_TRACE"); t && *t) trace_path_ = t;
  if (!enabled_) return;
  if (alpha && alpha->width == rect.w && alpha->height == rect.h &&
      (alpha->channels == 1 || alpha->channels == 4)) {
    alpha_ = Pixels(rect.w, rect.h, 1);
    for (size_t i = 0, n = alpha_.data.size(); i < n; ++i)
      alpha_.data[i] = alpha->data[i * alpha->channels + alpha->channels - 1];
  }
  remove_stale_previews(host_);
}

LivePreview::~LivePreview() { remove(); }

void LivePreview::trace(const std::string& line) noexcept {
  if (trace_path_.empty()) return;
  try {
    std::ofstream(trace_path_, std::ios::app) << line << "\n";
  } catch (...) {
  }
}

void LivePreview::show(const ipc::Image& preview, int step, int total) {
  if (!enabled_ || stopped_ || preview.width <= 0 || preview.height <= 0 ||
      preview.bytes.size() < size_t(preview.width) * preview.height * ipc::channels(preview.format))
    return;
  try {
    const Pixels rgba =
        preview_pixels(preview, {rect_.w, rect_.h}, alpha_.data.empty() ? nullptr : &alpha_);
    if (layer_ < 0) {
      layer_ = host_.add_preview_layer(image_, anchor_, kPreviewLayerName, rect_, rgba,
                                       preview_owner_tag());
      if (layer_ < 0) {
        stopped_ = true;  // this host shows no preview
        return;
      }
      trace("add layer=" + std::to_string(layer_) + " image=" + std::to_string(image_) +
            " rect=" + std::to_string(rect_.x) + "," + std::to_string(rect_.y) + "," +
            std::to_string(rect_.w) + "," + std::to_string(rect_.h));
    } else if (!host_.update_preview_layer(layer_, rgba)) {
      // The user deleted (or locked) it, or closed the image: no more previews this run.
      stopped_ = true;
      layer_ = -1;
      return;
    }
    ++updates_;
    if (!trace_path_.empty()) {
      // What GIMP holds now, read back through it (not what was sent).
      const Pixels back = host_.read_drawable(layer_, {0, 0, rect_.w, rect_.h});
      const uint8_t* f = back.data.data();
      trace("update layer=" + std::to_string(layer_) + " step=" + std::to_string(step) + "/" +
            std::to_string(total) + " size=" + std::to_string(back.width) + "x" +
            std::to_string(back.height) + " first=" + std::to_string(f[0]) + "," +
            std::to_string(f[1]) + "," + std::to_string(f[2]) + "," + std::to_string(f[3]) +
            " fnv=" + hex64(fnv1a64(back.data.data(), back.data.size())));
    }
  } catch (const std::exception& e) {
    g_printerr("Qwen-Image: the live preview stopped: %s\n", e.what());
    stopped_ = true;
  }
}

void LivePreview::remove() noexcept {
  if (layer_ < 0) return;
  const int layer = layer_;
  layer_ = -1;
  try {
    host_.remove_preview_layer(layer);
    trace("remove layer=" + std::to_string(layer));
  } catch (const std::exception& e) {
    g_printerr("Qwen-Image: could not remove the preview layer: %s\n", e.what());
  } catch (...) {
  }
}

// ---- run_job: the job runs on a worker thread (Client::run blocks and reports only changes);
// the calling thread, the only one that talks to GIMP, applies the reports as they come and
// pulses the bar while nothing is measurable (a model load of minutes), so GIMP never looks
// frozen.
std::vector<ipc::Image> run_job(Host& host, ipc::Client& client, const ipc::JobRequest& req,
                                const PluginConfig& config, double done, double share,
                                LivePreview* preview) {
  // "2 of 3" when this job is one share of several (the variants of one run).
  std::string label;
  if (share > 0 && share < 1) {
    const int n = int(1.0 / share + 0.5), k = int(done / share + 0.5) + 1;
    if (n > 1) label = std::to_string(k) + " of " + std::to_string(n);
  }

  std::mutex mu;
  std::condition_variable cv;
  std::optional<ipc::JobProgress> latest;  // newest report (preview moved out)
  std::optional<ipc::Image> latest_preview;
  int preview_step = 0, preview_total = 0;
  bool finished = false;
  std::vector<ipc::Image> result;
  std::exception_ptr error;

  std::thread worker([&] {
    try {
      auto images = client.run(req, [&](const ipc::JobProgress& p) {
        std::lock_guard<std::mutex> lock(mu);
        latest = p;
        if (p.preview) {
          latest_preview = std::move(latest->preview);
          preview_step = p.step;
          preview_total = p.total;
        }
        latest->preview.reset();
        cv.notify_one();
        // Cancel in GIMP ends the plug-in; the daemon notices and stops the job.
        return true;
      });
      std::lock_guard<std::mutex> lock(mu);
      result = std::move(images);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu);
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mu);
    finished = true;
    cv.notify_one();
  });

  ProgressView shown{"", -2};
  ProgressView view{"Qwen-Image: waiting for the daemon…", -1};
  for (bool done_here = false; !done_here;) {
    std::optional<ipc::Image> pv;
    int pv_step = 0, pv_total = 0;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait_for(lock, std::chrono::milliseconds(150),
                  [&] { return finished || latest || latest_preview; });
      if (latest) view = progress_view(*latest, label);
      latest.reset();
      pv = std::move(latest_preview);
      latest_preview.reset();
      pv_step = preview_step;
      pv_total = preview_total;
      done_here = finished;
    }
    if (done_here) break;
    try {  // showing progress never ends the job (the worker must be joined below)
      if (view.text != shown.text) host.progress_text(view.text);
      if (view.fraction >= 0) {
        if (view.fraction != shown.fraction) host.progress_update(done + share * view.fraction);
      } else {
        host.progress_pulse();
      }
    } catch (...) {
    }
    shown = view;
    if (pv && preview) preview->show(*pv, pv_step, pv_total);
  }
  worker.join();
  if (error) {
    try {
      std::rethrow_exception(error);
    } catch (const ipc::ClientError& e) {
      throw to_user_error(e, config);
    }
  }
  return result;
}

}  // namespace qwen::plugin
