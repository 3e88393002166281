// Expand Canvas with Prompt (issue #17): the canvas grows by the chosen margins and only the new
// area is filled, as a new layer above the active one whose layer mask is white over the new area
// and black over the old canvas; no existing pixel changes (the layers only move with the canvas,
// as GIMP's Image → Canvas Size does).
//
// The context is the active layer's pixels inside the old canvas (not the composite of all
// visible layers: merge them first, or run it on a flattened copy, for that). The model works on
// the new area's bounds plus context (plugin/core edit_region's padding), through the masked
// repaint Edit Selection sends (set_masked_repaint) with the new area as the mask and strength 1
// (the new area has nothing to keep); a Qwen-Image-2.1 model (no mask pipeline) edits the picture
// with the new area transparent instead, and its result is kept in the new area by the same mask.
//
// The job runs before anything changes: the canvas is resized, and the fill layer added, in one
// undo group only once the result is in, so a failing or cancelled job leaves the image exactly as
// it was; if adding the layer fails after the resize, the resize is reverted (old size, old layer
// offsets) before the error is reported.
#include "expand.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "preview.h"

namespace qwen::plugin {

namespace ipc = qwen::ipc;

namespace {

std::string short_prompt(const char* prompt) {
  gchar* head = g_utf8_substring(prompt, 0, std::min<glong>(g_utf8_strlen(prompt, -1), 60));
  std::string s = head;
  g_free(head);
  return s;
}

Rect bounds_of(const Rect& a, const Rect& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  const int x = std::min(a.x, b.x), y = std::min(a.y, b.y);
  return Rect{x, y, std::max(a.right(), b.right()) - x, std::max(a.bottom(), b.bottom()) - y};
}

// An 8-bit result as RGBA (alpha 255 where it has none).
Pixels result_rgba(const ipc::Image& img) {
  if (img.format == ipc::PixelFormat::RGBA8 &&
      img.bytes.size() == size_t(img.width) * img.height * 4) {
    Pixels p(img.width, img.height, 4);
    p.data = img.bytes;
    return p;
  }
  return opaque_rgba(to_rgb(img));
}

}  // namespace

std::string validate_margins(const Settings& s) {
  const std::pair<const char*, gint32> margins[] = {{"left", s.expand_left},
                                                    {"top", s.expand_top},
                                                    {"right", s.expand_right},
                                                    {"bottom", s.expand_bottom}};
  for (const auto& [name, v] : margins)
    if (v < 0 || v > kMaxExpandMargin)
      return std::string("the ") + name + " margin is " + std::to_string(v) +
             " px; each margin must be between 0 and " + std::to_string(kMaxExpandMargin) + " px";
  if (s.expand_left == 0 && s.expand_top == 0 && s.expand_right == 0 && s.expand_bottom == 0)
    return "all four margins are 0; give at least one side a margin (in pixels) to expand by";
  return "";
}

ExpandGeometry expand_geometry(Size old, int left, int top, int right, int bottom) {
  ExpandGeometry g;
  g.canvas = Rect{0, 0, old.w + left + right, old.h + top + bottom};
  g.old_canvas = Rect{left, top, old.w, old.h};
  // The four strips of the new area (top and bottom span the whole width).
  const Rect strips[] = {Rect{0, 0, g.canvas.w, top}, Rect{0, top + old.h, g.canvas.w, bottom},
                         Rect{0, top, left, old.h}, Rect{left + old.w, top, right, old.h}};
  for (const Rect& s : strips)
    if (!s.empty()) g.fill = bounds_of(g.fill, s);
  // Context around the new area as for a selection (a quarter of its larger side, at least 32 px).
  g.region = pad_within(g.fill, context_padding(g.fill), g.canvas);
  return g;
}

ExpandModel choose_expand_model(const ipc::DaemonStatus& st, const std::string& named) {
  auto caps_of = [&](size_t i) {
    return i < st.model_caps.size() ? st.model_caps[i] : ipc::ModelCaps{};
  };
  auto dir_of = [&](size_t i) -> std::string {
    if (i >= st.model_states.size()) return "";
    const std::string& line = st.model_states[i];  // name<TAB>state<TAB>dir
    const auto tab = line.rfind('\t');
    return tab == std::string::npos ? "" : line.substr(tab + 1);
  };
  // Known caps: 2.1 (RGBA + edit) edits, edit models edit-inpaint, text-to-image models inpaint;
  // a Layered model (decompose only) cannot. Unknown caps: the old name guess for edit models.
  auto plan = [&](const std::string& name, size_t i) -> std::optional<ExpandModel> {
    const ipc::ModelCaps c = i < st.models.size() ? caps_of(i) : ipc::ModelCaps{};
    if (!c.known)
      return ExpandModel{
          name,
          is_edit_model(name, i < st.models.size() ? dir_of(i) : "") ? "edit-inpaint" : "inpaint",
          false};
    if (c.rgba && c.can_edit) return ExpandModel{name, "edit", true};
    if (c.can_edit) return ExpandModel{name, "edit-inpaint", false};
    if (c.can_generate) return ExpandModel{name, "inpaint", false};
    return std::nullopt;
  };
  if (!named.empty()) {
    size_t i = 0;
    while (i < st.models.size() && st.models[i] != named) ++i;
    if (auto p = plan(named, i)) return *p;  // a name it does not list: the daemon says so
    throw UserError("Qwen-Image: the model '" + named + "' (" + caps_of(i).family +
                    ") cannot expand a canvas (it only decomposes pictures into layers); choose "
                    "Qwen-Image, Qwen-Image-Edit or Qwen-Image-2.1.");
  }
  for (size_t i = 0; i < st.models.size(); ++i)
    if (auto p = plan(st.models[i], i)) return *p;
  if (st.models.empty()) return ExpandModel{"", "inpaint", false};  // the daemon decides
  std::string served;
  for (const auto& m : st.models) served += (served.empty() ? "" : ", ") + m;
  throw UserError(
      "Qwen-Image: Expand Canvas needs Qwen-Image, Qwen-Image-Edit or Qwen-Image-2.1, but the "
      "daemon serves only " +
      served +
      ". Add `model = /path/to/Qwen-Image` to ~/.config/qwen-image/daemon.conf and "
      "restart qwen-imaged.");
}

Pixels expand_input(const Pixels& layer, const Rect& inside, bool rgba) {
  Pixels src = rgba ? layer : flatten_alpha(layer);
  Pixels out = src;
  const int c = out.channels;
  for (int y = 0; y < out.height; ++y)
    for (int x = 0; x < out.width; ++x) {
      if (x >= inside.x && x < inside.right() && y >= inside.y && y < inside.bottom()) continue;
      const int sx = std::clamp(x, inside.x, inside.right() - 1);
      const int sy = std::clamp(y, inside.y, inside.bottom() - 1);
      std::memcpy(out.px(x, y), src.px(sx, sy), size_t(c));
      if (rgba) out.px(x, y)[3] = 0;
    }
  return out;
}

Pixels new_area_mask(Size size, const Rect& inside) {
  Pixels m(size.w, size.h, 1, 255);
  for (int y = std::max(0, inside.y); y < std::min(size.h, inside.bottom()); ++y)
    for (int x = std::max(0, inside.x); x < std::min(size.w, inside.right()); ++x) *m.px(x, y) = 0;
  return m;
}

std::vector<int> run_expand(Host& host, int image, int drawable, const Settings& s,
                            const PluginConfig& config) {
  // Everything is checked before anything starts or changes.
  if (host.is_indexed(image))
    throw UserError(
        "Qwen-Image works on RGB and grayscale images; convert this indexed image "
        "with Image → Mode → RGB first.");
  drawable = host.layer_of(drawable);
  if (drawable < 0)
    throw UserError("Qwen-Image: select a layer (not a channel or path) and run it again.");
  if (auto bad = validate_margins(s); !bad.empty()) throw UserError("Qwen-Image: " + bad + ".");
  if (std::all_of(s.prompt, s.prompt + std::strlen(s.prompt),
                  [](unsigned char c) { return std::isspace(c); }))
    throw UserError(
        "Qwen-Image: the prompt is empty; describe the picture as it should look with the new "
        "area filled in.");
  // A killed plug-in's leftover preview layer goes, as at the start of every other procedure
  // (expand shows no preview itself: the new area does not exist before the result is in).
  remove_stale_previews(host);
  const Rect old_canvas = host.canvas(image);
  const ExpandGeometry g = expand_geometry({old_canvas.w, old_canvas.h}, s.expand_left,
                                           s.expand_top, s.expand_right, s.expand_bottom);
  // The active layer over the region, read before the resize (in old canvas coordinates).
  const Rect layer = host.layer_rect(drawable);
  const Rect in_layer{g.region.x - s.expand_left - layer.x, g.region.y - s.expand_top - layer.y,
                      g.region.w, g.region.h};
  Pixels context(g.region.w, g.region.h, 4, 0);
  // Only the layer's pixels inside the old canvas are context (the rest is the new area).
  const Rect inside{g.old_canvas.x - g.region.x, g.old_canvas.y - g.region.y, g.old_canvas.w,
                    g.old_canvas.h};
  const Rect readable = intersect(intersect(Rect{0, 0, layer.w, layer.h}, in_layer),
                                  Rect{-layer.x, -layer.y, old_canvas.w, old_canvas.h});
  if (!readable.empty()) {
    const Pixels part = host.read_drawable(drawable, readable);
    for (int y = 0; y < readable.h; ++y)
      std::memcpy(context.px(readable.x - in_layer.x, readable.y - in_layer.y + y), part.px(0, y),
                  size_t(readable.w) * 4);
  }

  host.progress_init("Qwen-Image: connecting to the daemon…");
  ipc::Client client = connect_or_start(host, config);
  ExpandModel model;
  try {
    model = choose_expand_model(client.status(), s.model);
  } catch (const ipc::ClientError& e) {
    throw to_user_error(e, config);
  }

  const Size size = model_size_for({g.region.w, g.region.h}, config.limits);
  const Pixels input = expand_input(context, inside, model.rgba);
  const Pixels mask = new_area_mask({g.region.w, g.region.h}, inside);
  ipc::JobRequest req;
  req.model = model.name;
  req.prompts = {s.prompt};
  if (*s.negative) req.negative_prompts = {s.negative};
  req.width = size.w;
  req.height = size.h;
  req.steps = s.steps;
  req.true_cfg_scale = float(s.true_cfg_scale);
  req.strength = 1.0f;  // the new area has nothing to keep
  req.exact_geometry = true;
  const gint32 seed = s.seed >= 0 ? s.seed : g_random_int_range(0, G_MAXINT32);
  req.seed = seed;
  MaskedRepaint masked;
  Pixels edit_input;
  if (model.rgba) {
    // Qwen-Image-2.1 (no mask pipeline): an edit of the expanded picture, new area transparent.
    req.pipeline = "edit";
    req.result_format = ipc::PixelFormat::RGBA8;
    edit_input = resize_rgba(input, size.w, size.h);
    req.images = {ipc::ImageView{edit_input.width, edit_input.height, ipc::PixelFormat::RGBA8, 0,
                                 edit_input.data.data()}};
  } else {
    req.result_format = ipc::PixelFormat::RGB8;
    set_masked_repaint(req, input, mask, size, model.pipeline == "edit-inpaint", masked);
  }
  host.progress_text("Qwen-Image: expand canvas (" + req.pipeline + ")");
  const auto images = run_job(host, client, req, config, 0.0, 1.0);
  if (images.empty()) throw UserError("Qwen-Image: the daemon returned no image.");
  const Pixels result = resize_rgba(result_rgba(images.front()), g.region.w, g.region.h);

  // The fill layer: the new area's bounds, masked to the new area.
  const Rect fill_in_region{g.fill.x - g.region.x, g.fill.y - g.region.y, g.fill.w, g.fill.h};
  Pixels fill(g.fill.w, g.fill.h, 4);
  for (int y = 0; y < g.fill.h; ++y)
    std::memcpy(fill.px(0, y), result.px(fill_in_region.x, fill_in_region.y + y),
                size_t(g.fill.w) * 4);
  const Pixels fill_mask = new_area_mask(
      {g.fill.w, g.fill.h},
      Rect{g.old_canvas.x - g.fill.x, g.old_canvas.y - g.fill.y, g.old_canvas.w, g.old_canvas.h});
  const std::string prompt = short_prompt(s.prompt);
  const std::string params =
      "pipeline=" + req.pipeline + "\nmodel=" + model.name + "\nseed=" + std::to_string(seed) +
      "\nsteps=" + std::to_string(req.steps) +
      "\ntrue_cfg_scale=" + std::to_string(req.true_cfg_scale) +
      "\nstrength=" + std::to_string(req.strength) + "\nexpand=" + std::to_string(s.expand_left) +
      "," + std::to_string(s.expand_top) + "," + std::to_string(s.expand_right) + "," +
      std::to_string(s.expand_bottom) + "\nprompt=" + s.prompt + "\nnegative_prompt=" + s.negative;

  // The result is in: one undo step resizes the canvas and adds the fill.
  int id = -1;
  bool resized = false;
  host.undo_group_start(image);
  try {
    host.resize_canvas(image, g.canvas.w, g.canvas.h, s.expand_left, s.expand_top);
    resized = true;
    id = host.add_result_layer(image, drawable, "Expanded: " + prompt, g.fill, fill, &fill_mask);
    host.attach_params(id, params);
  } catch (...) {
    if (resized) {
      try {  // the old size and layer offsets back
        host.resize_canvas(image, old_canvas.w, old_canvas.h, -s.expand_left, -s.expand_top);
      } catch (...) {
      }
    }
    host.undo_group_end(image);
    throw;
  }
  host.undo_group_end(image);
  host.progress_update(1.0);
  return {id};
}

}  // namespace qwen::plugin
