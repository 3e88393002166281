#include "pipelines/geometry.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "image/convert.h"
#include "image/geometry.h"
#include "image/ops.h"
#include "image/resample.h"

namespace qwen::pipelines {

namespace {

void check_input(int in_w, int in_h, int64_t target_area, int multiple) {
  if (in_w < 1 || in_h < 1)
    throw ImageError("edit geometry: invalid input size " + std::to_string(in_w) + "x" +
                     std::to_string(in_h));
  if (target_area < 1 || multiple < 1)
    throw ImageError("edit geometry: invalid target area or multiple");
}

// calculate_dimensions with an arbitrary multiple and at least one multiple per side.
Size model_size(int in_w, int in_h, int64_t target_area, int multiple) {
  const double ratio = double(in_w) / double(in_h);
  const double w = std::sqrt(double(target_area) * ratio);
  const double h = w / ratio;
  const int m = multiple;
  const int mw = std::max(m, int(python_round(w / m)) * m);
  const int mh = std::max(m, int(python_round(h / m)) * m);
  return {mw, mh};
}

// numpy "reflect" (no repeat of the edge pixel), periodic for any distance; n >= 1.
int reflect_index(int i, int n) {
  if (n == 1) return 0;
  const int period = 2 * (n - 1);
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

ImageU8 pad_reflect(const ImageU8& content, const EditCanvas& c) {
  if (!c.padded || (c.content_w == c.model_w && c.content_h == c.model_h)) return content;
  ImageU8 out(c.model_w, c.model_h, content.channels);
  const size_t ch = size_t(content.channels);
  std::vector<int> xs(size_t(c.model_w));
  for (int x = 0; x < c.model_w; ++x) xs[size_t(x)] = reflect_index(x - c.content_x, c.content_w);
  for (int y = 0; y < c.model_h; ++y) {
    const uint8_t* src = content.row(reflect_index(y - c.content_y, c.content_h));
    uint8_t* dst = out.row(y);
    for (int x = 0; x < c.model_w; ++x)
      std::copy_n(src + size_t(xs[size_t(x)]) * ch, ch, dst + size_t(x) * ch);
  }
  return out;
}

ImageU8 threshold(ImageU8 gray) {
  for (auto& v : gray.pixels) v = v >= 128 ? 255 : 0;
  return gray;
}

ImageU8 resize_mask(const ImageU8& gray, int w, int h, MaskFilter filter) {
  if (filter == MaskFilter::Nearest) return threshold(resize_nearest(gray, w, h));
  return threshold(resize(gray, w, h, ResampleFilter::Lanczos));
}

ImageU8 as_gray(const ImageU8& mask) { return mask.channels == 1 ? mask : to_gray(mask); }

}  // namespace

double EditCanvas::anisotropy_px() const {
  const double sx = scale_x(), sy = scale_y();
  const double s = 0.5 * (sx + sy);
  // A border pixel at distance in/2 from the centre moves by (in/2) * |s_axis / s - 1|.
  return std::max(0.5 * in_w * std::abs(sx / s - 1.0), 0.5 * in_h * std::abs(sy / s - 1.0));
}

EditCanvas plan_reference(int in_w, int in_h, int64_t target_area, int multiple) {
  check_input(in_w, in_h, target_area, multiple);
  const Size m = model_size(in_w, in_h, target_area, multiple);
  EditCanvas c;
  c.in_w = in_w;
  c.in_h = in_h;
  c.model_w = c.content_w = m.width;
  c.model_h = c.content_h = m.height;
  c.padded = false;
  return c;
}

EditCanvas plan_exact(int in_w, int in_h, int64_t target_area, int multiple) {
  check_input(in_w, in_h, target_area, multiple);
  const Size m = model_size(in_w, in_h, target_area, multiple);
  EditCanvas c;
  c.in_w = in_w;
  c.in_h = in_h;
  c.model_w = m.width;
  c.model_h = m.height;
  // Uniform scale that fits; the limiting axis fills the canvas exactly, the other rounds.
  const double sx = double(m.width) / in_w, sy = double(m.height) / in_h;
  if (sx <= sy) {
    c.content_w = m.width;
    c.content_h = std::clamp(int(std::lround(in_h * sx)), 1, m.height);
  } else {
    c.content_h = m.height;
    c.content_w = std::clamp(int(std::lround(in_w * sy)), 1, m.width);
  }
  c.content_x = (m.width - c.content_w) / 2;
  c.content_y = (m.height - c.content_h) / 2;
  c.padded = true;
  return c;
}

ImageU8 to_model(const ImageU8& image, const EditCanvas& c) {
  validate_image(image, "edit input image");
  if (image.width != c.in_w || image.height != c.in_h)
    throw ImageError("edit geometry: input is " + std::to_string(image.width) + "x" +
                     std::to_string(image.height) + ", the canvas was planned for " +
                     std::to_string(c.in_w) + "x" + std::to_string(c.in_h));
  return pad_reflect(resize(image, c.content_w, c.content_h, ResampleFilter::Lanczos), c);
}

ImageU8 from_model(const ImageU8& result, const EditCanvas& c, int out_w, int out_h) {
  validate_image(result, "edit result");
  if (result.width != c.model_w || result.height != c.model_h)
    throw ImageError("edit geometry: result is " + std::to_string(result.width) + "x" +
                     std::to_string(result.height) + ", expected the model size " +
                     std::to_string(c.model_w) + "x" + std::to_string(c.model_h));
  if (out_w < 1 || out_h < 1) throw ImageError("edit geometry: invalid output size");
  const ImageU8 content = (c.content_w == c.model_w && c.content_h == c.model_h)
                              ? result
                              : crop(result, c.content_x, c.content_y, c.content_w, c.content_h);
  return resize(content, out_w, out_h, ResampleFilter::Lanczos);
}

ImageU8 mask_to_model(const ImageU8& mask, const EditCanvas& c, MaskFilter filter) {
  validate_image(mask, "edit mask");
  if (mask.width != c.in_w || mask.height != c.in_h)
    throw ImageError("edit geometry: the mask is " + std::to_string(mask.width) + "x" +
                     std::to_string(mask.height) + ", the image " + std::to_string(c.in_w) + "x" +
                     std::to_string(c.in_h));
  const ImageU8 content = resize_mask(as_gray(mask), c.content_w, c.content_h, filter);
  if (c.content_w == c.model_w && c.content_h == c.model_h) return content;
  ImageU8 out(c.model_w, c.model_h, 1, 0);
  for (int y = 0; y < c.content_h; ++y)
    std::copy_n(content.row(y), size_t(c.content_w), out.row(y + c.content_y) + c.content_x);
  return out;
}

ImageU8 mask_from_model(const ImageU8& mask, const EditCanvas& c, int out_w, int out_h,
                        MaskFilter filter) {
  validate_image(mask, "edit mask");
  if (mask.width != c.model_w || mask.height != c.model_h)
    throw ImageError("edit geometry: the mask is not the model size");
  const ImageU8 gray = as_gray(mask);
  const ImageU8 content = (c.content_w == c.model_w && c.content_h == c.model_h)
                              ? gray
                              : crop(gray, c.content_x, c.content_y, c.content_w, c.content_h);
  return resize_mask(content, out_w, out_h, filter);
}

ImageU8 resize_nearest(const ImageU8& image, int width, int height) {
  validate_image(image, "image");
  if (width < 1 || height < 1) throw ImageError("resize_nearest: invalid size");
  ImageU8 out(width, height, image.channels);
  const double fx = double(image.width) / width, fy = double(image.height) / height;
  std::vector<int> xs(static_cast<size_t>(width));
  for (int x = 0; x < width; ++x)
    xs[size_t(x)] = std::min(image.width - 1, int(std::floor((x + 0.5) * fx)));
  const size_t ch = size_t(image.channels);
  for (int y = 0; y < height; ++y) {
    const uint8_t* src = image.row(std::min(image.height - 1, int(std::floor((y + 0.5) * fy))));
    uint8_t* dst = out.row(y);
    for (int x = 0; x < width; ++x)
      std::copy_n(src + size_t(xs[size_t(x)]) * ch, ch, dst + size_t(x) * ch);
  }
  return out;
}

}  // namespace qwen::pipelines
