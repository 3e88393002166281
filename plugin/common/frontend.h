// The part of the plug-in shared by the GIMP 2.10 (plugin/gimp/) and GIMP 3 (plugin/gimp3/)
// front-ends: which pixels go to the daemon, talking to it (start on demand, progress, errors) and
// how the results come back as layers. GIMP itself is reached only through `Host`, which each
// front-end implements with its own libgimp (items are GIMP's integer ids in both versions).
#pragma once

#include <glib.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "config.h"
#include "geometry.h"
#include "qwen_image/client.h"

namespace qwen::plugin {

enum class Proc { Generate, EditSelection, EditLayer, Decompose, ExpandCanvas };

inline constexpr const char* kProcGenerate = "plug-in-qwen-image-generate";
inline constexpr const char* kProcEditSelection = "plug-in-qwen-image-edit-selection";
inline constexpr const char* kProcEditLayer = "plug-in-qwen-image-edit-layer";
inline constexpr const char* kProcDecompose = "plug-in-qwen-image-decompose";  // procedures.h
inline constexpr const char* kProcExpandCanvas = "plug-in-qwen-image-expand-canvas";  // expand.cpp

// Values of one run. Plain data so that the 2.10 gimp_set_data()/gimp_get_data() can store it per
// procedure (last values); GIMP 3 keeps them in its GimpProcedureConfig.
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
  // Decompose (issue #16); appended, so older stored last values still load.
  gint32 layers = 4;
  gint32 resolution = 640;
  gboolean cfg_normalize = FALSE;
  // LoRAs (issue #14): "name:strength,other:-0.3" (names from the daemon's lora_dir, or absolute
  // paths; strength 1 when omitted) and the Lightning defaults (4/8 steps, CFG 1, shift 3).
  char loras[1024] = "";
  gboolean lightning = FALSE;
  // Reference layers (issue #17): drawable ids from any open image, sent in this order after the
  // edited picture (Edit Layer / Edit Selection; Edit-2509/2511: 3 images in all, Qwen-Image-2.1:
  // 10).
  gint32 num_references = 0;
  gint32 references[10] = {};
  // Expand Canvas with Prompt (issue #17): margins added on each side, in pixels.
  gint32 expand_left = 0;
  gint32 expand_top = 0;
  gint32 expand_right = 0;
  gint32 expand_bottom = 0;
};

// "" when `s` is acceptable, else what is wrong (for "Qwen-Image: <what>").
std::string validate(const Settings& s);

// An error whose message is ready for the user (already worded by user_message()).
struct UserError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// GIMP as the shared code sees it.
struct Host {
  virtual ~Host() = default;
  virtual void progress_init(const std::string& text) = 0;
  virtual void progress_text(const std::string& text) = 0;
  virtual void progress_update(double fraction) = 0;
  virtual void progress_pulse() = 0;
  virtual void message(const std::string& text) = 0;  // GIMP's message area / console

  virtual bool is_indexed(int image) = 0;
  // The layer a drawable stands for (a layer mask -> its layer); -1 when it is no layer.
  virtual int layer_of(int drawable) = 0;
  virtual Rect canvas(int image) = 0;         // (0, 0, width, height)
  virtual Rect layer_rect(int drawable) = 0;  // offsets + size
  virtual std::optional<Rect> selection_bounds(int image) = 0;
  // Pixels of `drawable` in drawable-local coordinates `r`, as R'G'B'A u8 (gray is expanded).
  virtual Pixels read_drawable(int drawable, const Rect& r) = 0;
  // The selection channel's values (0..255) over image-coordinates rect `r` (0 outside canvas).
  virtual Pixels read_selection(int image, const Rect& r) = 0;
  // Adds a new layer of the image's base type above `anchor` (in the same group) at image
  // coordinates `r`, filled with RGBA `pixels`; with `mask` (1 channel, same size) it gets a layer
  // mask. Returns the layer id; throws UserError.
  virtual int add_result_layer(int image, int anchor, const std::string& name, const Rect& r,
                               const Pixels& pixels, const Pixels* mask) = 0;
  // Adds an empty layer group named `name` above `anchor`, in the anchor's group (decompose).
  // Returns its id; throws UserError.
  virtual int add_layer_group(int image, int anchor, const std::string& name) = 0;
  // Adds an RGBA layer (of the image's base type) at the top of `group`, at image coordinates
  // `r`. Returns its id; throws UserError.
  virtual int add_layer_to_group(int image, int group, const std::string& name, const Rect& r,
                                 const Pixels& rgba) = 0;
  // Attaches the "qwen-image-params" parasite (persistent, undoable) to `layer`.
  virtual void attach_params(int layer, const std::string& params) = 0;
  virtual void undo_group_start(int image) = 0;
  virtual void undo_group_end(int image) = 0;
  // Expand Canvas (issue #17): GIMP's gimp_image_resize: the canvas becomes new_w x new_h and
  // every layer moves by (off_x, off_y) (channels and the selection are resized with the canvas);
  // no pixel of any layer changes. Throws UserError.
  virtual void resize_canvas(int /*image*/, int /*new_w*/, int /*new_h*/, int /*off_x*/,
                             int /*off_y*/) {
    throw UserError("Qwen-Image: this front-end cannot resize the canvas.");
  }
  // Live preview (issue #17; plugin/common/preview.h decides when). A preview layer is a
  // temporary layer kept out of the undo history: it is inserted and removed with the image's
  // undo frozen for just that call, never while the job runs. The defaults suit hosts without a
  // preview (add_preview_layer returns -1 and nothing else is called).
  // Adds a layer named `name` of the image's base type, with alpha, above `anchor` (in its group)
  // at image coordinates `r`, filled with RGBA `rgba` and carrying the non-persistent parasite
  // "qwen-image-preview" = `owner`; the selected layers stay as they were. Returns its id, or -1.
  virtual int add_preview_layer(int /*image*/, int /*anchor*/, const std::string& /*name*/,
                                const Rect& /*r*/, const Pixels& /*rgba*/,
                                const std::string& /*owner*/) {
    return -1;
  }
  // Writes RGBA `rgba` (the layer's size) into the preview layer and shows it (drawable update,
  // displays flushed). False, writing nothing, when the layer is gone or locked.
  virtual bool update_preview_layer(int /*layer*/, const Pixels& /*rgba*/) { return false; }
  // Removes the preview layer, undo frozen (nothing when it is gone), and flushes the displays.
  virtual void remove_preview_layer(int /*layer*/) {}
  // Every layer, in every open image, that carries the "qwen-image-preview" parasite: (id, value).
  virtual std::vector<std::pair<int, std::string>> preview_layers() { return {}; }
  // Reference layers (issue #17): the image holding item `item` (-1 when it is no valid item) and
  // the item's name. The defaults suit hosts with one image and unnamed items.
  virtual int image_of_item(int item) { return item > 0 ? 0 : -1; }
  virtual std::string item_name(int item) { return "item " + std::to_string(item); }
};

// ---- daemon.cpp
// What the dialog shows about the daemon before anything is started.
struct DaemonInfo {
  bool running = false;
  std::string device;
  std::vector<std::string> models;         // default first
  std::vector<qwen::ipc::ModelCaps> caps;  // per model, same order
  // The LoRAs of the daemon's lora_dir (protocol version 4; older daemons list none).
  int protocol_version = 0;
  std::vector<qwen::ipc::LoraInfo> loras;
};
DaemonInfo probe_daemon(const PluginConfig& config);
// Connects to the configured instance, starting the daemon first when none answers (and saying so
// in GIMP's message area). Throws UserError.
qwen::ipc::Client connect_or_start(Host& host, const PluginConfig& config);
class LivePreview;  // preview.h
// Runs one job with a progress bar covering [done, done + share) of the whole run; the daemon's
// phase (queued, loading the model, step k of n) in its text, pulsing while nothing is measurable;
// each published step preview shown by `preview` when given (issue #17). Throws UserError.
std::vector<qwen::ipc::Image> run_job(Host& host, qwen::ipc::Client& client,
                                      const qwen::ipc::JobRequest& req, const PluginConfig& config,
                                      double done, double share,
                                      LivePreview* preview = nullptr);
// ClientError -> worded UserError.
UserError to_user_error(const qwen::ipc::ClientError& e, const PluginConfig& config);
// Pixels of a job result (any 8-bit format) as RGB.
Pixels to_rgb(const qwen::ipc::Image& img);
// Pixels of a job result (any 8-bit format) as RGBA (alpha 255 where the result has none):
// Qwen-Image-2.1 results keep their transparency (issue #15).
Pixels to_rgba(const qwen::ipc::Image& img);

// ---- decompose.cpp
// Decompose into Layers (issue #16): returns {group, layers bottom to top}. Throws UserError.
std::vector<int> run_decompose(Host& host, int image, int drawable, const Settings& s,
                               const PluginConfig& config);

// ---- expand.cpp
// Expand Canvas with Prompt (issue #17): grows the canvas by the Settings' margins and fills only
// the new area, as a new layer masked to it; every existing pixel stays as it was. Returns {the
// fill layer}. Throws UserError (before the canvas changes, or after restoring it).
std::vector<int> run_expand(Host& host, int image, int drawable, const Settings& s,
                            const PluginConfig& config);
// "" when the margins are acceptable (each 0..kMaxExpandMargin, at least one > 0), else why.
inline constexpr int kMaxExpandMargin = 4096;
std::string validate_margins(const Settings& s);

// ---- jobs.cpp
// The masked repaint Edit Selection sends (and Expand Canvas with a 20B model): `input` (RGB) and
// `mask` (1 channel, > 0 = repaint) at the region's size, resized to the model size; sets the
// pipeline ("edit-inpaint" with an edit model, else "inpaint"), image and mask of `req`, which
// point into `keep` (alive until the job is sent).
struct MaskedRepaint {
  Pixels image, mask;
};
void set_masked_repaint(qwen::ipc::JobRequest& req, const Pixels& input, const Pixels& mask,
                        Size model, bool edit_model, MaskedRepaint& keep);

// ---- jobs.cpp
// Runs procedure `proc` on (image, drawable) with `s`; returns the new layers (Decompose: the
// group first, then its layers bottom to top). Throws UserError.
std::vector<int> run_procedure(Host& host, Proc proc, int image, int drawable, const Settings& s,
                               const PluginConfig& config);

}  // namespace qwen::plugin
