// Edit geometry: how an input image is mapped onto the model's canvas and how the model's result is
// mapped back onto the input's pixel grid. Torch-free (PIL-exact resamplers from daemon/image).
//
//  Reference (diffusers): the input is LANCZOS-resized to calculate_dimensions(area, w/h), i.e.
//  both
//    sides rounded to multiples of 32 independently (the aspect ratio changes by up to a few %),
//    and the result is stretched back to the input size.
//  Exact: the input is scaled uniformly (one scale for both axes, up to the rounding of the content
//    size to whole pixels, < 0.5 model px) to fit inside the model's canvas, which has the same
//    size as in the reference (multiples of 32, area ~ target). The canvas is filled by REFLECTING
//    the content (see to_model). After generation the content rectangle is cropped (the padding
//    never reaches the result) and resampled back to the input's exact width x height. With an
//    identity model the round trip maps every input pixel centre onto itself: zero shift, zero
//    zoom.
#pragma once

#include <cstdint>

#include "image/image.h"

namespace qwen::pipelines {

struct EditCanvas {
  int in_w = 0, in_h = 0;        // input image size
  int model_w = 0, model_h = 0;  // canvas size the model runs at (multiples of `multiple`)
  // Content rectangle in model pixels (integers, so float-exact): the input occupies
  // [content_x, content_x + content_w) x [content_y, content_y + content_h). In Reference mode it
  // is the whole canvas.
  int content_x = 0, content_y = 0;
  int content_w = 0, content_h = 0;
  bool padded = false;  // Exact canvas (true) or reference stretch (false)

  // Per-axis scale model px / input px. Exact: equal up to the whole-pixel rounding of the content.
  double scale_x() const { return double(content_w) / in_w; }
  double scale_y() const { return double(content_h) / in_h; }
  // Relative anisotropy scale_x / scale_y - 1 (reference: up to a few %; exact: < 0.5 / content).
  double aspect_error() const { return scale_x() / scale_y() - 1.0; }
  // The largest displacement, in input pixels, that the anisotropy causes at the image border when
  // content is laid out with one uniform scale (the mean of both): how far an edge drifts if the
  // model "undoes" the squeeze. 0 for a perfectly uniform mapping.
  double anisotropy_px() const;
};

// Model canvas of the reference pipelines: calculate_dimensions(target_area, w/h) with sides
// rounded to `multiple` (32), at least one multiple each (the reference throws for a 0 side).
// Content = whole canvas (stretch).
EditCanvas plan_reference(int in_w, int in_h, int64_t target_area = 1024 * 1024, int multiple = 32);
// Exact canvas: same model size as plan_reference (same token count and cost as the reference);
// content = the input scaled uniformly by min(model_w / in_w, model_h / in_h), rounded to whole
// pixels, centred (padding only on one axis, less than `multiple` + rounding).
EditCanvas plan_exact(int in_w, int in_h, int64_t target_area = 1024 * 1024, int multiple = 32);

// Input (1, 3 or 4 channels) -> model canvas (same channels): LANCZOS resize to the content size,
// then padding by reflection about the content's edge pixels (numpy/OpenCV "reflect_101", repeated
// when the padding is wider than the content). Reflection, not edge replication: replicated edges
// give flat streaks the model (and the VAE's 3x3 convolutions next to the content edge) read as a
// structure of their own, while reflection keeps the local texture, gradients and colour statistics
// of the border, so the padding looks like a plausible continuation and the content near the edge
// is edited as if it were interior. The padding never reaches the output: from_model crops it.
ImageU8 to_model(const ImageU8& image, const EditCanvas& canvas);
// Model result (canvas size) -> out_w x out_h (normally in_w x in_h): crop the content rectangle
// and LANCZOS-resize it. Throws ImageError when the result is not the canvas size.
ImageU8 from_model(const ImageU8& result, const EditCanvas& canvas, int out_w, int out_h);
inline ImageU8 from_model(const ImageU8& result, const EditCanvas& canvas) {
  return from_model(result, canvas, canvas.in_w, canvas.in_h);
}

// Masks (white 255 = repaint; any channel count, converted to gray like PIL convert("L")) through
// the same canvas; the result is a 1-channel binary 0/255 mask.
//  Lanczos: LANCZOS-resize the gray mask, then threshold >= 128 (what the reference's mask
//  processor
//           does: the binary edge sits where the resampled mask crosses 50 %, i.e. at the true
//           edge position, sub-pixel accurate, aligned with the image resampling).
//  Nearest: PIL NEAREST (source pixel floor((x + 0.5) * in / out)), then threshold.
// Padding is 0 (keep): nothing outside the content is repainted.
enum class MaskFilter { Lanczos, Nearest };
ImageU8 mask_to_model(const ImageU8& mask, const EditCanvas& canvas,
                      MaskFilter filter = MaskFilter::Lanczos);
ImageU8 mask_from_model(const ImageU8& mask, const EditCanvas& canvas, int out_w, int out_h,
                        MaskFilter filter = MaskFilter::Lanczos);

// PIL Image.resize(NEAREST) of an 8-bit image (any channel count).
ImageU8 resize_nearest(const ImageU8& image, int width, int height);

}  // namespace qwen::pipelines
