// GIMP-free geometry and pixel helpers of the plug-in: which region of a layer a job works on, how
// it maps onto the model's sizes and back, and the masks that keep the user's pixels untouched.
// Everything here is plain C++ so that tests/plugin/ can check it without GIMP.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace qwen::plugin {

// A rectangle in some pixel space (image coordinates unless stated otherwise).
struct Rect {
  int x = 0;
  int y = 0;
  int w = 0;
  int h = 0;
  bool empty() const { return w <= 0 || h <= 0; }
  int right() const { return x + w; }
  int bottom() const { return y + h; }
  bool operator==(const Rect&) const = default;
};

struct Size {
  int w = 0;
  int h = 0;
  bool operator==(const Size&) const = default;
};

Rect intersect(const Rect& a, const Rect& b);  // empty Rect{} when they do not overlap
// `r` grown by `pad` pixels on every side, then clipped to `bounds`.
Rect pad_within(const Rect& r, int pad, const Rect& bounds);

// How job sizes are chosen. The Qwen-Image models are trained around 1328x1328 (~1.76 MP) in
// several aspect ratios; sizes must be multiples of 16 (VAE factor 8 x patch 2).
struct SizeLimits {
  int64_t min_pixels = 768 * 768;    // smaller regions are upscaled to about this area
  int64_t max_pixels = 1328 * 1328;  // larger regions are downscaled to about this area
  int multiple = 16;
};

// The model size for a region of `target` pixels: same aspect ratio (within rounding), area
// clamped into [min_pixels, max_pixels], both sides multiples of `multiple` (at least one
// multiple). A target that already satisfies the limits keeps its size rounded to the multiple.
Size model_size_for(Size target, const SizeLimits& limits);

// Context padding around a selection for inpainting: a quarter of the selection's larger side,
// at least `min_pad` pixels.
int context_padding(const Rect& selection, int min_pad = 32);

// The region of a layer an edit-selection job works on.
struct EditRegion {
  Rect crop;       // image coordinates, inside the layer: the pixels sent to the model
  Rect selection;  // selection bounds ∩ layer ∩ canvas (image coordinates); == crop when none
  bool whole_layer = false;
};
// `layer` = the drawable's extent in image coordinates (offsets + size), `canvas` = (0,0,W,H),
// `selection` = selection bounds or nullopt when there is no selection. Returns nullopt when the
// selection does not touch the layer inside the canvas.
std::optional<EditRegion> edit_region(const Rect& layer, const Rect& canvas,
                                      const std::optional<Rect>& selection, int min_pad = 32);

// The region a generated layer covers: the selection's bounds ∩ canvas, else the whole canvas.
Rect generate_region(const Rect& canvas, const std::optional<Rect>& selection);

// Interleaved 8-bit pixels, tightly packed.
struct Pixels {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<uint8_t> data;
  Pixels() = default;
  Pixels(int w, int h, int c, uint8_t fill = 0)
      : width(w), height(h), channels(c), data(size_t(w) * h * c, fill) {}
  uint8_t* px(int x, int y) { return data.data() + (size_t(y) * width + x) * channels; }
  const uint8_t* px(int x, int y) const { return data.data() + (size_t(y) * width + x) * channels; }
};

// Separable antialiased resampling (triangle filter widened when downscaling, i.e. bilinear when
// upscaling and area-like when downscaling). Same size returns a copy.
Pixels resize(const Pixels& src, int width, int height);

// The same resampling for RGBA on premultiplied alpha (decomposed layers: the colour of
// transparent pixels does not bleed into the edges of what is visible); other channel counts go
// to resize(). Same size returns a copy.
Pixels resize_rgba(const Pixels& src, int width, int height);

// Decompose (issue #16): the region a decomposition works on: the selection's bounds ∩ the layer
// when there is a selection, else the whole layer (image coordinates). Empty when the selection
// does not touch the layer.
Rect decompose_region(const Rect& layer, const std::optional<Rect>& selection);

// RGBA -> RGB composited over `background` (0..255 gray level); RGB passes through.
Pixels flatten_alpha(const Pixels& rgba, uint8_t background = 255);
// RGB + the alpha channel of `alpha_from` (RGBA, same size) -> RGBA.
Pixels with_alpha_of(const Pixels& rgb, const Pixels& alpha_from);
// RGB -> RGBA with alpha 255.
Pixels opaque_rgba(const Pixels& rgb);

// Layer mask for an inpainted region: the selection (1 channel) feathered inwards by `radius`:
// min(selection, box-blurred selection). It is 0 wherever the selection is 0, so the picture
// outside the selection stays exactly as it was.
Pixels feathered_mask(const Pixels& selection, int radius);
// A feather radius suited to a selection of this size (2..16 px).
int feather_radius(const Rect& selection);
// Mask sent to the model: 255 where the selection is partly or fully selected, else 0.
Pixels binary_mask(const Pixels& selection);

}  // namespace qwen::plugin
