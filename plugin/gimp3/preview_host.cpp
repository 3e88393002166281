// The live preview layer on libgimp 3.x (issue #17; when and what: plugin/common/preview.h). The
// layer is inserted and removed with the image's undo frozen for just that call, so neither is an
// undo step; its pixels are written straight into its buffer, which GIMP records no undo for.
#include <algorithm>
#include <functional>

#include "plugin3.h"
#include "preview.h"

namespace qwen::plugin {

namespace {

GimpItem* valid_item(int id) {
  return gimp_item_id_is_valid(id) ? gimp_item_get_by_id(id) : nullptr;
}

}  // namespace

int Gimp3Host::add_preview_layer(int image, int anchor, const std::string& name, const Rect& r,
                                 const Pixels& rgba, const std::string& owner) {
  GimpImage* img = gimp_image_get_by_id(image);
  if (!img || !gimp_image_is_valid(img)) return -1;
  // Inserting selects the new layer; the user's selected layers / channels come back.
  GList* selected_layers = gimp_image_list_selected_layers(img);
  GList* selected_channels = gimp_image_list_selected_channels(img);
  const GimpImageType type =
      gimp_image_get_base_type(img) == GIMP_GRAY ? GIMP_GRAYA_IMAGE : GIMP_RGBA_IMAGE;
  gimp_image_undo_freeze(img);
  GimpLayer* layer = gimp_layer_new(img, name.c_str(), r.w, r.h, type, 100.0,
                                    gimp_image_get_default_new_layer_mode(img));
  if (layer) {
    GimpItem* anchor_item = valid_item(anchor);
    GimpItem* parent = anchor_item ? gimp_item_get_parent(anchor_item) : nullptr;
    const gint position = anchor_item ? gimp_image_get_item_position(img, anchor_item) : 0;
    if (gimp_image_insert_layer(img, layer, parent ? GIMP_LAYER(parent) : nullptr,
                                std::max(position, 0))) {
      gimp_layer_set_offsets(layer, r.x, r.y);
      // Not persistent (never saved in an XCF), not undoable: only the next run looks for it.
      GimpParasite* parasite =
          gimp_parasite_new(kPreviewParasite, 0, owner.size() + 1, owner.c_str());
      gimp_item_attach_parasite(GIMP_ITEM(layer), parasite);
      gimp_parasite_free(parasite);
      GeglRectangle rect = {0, 0, r.w, r.h};
      GeglBuffer* buffer = gimp_drawable_get_buffer(GIMP_DRAWABLE(layer));
      gegl_buffer_set(buffer, &rect, 0, babl_format("R'G'B'A u8"), rgba.data.data(),
                      GEGL_AUTO_ROWSTRIDE);
      g_object_unref(buffer);
    } else {
      gimp_item_delete(GIMP_ITEM(layer));
      layer = nullptr;
    }
  }
  gimp_image_take_selected_layers(img, selected_layers);
  if (selected_channels) gimp_image_take_selected_channels(img, selected_channels);
  gimp_image_undo_thaw(img);
  if (!layer) return -1;
  gimp_drawable_update(GIMP_DRAWABLE(layer), 0, 0, r.w, r.h);
  gimp_displays_flush();
  return gimp_item_get_id(GIMP_ITEM(layer));
}

bool Gimp3Host::update_preview_layer(int layer, const Pixels& rgba) {
  // GIMP ends a plug-in that writes into a removed or content-locked drawable: look first.
  GimpItem* item = valid_item(layer);
  if (!item || !gimp_item_is_valid(item) || gimp_item_get_lock_content(item)) return false;
  GimpDrawable* d = GIMP_DRAWABLE(item);
  if (gimp_drawable_get_width(d) != rgba.width || gimp_drawable_get_height(d) != rgba.height)
    return false;
  GeglRectangle rect = {0, 0, rgba.width, rgba.height};
  GeglBuffer* buffer = gimp_drawable_get_buffer(d);
  gegl_buffer_set(buffer, &rect, 0, babl_format("R'G'B'A u8"), rgba.data.data(),
                  GEGL_AUTO_ROWSTRIDE);
  g_object_unref(buffer);
  gimp_drawable_update(d, 0, 0, rgba.width, rgba.height);
  gimp_displays_flush();
  return true;
}

void Gimp3Host::remove_preview_layer(int layer) {
  GimpItem* item = valid_item(layer);
  if (!item || !gimp_item_is_valid(item)) return;
  GimpImage* img = gimp_item_get_image(item);
  if (!img) return;
  gimp_image_undo_freeze(img);
  gimp_image_remove_layer(img, GIMP_LAYER(item));
  gimp_image_undo_thaw(img);
  gimp_displays_flush();
}

std::vector<std::pair<int, std::string>> Gimp3Host::preview_layers() {
  std::vector<std::pair<int, std::string>> found;
  std::function<void(GList*)> walk = [&](GList* items) {
    for (GList* l = items; l; l = l->next) {
      GimpItem* item = GIMP_ITEM(l->data);
      if (GimpParasite* p = gimp_item_get_parasite(item, kPreviewParasite)) {
        guint32 size = 0;
        const char* data = static_cast<const char*>(gimp_parasite_get_data(p, &size));
        std::string owner(data ? data : "", data ? size : 0);
        while (!owner.empty() && owner.back() == '\0') owner.pop_back();
        gimp_parasite_free(p);
        found.emplace_back(gimp_item_get_id(item), owner);
      }
      if (gimp_item_is_group(item)) {
        GList* children = gimp_item_list_children(item);
        walk(children);
        g_list_free(children);
      }
    }
  };
  GList* images = gimp_list_images();
  for (GList* i = images; i; i = i->next) {
    GList* layers = gimp_image_list_layers(GIMP_IMAGE(i->data));
    walk(layers);
    g_list_free(layers);
  }
  g_list_free(images);
  return found;
}

}  // namespace qwen::plugin
