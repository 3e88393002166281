// The live preview layer on libgimp 2.10 (issue #17; when and what: plugin/common/preview.h). The
// layer is inserted and removed with the image's undo frozen for just that call, so neither is an
// undo step; its pixels are written straight into its buffer, which GIMP records no undo for.
#include <algorithm>
#include <functional>

#include "plugin.h"
#include "preview.h"

namespace qwen::plugin {

int Gimp2Host::add_preview_layer(int image, int anchor, const std::string& name, const Rect& r,
                                 const Pixels& rgba, const std::string& owner) {
  if (!gimp_image_is_valid(image)) return -1;
  // Inserting makes the new layer the active one; the user's active layer / channel come back.
  const gint32 active_layer = gimp_image_get_active_layer(image);
  const gint32 active_channel = gimp_image_get_active_channel(image);
  const GimpImageType type =
      gimp_image_base_type(image) == GIMP_GRAY ? GIMP_GRAYA_IMAGE : GIMP_RGBA_IMAGE;
  gimp_image_undo_freeze(image);
  gint32 layer = gimp_layer_new(image, name.c_str(), r.w, r.h, type, 100.0,
                                gimp_image_get_default_new_layer_mode(image));
  if (layer > 0) {
    const gint32 parent = anchor > 0 ? gimp_item_get_parent(anchor) : -1;
    const gint position = anchor > 0 ? gimp_image_get_item_position(image, anchor) : 0;
    if (gimp_image_insert_layer(image, layer, parent > 0 ? parent : 0, std::max(position, 0))) {
      gimp_layer_set_offsets(layer, r.x, r.y);
      // Not persistent (never saved in an XCF), not undoable: only the next run looks for it.
      GimpParasite* parasite =
          gimp_parasite_new(kPreviewParasite, 0, owner.size() + 1, owner.c_str());
      gimp_item_attach_parasite(layer, parasite);
      gimp_parasite_free(parasite);
      GeglRectangle rect = {0, 0, r.w, r.h};
      GeglBuffer* buffer = gimp_drawable_get_buffer(layer);
      gegl_buffer_set(buffer, &rect, 0, babl_format("R'G'B'A u8"), rgba.data.data(),
                      GEGL_AUTO_ROWSTRIDE);
      g_object_unref(buffer);
    } else {
      gimp_item_delete(layer);
      layer = -1;
    }
  }
  if (active_channel > 0)
    gimp_image_set_active_channel(image, active_channel);
  else if (active_layer > 0)
    gimp_image_set_active_layer(image, active_layer);
  gimp_image_undo_thaw(image);
  if (layer <= 0) return -1;
  gimp_drawable_update(layer, 0, 0, r.w, r.h);
  gimp_displays_flush();
  return layer;
}

bool Gimp2Host::update_preview_layer(int layer, const Pixels& rgba) {
  // GIMP ends a plug-in that writes into a removed or content-locked drawable: look first.
  if (!gimp_item_is_valid(layer) || gimp_item_get_lock_content(layer) ||
      gimp_drawable_width(layer) != rgba.width || gimp_drawable_height(layer) != rgba.height)
    return false;
  GeglRectangle rect = {0, 0, rgba.width, rgba.height};
  GeglBuffer* buffer = gimp_drawable_get_buffer(layer);
  gegl_buffer_set(buffer, &rect, 0, babl_format("R'G'B'A u8"), rgba.data.data(),
                  GEGL_AUTO_ROWSTRIDE);
  g_object_unref(buffer);
  gimp_drawable_update(layer, 0, 0, rgba.width, rgba.height);
  gimp_displays_flush();
  return true;
}

void Gimp2Host::remove_preview_layer(int layer) {
  if (!gimp_item_is_valid(layer)) return;
  const gint32 image = gimp_item_get_image(layer);
  if (image <= 0) return;
  gimp_image_undo_freeze(image);
  gimp_image_remove_layer(image, layer);
  gimp_image_undo_thaw(image);
  gimp_displays_flush();
}

std::vector<std::pair<int, std::string>> Gimp2Host::preview_layers() {
  std::vector<std::pair<int, std::string>> found;
  std::function<void(const gint32*, gint)> walk = [&](const gint32* items, gint n) {
    for (gint i = 0; i < n; ++i) {
      if (GimpParasite* p = gimp_item_get_parasite(items[i], kPreviewParasite)) {
        const char* data = static_cast<const char*>(gimp_parasite_data(p));
        const glong size = gimp_parasite_data_size(p);
        std::string owner(data ? data : "", data ? size_t(std::max<glong>(size, 0)) : 0);
        while (!owner.empty() && owner.back() == '\0') owner.pop_back();
        gimp_parasite_free(p);
        found.emplace_back(items[i], owner);
      }
      if (gimp_item_is_group(items[i])) {
        gint m = 0;
        gint32* children = gimp_item_get_children(items[i], &m);
        walk(children, m);
        g_free(children);
      }
    }
  };
  gint num_images = 0;
  gint32* images = gimp_image_list(&num_images);
  for (gint i = 0; i < num_images; ++i) {
    gint n = 0;
    gint32* layers = gimp_image_get_layers(images[i], &n);
    walk(layers, n);
    g_free(layers);
  }
  g_free(images);
  return found;
}

}  // namespace qwen::plugin
