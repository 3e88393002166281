// Live preview and progress of a running job (issue #17), shared by the GIMP 2.10 and GIMP 3
// front-ends: what the progress bar says for each report of the daemon, and the temporary preview
// layer that shows the daemon's step previews where the result will go.
//
// Why a layer: both front-ends close their dialog before the job starts (GIMP's procedure dialogs
// return their values and go), so the canvas is where the user looks while GIMP's progress bar
// runs; GIMP's own long-running filters (GEGL operations with on-canvas preview) show their
// intermediate result on the canvas too. The layer sits right above the layer the result will go
// above, at the result's place and size (the small preview scaled onto it), with the selection's
// feathered mask or the edited layer's alpha as its alpha, so it looks like the result will.
//
// Why it never reaches the undo history: it is inserted and removed with the image's undo frozen
// for just those calls (pixel updates write the layer's buffer directly, which records no undo);
// the undo is never frozen while the job runs, because the user may keep editing the image and
// GIMP does not thaw an image a killed plug-in left frozen. The result layers are added after the
// preview is gone, in their own single undo group.
//
// Why it cannot stay behind: it is removed when the job ends (success, error, the daemon's
// cancel) by LivePreview's destructor. GIMP's Cancel kills the plug-in instead; then the layer,
// tagged with the non-persistent parasite "qwen-image-preview" = its owner process, is removed by
// the next run of any Qwen-Image procedure, from whichever open image holds it (a preview whose
// owner still runs, a parallel job, is left alone).
//
// QWEN_PLUGIN_TRACE=FILE (tests): one line per preview event appended to FILE, with the pixels of
// each update read back from the layer through GIMP:
//   add layer=ID image=ID rect=X,Y,W,H
//   update layer=ID step=K/N size=WxH first=R,G,B,A fnv=HEX   (FNV-1a 64 of the read-back RGBA)
//   remove layer=ID
//   stale layer=ID owner=TAG
#pragma once

#include <string>

#include "frontend.h"

namespace qwen::plugin {

// What GIMP's progress bar shows for one report of the daemon.
struct ProgressView {
  std::string text;
  double fraction = -1;  // of this job, 0..1; < 0: nothing measurable, the bar pulses
  bool operator==(const ProgressView&) const = default;
};
// `label` (e.g. "2 of 3" for variants; "" for none) is appended in parentheses.
ProgressView progress_view(const qwen::ipc::JobProgress& p, const std::string& label = "");

inline constexpr const char* kPreviewParasite = "qwen-image-preview";
inline constexpr const char* kPreviewLayerName = "Qwen-Image preview (removed when the job ends)";

// The owner tag of this process ("pid=P start=T", T = its start time from /proc), and whether the
// process a tag names still runs (false for a malformed tag, or a reused pid).
std::string preview_owner_tag();
bool preview_owner_alive(const std::string& tag);

// Removes, from every open image, the preview layers whose owner no longer runs (a plug-in killed
// by GIMP's Cancel). Returns how many. Never throws.
int remove_stale_previews(Host& host);

// The preview (RGB8, any size) resized to `size`, as RGBA with the alpha of `alpha` (1 channel, or
// the 4th of RGBA, at `size`; opaque when null or of another size).
Pixels preview_pixels(const qwen::ipc::Image& preview, Size size, const Pixels* alpha);

// FNV-1a 64 of `n` bytes (the trace's checksum).
uint64_t fnv1a64(const uint8_t* data, size_t n);

// The preview layer of one run (all its jobs: variants share it). Nothing is added to the image
// before the first preview arrives; every GIMP failure only ends the previewing, never the job.
class LivePreview {
 public:
  // `anchor`: the layer the result goes above; `rect`: the result's image coordinates; `alpha`:
  // see preview_pixels (copied). Removes stale previews first. Disabled by `preview = false`.
  LivePreview(Host& host, const PluginConfig& config, int image, int anchor, const Rect& rect,
              const Pixels* alpha);
  ~LivePreview();  // remove()
  LivePreview(const LivePreview&) = delete;
  LivePreview& operator=(const LivePreview&) = delete;

  // Shows one step preview (creating the layer the first time).
  void show(const qwen::ipc::Image& preview, int step, int total);
  // Removes the layer (before the results are added; idempotent, never throws).
  void remove() noexcept;
  int layer() const { return layer_; }
  int updates() const { return updates_; }

 private:
  void trace(const std::string& line) noexcept;

  Host& host_;
  bool enabled_;
  int image_, anchor_;
  Rect rect_;
  Pixels alpha_;  // 1 channel at rect size, or empty
  std::string trace_path_;
  int layer_ = -1;
  int updates_ = 0;
  bool stopped_ = false;  // the host has no preview, the layer is gone, or GIMP failed
};

}  // namespace qwen::plugin
