// Declarations shared by the thin libgimp layer of the plug-in (plugin/gimp/*.cpp).
#pragma once

#include <libgimp/gimp.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "config.h"
#include "geometry.h"
#include "qwen_image/client.h"

namespace qwen::plugin {

enum class Proc { Generate, EditSelection, EditLayer };

inline constexpr const char* kProcGenerate = "plug-in-qwen-image-generate";
inline constexpr const char* kProcEditSelection = "plug-in-qwen-image-edit-selection";
inline constexpr const char* kProcEditLayer = "plug-in-qwen-image-edit-layer";
inline constexpr const char* kBinary = "qwen-image-gimp";

// Values of one run. Plain data so that gimp_set_data()/gimp_get_data() can store it per
// procedure (last values).
struct Settings {
  char prompt[4096] = "";
  char negative[2048] = "";
  gint32 steps = 30;
  gdouble true_cfg_scale = 4.0;
  gint32 seed = -1;  // -1 = random
  gdouble strength = 0.9;
  char model[512] = "";  // "" = the daemon's default
  gint32 variants = 1;
  gboolean random_seed = TRUE;
};

// An error whose message is ready for the user (already worded by user_message()).
struct UserError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- daemon.cpp
// What the dialog shows about the daemon before anything is started.
struct DaemonInfo {
  bool running = false;
  std::string device;
  std::vector<std::string> models;  // default first
};
DaemonInfo probe_daemon(const PluginConfig& config);
// Connects to the configured instance, starting the daemon first when none answers (and saying so
// in GIMP's message area). Throws UserError.
qwen::ipc::Client connect_or_start(const PluginConfig& config);
// Runs one job with a progress bar covering [done, done + share) of the whole run. Throws
// UserError.
std::vector<qwen::ipc::Image> run_job(qwen::ipc::Client& client, const qwen::ipc::JobRequest& req,
                                      const PluginConfig& config, double done, double share);
// ClientError -> worded UserError.
UserError to_user_error(const qwen::ipc::ClientError& e, const PluginConfig& config);

// ---- dialog.cpp
// Shows the dialog for `proc`; returns false when the user cancels.
bool run_dialog(Proc proc, Settings& settings, const DaemonInfo& daemon,
                const PluginConfig& config);

// ---- pixels.cpp (GEGL I/O)
// Pixels of `drawable` in drawable-local coordinates `r`, as R'G'B'A u8 (gray is expanded).
Pixels read_drawable(gint32 drawable, const Rect& r);
// The selection channel's values (0..255) over image-coordinates rect `r` (0 outside the canvas).
Pixels read_selection(gint32 image, const Rect& r);
// Adds a new layer of the image's base type above `anchor` (in the same group) at image
// coordinates `r`, filled with RGBA `pixels`; with `mask` (1 channel, same size) it gets a layer
// mask. Returns the layer id.
gint32 add_result_layer(gint32 image, gint32 anchor, const std::string& name, const Rect& r,
                        const Pixels& pixels, const Pixels* mask);
// Pixels of a job result (any 8-bit format) as RGB.
Pixels to_rgb(const qwen::ipc::Image& img);

// ---- jobs.cpp
// Runs procedure `proc` on (image, drawable) with `s`; returns the new layers. Throws UserError.
std::vector<gint32> run_procedure(Proc proc, gint32 image, gint32 drawable, const Settings& s,
                                  const PluginConfig& config);

}  // namespace qwen::plugin
