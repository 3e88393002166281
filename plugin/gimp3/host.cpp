// Host on libgimp 3.0: GEGL pixel I/O (drawables, the selection, result layers), progress, undo.
// The shared code names items by GIMP's integer ids; they map to GimpImage / GimpItem objects here.
#include <algorithm>

#include "plugin3.h"

namespace qwen::plugin {

namespace {

GimpImage* image_of(int id) { return gimp_image_get_by_id(id); }
GimpDrawable* drawable_of(int id) { return GIMP_DRAWABLE(gimp_item_get_by_id(id)); }

}  // namespace

void Gimp3Host::progress_init(const std::string& text) { gimp_progress_init(text.c_str()); }
void Gimp3Host::progress_text(const std::string& text) { gimp_progress_set_text(text.c_str()); }
void Gimp3Host::progress_update(double fraction) { gimp_progress_update(fraction); }
void Gimp3Host::progress_pulse() { gimp_progress_pulse(); }
void Gimp3Host::message(const std::string& text) { gimp_message(text.c_str()); }

bool Gimp3Host::is_indexed(int image) {
  return gimp_image_get_base_type(image_of(image)) == GIMP_INDEXED;
}

int Gimp3Host::layer_of(int drawable) {
  GimpItem* item = gimp_item_get_by_id(drawable);
  if (!item) return -1;
  if (gimp_item_is_layer_mask(item)) item = GIMP_ITEM(gimp_layer_from_mask(GIMP_LAYER_MASK(item)));
  return item && gimp_item_is_layer(item) ? gimp_item_get_id(item) : -1;
}

Rect Gimp3Host::canvas(int image) {
  GimpImage* img = image_of(image);
  return Rect{0, 0, gimp_image_get_width(img), gimp_image_get_height(img)};
}

Rect Gimp3Host::layer_rect(int drawable) {
  GimpDrawable* d = drawable_of(drawable);
  gint ox = 0, oy = 0;
  gimp_drawable_get_offsets(d, &ox, &oy);
  return Rect{ox, oy, gimp_drawable_get_width(d), gimp_drawable_get_height(d)};
}

std::optional<Rect> Gimp3Host::selection_bounds(int image) {
  gboolean non_empty = FALSE;
  gint x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  if (!gimp_selection_bounds(image_of(image), &non_empty, &x1, &y1, &x2, &y2) || !non_empty)
    return std::nullopt;
  return Rect{x1, y1, x2 - x1, y2 - y1};
}

Pixels Gimp3Host::read_drawable(int drawable, const Rect& r) {
  Pixels p(r.w, r.h, 4);
  GeglBuffer* buffer = gimp_drawable_get_buffer(drawable_of(drawable));
  GeglRectangle rect = {r.x, r.y, r.w, r.h};
  gegl_buffer_get(buffer, &rect, 1.0, babl_format("R'G'B'A u8"), p.data.data(), GEGL_AUTO_ROWSTRIDE,
                  GEGL_ABYSS_NONE);
  g_object_unref(buffer);
  return p;
}

Pixels Gimp3Host::read_selection(int image, const Rect& r) {
  Pixels p(r.w, r.h, 1);
  GimpSelection* selection = gimp_image_get_selection(image_of(image));
  GeglBuffer* buffer = gimp_drawable_get_buffer(GIMP_DRAWABLE(selection));
  GeglRectangle rect = {r.x, r.y, r.w, r.h};
  gegl_buffer_get(buffer, &rect, 1.0, babl_format("Y u8"), p.data.data(), GEGL_AUTO_ROWSTRIDE,
                  GEGL_ABYSS_NONE);
  g_object_unref(buffer);
  return p;
}

int Gimp3Host::add_result_layer(int image, int anchor, const std::string& name, const Rect& r,
                                const Pixels& pixels, const Pixels* mask) {
  GimpImage* img = image_of(image);
  GimpImageType type =
      gimp_image_get_base_type(img) == GIMP_GRAY ? GIMP_GRAYA_IMAGE : GIMP_RGBA_IMAGE;
  GimpLayer* layer = gimp_layer_new(img, name.c_str(), r.w, r.h, type, 100.0,
                                    gimp_image_get_default_new_layer_mode(img));
  if (!layer) throw UserError("Qwen-Image: GIMP could not create the result layer.");
  GimpItem* anchor_item = anchor > 0 ? gimp_item_get_by_id(anchor) : nullptr;
  GimpItem* parent = anchor_item ? gimp_item_get_parent(anchor_item) : nullptr;
  gint position = anchor_item ? gimp_image_get_item_position(img, anchor_item) : 0;
  if (!gimp_image_insert_layer(img, layer, parent ? GIMP_LAYER(parent) : nullptr,
                               std::max(position, 0)))
    throw UserError("Qwen-Image: GIMP could not insert the result layer.");
  gimp_layer_set_offsets(layer, r.x, r.y);

  GeglRectangle rect = {0, 0, r.w, r.h};
  GeglBuffer* buffer = gimp_drawable_get_buffer(GIMP_DRAWABLE(layer));
  gegl_buffer_set(buffer, &rect, 0, babl_format("R'G'B'A u8"), pixels.data.data(),
                  GEGL_AUTO_ROWSTRIDE);
  g_object_unref(buffer);

  if (mask) {
    GimpLayerMask* m = gimp_layer_create_mask(layer, GIMP_ADD_MASK_WHITE);
    gimp_layer_add_mask(layer, m);
    GeglBuffer* mb = gimp_drawable_get_buffer(GIMP_DRAWABLE(m));
    gegl_buffer_set(mb, &rect, 0, babl_format("Y u8"), mask->data.data(), GEGL_AUTO_ROWSTRIDE);
    g_object_unref(mb);
    gimp_drawable_update(GIMP_DRAWABLE(m), 0, 0, r.w, r.h);
  }
  gimp_drawable_update(GIMP_DRAWABLE(layer), 0, 0, r.w, r.h);
  return gimp_item_get_id(GIMP_ITEM(layer));
}

int Gimp3Host::add_layer_group(int image, int anchor, const std::string& name) {
  GimpImage* img = image_of(image);
  GimpGroupLayer* group = gimp_group_layer_new(img, name.c_str());
  if (!group) throw UserError("Qwen-Image: GIMP could not create the layer group.");
  // The group's own compositing onto what is below in perceptual sRGB too (see the layers).
  gimp_layer_set_composite_space(GIMP_LAYER(group), GIMP_LAYER_COLOR_SPACE_RGB_PERCEPTUAL);
  GimpItem* anchor_item = anchor > 0 ? gimp_item_get_by_id(anchor) : nullptr;
  GimpItem* parent = anchor_item ? gimp_item_get_parent(anchor_item) : nullptr;
  gint position = anchor_item ? gimp_image_get_item_position(img, anchor_item) : 0;
  if (!gimp_image_insert_layer(img, GIMP_LAYER(group), parent ? GIMP_LAYER(parent) : nullptr,
                               std::max(position, 0)))
    throw UserError("Qwen-Image: GIMP could not insert the layer group.");
  return gimp_item_get_id(GIMP_ITEM(group));
}

int Gimp3Host::add_layer_to_group(int image, int group, const std::string& name, const Rect& r,
                                  const Pixels& rgba) {
  GimpImage* img = image_of(image);
  GimpImageType type =
      gimp_image_get_base_type(img) == GIMP_GRAY ? GIMP_GRAYA_IMAGE : GIMP_RGBA_IMAGE;
  GimpLayer* layer = gimp_layer_new(img, name.c_str(), r.w, r.h, type, 100.0,
                                    gimp_image_get_default_new_layer_mode(img));
  if (!layer) throw UserError("Qwen-Image: GIMP could not create a result layer.");
  if (!gimp_image_insert_layer(img, layer, GIMP_LAYER(gimp_item_get_by_id(group)), 0))
    throw UserError("Qwen-Image: GIMP could not insert a result layer into the group.");
  // sRGB "over" like every other tool that stacks the model's layers (PIL's alpha_composite).
  gimp_layer_set_composite_space(layer, GIMP_LAYER_COLOR_SPACE_RGB_PERCEPTUAL);
  gimp_layer_set_offsets(layer, r.x, r.y);
  GeglRectangle rect = {0, 0, r.w, r.h};
  GeglBuffer* buffer = gimp_drawable_get_buffer(GIMP_DRAWABLE(layer));
  gegl_buffer_set(buffer, &rect, 0, babl_format("R'G'B'A u8"), rgba.data.data(),
                  GEGL_AUTO_ROWSTRIDE);
  g_object_unref(buffer);
  gimp_drawable_update(GIMP_DRAWABLE(layer), 0, 0, r.w, r.h);
  return gimp_item_get_id(GIMP_ITEM(layer));
}

void Gimp3Host::attach_params(int layer, const std::string& params) {
  GimpParasite* parasite =
      gimp_parasite_new("qwen-image-params", GIMP_PARASITE_PERSISTENT | GIMP_PARASITE_UNDOABLE,
                        params.size() + 1, params.c_str());
  gimp_item_attach_parasite(gimp_item_get_by_id(layer), parasite);
  gimp_parasite_free(parasite);
}

void Gimp3Host::undo_group_start(int image) { gimp_image_undo_group_start(image_of(image)); }
void Gimp3Host::undo_group_end(int image) { gimp_image_undo_group_end(image_of(image)); }

void Gimp3Host::resize_canvas(int image, int new_w, int new_h, int off_x, int off_y) {
  if (!gimp_image_resize(image_of(image), new_w, new_h, off_x, off_y))
    throw UserError("Qwen-Image: GIMP could not resize the canvas to " + std::to_string(new_w) +
                    "x" + std::to_string(new_h) + ".");
}

int Gimp3Host::image_of_item(int item) {
  GimpItem* it = item > 0 && gimp_item_id_is_valid(item) ? gimp_item_get_by_id(item) : nullptr;
  GimpImage* img = it ? gimp_item_get_image(it) : nullptr;
  return img ? gimp_image_get_id(img) : -1;
}

std::string Gimp3Host::item_name(int item) {
  GimpItem* it = item > 0 && gimp_item_id_is_valid(item) ? gimp_item_get_by_id(item) : nullptr;
  gchar* name = it ? gimp_item_get_name(it) : nullptr;
  std::string out = name ? name : "item " + std::to_string(item);
  g_free(name);
  return out;
}

}  // namespace qwen::plugin
