// Declarations shared by the thin libgimp 2.10 layer of the plug-in (plugin/gimp/*.cpp). The
// work itself is in plugin/common/ (shared with the GIMP 3 front-end in plugin/gimp3/).
#pragma once

#include <libgimp/gimp.h>

#include "frontend.h"

namespace qwen::plugin {

inline constexpr const char* kBinary = "qwen-image-gimp";

// ---- dialog.cpp
// Shows the dialog for `proc`; returns false when the user cancels.
bool run_dialog(Proc proc, Settings& settings, const DaemonInfo& daemon,
                const PluginConfig& config);

// ---- pixels.cpp: Host on libgimp 2.10 (GEGL I/O, progress, undo).
struct Gimp2Host : Host {
  void progress_init(const std::string& text) override;
  void progress_text(const std::string& text) override;
  void progress_update(double fraction) override;
  void progress_pulse() override;
  void message(const std::string& text) override;
  bool is_indexed(int image) override;
  int layer_of(int drawable) override;
  Rect canvas(int image) override;
  Rect layer_rect(int drawable) override;
  std::optional<Rect> selection_bounds(int image) override;
  Pixels read_drawable(int drawable, const Rect& r) override;
  Pixels read_selection(int image, const Rect& r) override;
  int add_result_layer(int image, int anchor, const std::string& name, const Rect& r,
                       const Pixels& pixels, const Pixels* mask) override;
  int add_layer_group(int image, int anchor, const std::string& name) override;
  int add_layer_to_group(int image, int group, const std::string& name, const Rect& r,
                         const Pixels& rgba) override;
  void attach_params(int layer, const std::string& params) override;
  void undo_group_start(int image) override;
  void undo_group_end(int image) override;
  void resize_canvas(int image, int new_w, int new_h, int off_x, int off_y) override;
  // Live preview layer (issue #17): preview_host.cpp.
  int add_preview_layer(int image, int anchor, const std::string& name, const Rect& r,
                        const Pixels& rgba, const std::string& owner) override;
  bool update_preview_layer(int layer, const Pixels& rgba) override;
  void remove_preview_layer(int layer) override;
  std::vector<std::pair<int, std::string>> preview_layers() override;
  int image_of_item(int item) override;
  std::string item_name(int item) override;
};

}  // namespace qwen::plugin
