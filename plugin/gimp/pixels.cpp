// Host on libgimp 2.10: GEGL pixel I/O (drawables, the selection, result layers), progress, undo.
#include <algorithm>

#include "plugin.h"

namespace qwen::plugin {

Pixels Gimp2Host::read_drawable(int drawable, const Rect& r) {
  Pixels p(r.w, r.h, 4);
  GeglBuffer* buffer = gimp_drawable_get_buffer(drawable);
  GeglRectangle rect = {r.x, r.y, r.w, r.h};
  gegl_buffer_get(buffer, &rect, 1.0, babl_format("R'G'B'A u8"), p.data.data(), GEGL_AUTO_ROWSTRIDE,
                  GEGL_ABYSS_NONE);
  g_object_unref(buffer);
  return p;
}

Pixels Gimp2Host::read_selection(int image, const Rect& r) {
  Pixels p(r.w, r.h, 1);
  gint32 selection = gimp_image_get_selection(image);
  GeglBuffer* buffer = gimp_drawable_get_buffer(selection);
  GeglRectangle rect = {r.x, r.y, r.w, r.h};
  gegl_buffer_get(buffer, &rect, 1.0, babl_format("Y u8"), p.data.data(), GEGL_AUTO_ROWSTRIDE,
                  GEGL_ABYSS_NONE);
  g_object_unref(buffer);
  return p;
}

int Gimp2Host::add_result_layer(int image, int anchor, const std::string& name, const Rect& r,
                                const Pixels& pixels, const Pixels* mask) {
  GimpImageType type =
      gimp_image_base_type(image) == GIMP_GRAY ? GIMP_GRAYA_IMAGE : GIMP_RGBA_IMAGE;
  gint32 layer = gimp_layer_new(image, name.c_str(), r.w, r.h, type, 100.0,
                                gimp_image_get_default_new_layer_mode(image));
  if (layer <= 0) throw UserError("Qwen-Image: GIMP could not create the result layer.");
  gint32 parent = anchor > 0 ? gimp_item_get_parent(anchor) : -1;
  gint position = anchor > 0 ? gimp_image_get_item_position(image, anchor) : 0;
  if (!gimp_image_insert_layer(image, layer, parent > 0 ? parent : 0, std::max(position, 0)))
    throw UserError("Qwen-Image: GIMP could not insert the result layer.");
  gimp_layer_set_offsets(layer, r.x, r.y);

  GeglRectangle rect = {0, 0, r.w, r.h};
  GeglBuffer* buffer = gimp_drawable_get_buffer(layer);
  gegl_buffer_set(buffer, &rect, 0, babl_format("R'G'B'A u8"), pixels.data.data(),
                  GEGL_AUTO_ROWSTRIDE);
  g_object_unref(buffer);

  if (mask) {
    gint32 m = gimp_layer_create_mask(layer, GIMP_ADD_MASK_WHITE);
    gimp_layer_add_mask(layer, m);
    GeglBuffer* mb = gimp_drawable_get_buffer(m);
    gegl_buffer_set(mb, &rect, 0, babl_format("Y u8"), mask->data.data(), GEGL_AUTO_ROWSTRIDE);
    g_object_unref(mb);
    gimp_drawable_update(m, 0, 0, r.w, r.h);
  }
  gimp_drawable_update(layer, 0, 0, r.w, r.h);
  return layer;
}

int Gimp2Host::add_layer_group(int image, int anchor, const std::string& name) {
  gint32 group = gimp_layer_group_new(image);
  if (group <= 0) throw UserError("Qwen-Image: GIMP could not create the layer group.");
  gimp_item_set_name(group, name.c_str());
  // The group's own compositing onto what is below in perceptual sRGB too (see the layers).
  gimp_layer_set_composite_space(group, GIMP_LAYER_COLOR_SPACE_RGB_PERCEPTUAL);
  gint32 parent = anchor > 0 ? gimp_item_get_parent(anchor) : -1;
  gint position = anchor > 0 ? gimp_image_get_item_position(image, anchor) : 0;
  if (!gimp_image_insert_layer(image, group, parent > 0 ? parent : 0, std::max(position, 0)))
    throw UserError("Qwen-Image: GIMP could not insert the layer group.");
  return group;
}

int Gimp2Host::add_layer_to_group(int image, int group, const std::string& name, const Rect& r,
                                  const Pixels& rgba) {
  GimpImageType type =
      gimp_image_base_type(image) == GIMP_GRAY ? GIMP_GRAYA_IMAGE : GIMP_RGBA_IMAGE;
  gint32 layer = gimp_layer_new(image, name.c_str(), r.w, r.h, type, 100.0,
                                gimp_image_get_default_new_layer_mode(image));
  if (layer <= 0) throw UserError("Qwen-Image: GIMP could not create a result layer.");
  if (!gimp_image_insert_layer(image, layer, group, 0))
    throw UserError("Qwen-Image: GIMP could not insert a result layer into the group.");
  // sRGB "over" like every other tool that stacks the model's layers (PIL's alpha_composite):
  // 2.10's default Normal mode composites in linear light, which shifts soft edges.
  gimp_layer_set_composite_space(layer, GIMP_LAYER_COLOR_SPACE_RGB_PERCEPTUAL);
  gimp_layer_set_offsets(layer, r.x, r.y);
  GeglRectangle rect = {0, 0, r.w, r.h};
  GeglBuffer* buffer = gimp_drawable_get_buffer(layer);
  gegl_buffer_set(buffer, &rect, 0, babl_format("R'G'B'A u8"), rgba.data.data(),
                  GEGL_AUTO_ROWSTRIDE);
  g_object_unref(buffer);
  gimp_drawable_update(layer, 0, 0, r.w, r.h);
  return layer;
}

void Gimp2Host::progress_init(const std::string& text) { gimp_progress_init(text.c_str()); }
void Gimp2Host::progress_text(const std::string& text) { gimp_progress_set_text(text.c_str()); }
void Gimp2Host::progress_update(double fraction) { gimp_progress_update(fraction); }
void Gimp2Host::progress_pulse() { gimp_progress_pulse(); }
void Gimp2Host::message(const std::string& text) { gimp_message(text.c_str()); }

bool Gimp2Host::is_indexed(int image) { return gimp_image_base_type(image) == GIMP_INDEXED; }

int Gimp2Host::layer_of(int drawable) {
  if (gimp_item_is_layer_mask(drawable)) drawable = gimp_layer_from_mask(drawable);
  return gimp_item_is_layer(drawable) ? drawable : -1;
}

Rect Gimp2Host::canvas(int image) {
  return Rect{0, 0, gimp_image_width(image), gimp_image_height(image)};
}

Rect Gimp2Host::layer_rect(int drawable) {
  gint ox = 0, oy = 0;
  gimp_drawable_offsets(drawable, &ox, &oy);
  return Rect{ox, oy, gimp_drawable_width(drawable), gimp_drawable_height(drawable)};
}

std::optional<Rect> Gimp2Host::selection_bounds(int image) {
  gboolean non_empty = FALSE;
  gint x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  if (!gimp_selection_bounds(image, &non_empty, &x1, &y1, &x2, &y2) || !non_empty)
    return std::nullopt;
  return Rect{x1, y1, x2 - x1, y2 - y1};
}

void Gimp2Host::attach_params(int layer, const std::string& params) {
  GimpParasite* parasite =
      gimp_parasite_new("qwen-image-params", GIMP_PARASITE_PERSISTENT | GIMP_PARASITE_UNDOABLE,
                        params.size() + 1, params.c_str());
  gimp_item_attach_parasite(layer, parasite);
  gimp_parasite_free(parasite);
}

void Gimp2Host::undo_group_start(int image) { gimp_image_undo_group_start(image); }
void Gimp2Host::undo_group_end(int image) { gimp_image_undo_group_end(image); }

void Gimp2Host::resize_canvas(int image, int new_w, int new_h, int off_x, int off_y) {
  if (!gimp_image_resize(image, new_w, new_h, off_x, off_y))
    throw UserError("Qwen-Image: GIMP could not resize the canvas to " + std::to_string(new_w) +
                    "x" + std::to_string(new_h) + ".");
}

int Gimp2Host::image_of_item(int item) {
  return item > 0 && gimp_item_is_valid(item) ? gimp_item_get_image(item) : -1;
}

std::string Gimp2Host::item_name(int item) {
  gchar* name = item > 0 && gimp_item_is_valid(item) ? gimp_item_get_name(item) : nullptr;
  std::string out = name ? name : "item " + std::to_string(item);
  g_free(name);
  return out;
}

}  // namespace qwen::plugin
