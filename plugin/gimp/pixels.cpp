// GEGL pixel I/O: reading drawables and the selection, writing result layers.
#include <algorithm>

#include "plugin.h"

namespace qwen::plugin {

Pixels read_drawable(gint32 drawable, const Rect& r) {
  Pixels p(r.w, r.h, 4);
  GeglBuffer* buffer = gimp_drawable_get_buffer(drawable);
  GeglRectangle rect = {r.x, r.y, r.w, r.h};
  gegl_buffer_get(buffer, &rect, 1.0, babl_format("R'G'B'A u8"), p.data.data(), GEGL_AUTO_ROWSTRIDE,
                  GEGL_ABYSS_NONE);
  g_object_unref(buffer);
  return p;
}

Pixels read_selection(gint32 image, const Rect& r) {
  Pixels p(r.w, r.h, 1);
  gint32 selection = gimp_image_get_selection(image);
  GeglBuffer* buffer = gimp_drawable_get_buffer(selection);
  GeglRectangle rect = {r.x, r.y, r.w, r.h};
  gegl_buffer_get(buffer, &rect, 1.0, babl_format("Y u8"), p.data.data(), GEGL_AUTO_ROWSTRIDE,
                  GEGL_ABYSS_NONE);
  g_object_unref(buffer);
  return p;
}

gint32 add_result_layer(gint32 image, gint32 anchor, const std::string& name, const Rect& r,
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

Pixels to_rgb(const qwen::ipc::Image& img) {
  const int c = qwen::ipc::channels(img.format);
  if (qwen::ipc::bytes_per_channel(img.format) != 1)
    throw UserError("Qwen-Image: the daemon returned a float image; expected 8-bit pixels.");
  Pixels out(img.width, img.height, 3);
  for (size_t i = 0, n = size_t(img.width) * img.height; i < n; ++i)
    for (int ch = 0; ch < 3; ++ch) out.data[i * 3 + ch] = img.bytes[i * c + (c >= 3 ? ch : 0)];
  return out;
}

}  // namespace qwen::plugin
