// Declarations of the thin libgimp 3 (3.0, 3.2) layer of the plug-in (plugin/gimp3/*.cpp). The work
// itself is in plugin/common/, shared with the GIMP 2.10 front-end (plugin/gimp/).
#pragma once

#include <libgimp/gimp.h>

#include "frontend.h"

// Any GIMP 3.x (built and tested on 3.0.4 and 3.2.6): libgimp's API and ABI stay "3.0" across
// 3.x, GimpRunImageFunc included (a NULL-terminated drawables array). The 2.99 previews differ.
#if !GIMP_CHECK_VERSION(3, 0, 0) || GIMP_CHECK_VERSION(4, 0, 0)
#error "plugin/gimp3 is written against libgimp 3.x (3.0 or later)"
#endif

namespace qwen::plugin {

inline constexpr const char* kBinary3 = "qwen-image-gimp3";

// ---- host.cpp: Host on libgimp 3.0.
struct Gimp3Host : Host {
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
  // Live preview layer (issue #17): preview_host.cpp.
  int add_preview_layer(int image, int anchor, const std::string& name, const Rect& r,
                        const Pixels& rgba, const std::string& owner) override;
  bool update_preview_layer(int layer, const Pixels& rgba) override;
  void remove_preview_layer(int layer) override;
  std::vector<std::pair<int, std::string>> preview_layers() override;
  void resize_canvas(int image, int new_w, int new_h, int off_x, int off_y) override;
  int image_of_item(int item) override;
  std::string item_name(int item) override;
};

}  // namespace qwen::plugin
