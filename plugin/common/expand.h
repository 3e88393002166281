// Expand Canvas with Prompt (issue #17), the GIMP-free parts of plugin/common/expand.cpp: the
// geometry of an expansion, which model and pipeline fill the new area, and the picture the model
// is given. run_expand() (frontend.h) puts them together with the Host.
#pragma once

#include <string>

#include "frontend.h"

namespace qwen::plugin {

// One expansion, in the coordinates of the NEW canvas.
struct ExpandGeometry {
  Rect canvas;      // (0, 0, new width, new height)
  Rect old_canvas;  // where the old canvas lies: (left, top, old width, old height)
  Rect fill;        // bounds of the new area (the canvas outside old_canvas): the fill layer
  Rect region;      // what the model works on: `fill` plus context, clipped to the canvas
};
// `old` = the old canvas size; margins in pixels (validate_margins() first).
ExpandGeometry expand_geometry(Size old, int left, int top, int right, int bottom);

// Which model fills the new area and how: a Qwen-Image-2.1 model (RGBA, no mask pipeline) edits
// the expanded picture ("edit"), an edit model repaints the new area ("edit-inpaint"), a
// text-to-image model inpaints it ("inpaint"). `named` "" = the daemon's default when it can,
// else its first model that can. Throws UserError (a Layered model, no suitable model).
struct ExpandModel {
  std::string name;      // "" only when the daemon lists no model (the daemon decides)
  std::string pipeline;  // "edit", "edit-inpaint" or "inpaint"
  bool rgba = false;     // Qwen-Image-2.1: RGBA in and out
};
ExpandModel choose_expand_model(const qwen::ipc::DaemonStatus& st, const std::string& named);

// The picture the model gets for `region`: `layer` = the active layer's R'G'B'A pixels over the
// region (transparent where the layer is not); `inside` = the old canvas in region-local
// coordinates. Inside, the layer (composited over white unless `rgba`); outside, each pixel is
// the nearest inside pixel's colour (the edge stretched outwards, what the 20B inpaint starts
// from), opaque for RGB and fully transparent when `rgba` (Qwen-Image-2.1 sees what is missing).
Pixels expand_input(const Pixels& layer, const Rect& inside, bool rgba);
// 255 outside `inside` (the new area), 0 inside, at `size`.
Pixels new_area_mask(Size size, const Rect& inside);

}  // namespace qwen::plugin
