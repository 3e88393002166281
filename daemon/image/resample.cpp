#include "image/resample.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "image/convert.h"

namespace qwen {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

double box_filter(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }
double bilinear_filter(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}
double hamming_filter(double x) {
  if (x < 0.0) x = -x;
  if (x == 0.0) return 1.0;
  if (x >= 1.0) return 0.0;
  x = x * M_PI;
  return std::sin(x) / x * (0.54f + 0.46f * std::cos(x));
}
double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}
double sinc_filter(double x) {
  if (x == 0.0) return 1.0;
  x = x * M_PI;
  return std::sin(x) / x;
}
double lanczos_filter(double x) {
  if (-3.0 <= x && x < 3.0) return sinc_filter(x) * sinc_filter(x / 3);
  return 0.0;
}

struct Filter {
  double (*fn)(double);
  double support;
};

Filter filter_for(ResampleFilter f) {
  switch (f) {
    case ResampleFilter::Box:
      return {box_filter, 0.5};
    case ResampleFilter::Bilinear:
      return {bilinear_filter, 1.0};
    case ResampleFilter::Hamming:
      return {hamming_filter, 1.0};
    case ResampleFilter::Bicubic:
      return {bicubic_filter, 2.0};
    case ResampleFilter::Lanczos:
      return {lanczos_filter, 3.0};
  }
  throw ImageError("unknown resampling filter");
}

// Fixed-point coefficients for one axis (Pillow's precompute_coeffs + normalize_coeffs_8bpc).
struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;  // per output: xmin, count
  std::vector<int> k;       // outSize * ksize
};

Coeffs precompute(int in_size, int out_size, const Filter& filter) {
  const float in0 = 0.0f, in1 = float(in_size);
  double scale = double(in1 - in0) / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = filter.support * filterscale;
  Coeffs c;
  c.ksize = int(std::ceil(support)) * 2 + 1;
  c.bounds.resize(size_t(out_size) * 2);
  c.k.assign(size_t(out_size) * c.ksize, 0);
  std::vector<double> kk(size_t(c.ksize));
  const double inv_filterscale = 1.0 / filterscale;
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    double ww = 0.0;
    int xmin = int(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = int(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    for (int x = 0; x < xmax; ++x) {
      const double w = filter.fn((x + xmin - center + 0.5) * inv_filterscale);
      kk[x] = w;
      ww += w;
    }
    if (ww != 0.0) {
      for (int x = 0; x < xmax; ++x) kk[x] /= ww;
    }
    for (int x = 0; x < xmax; ++x) {
      const double v = kk[x];
      c.k[size_t(xx) * c.ksize + x] =
          v < 0 ? int(-0.5 + v * (1 << kPrecisionBits)) : int(0.5 + v * (1 << kPrecisionBits));
    }
    c.bounds[size_t(xx) * 2] = xmin;
    c.bounds[size_t(xx) * 2 + 1] = xmax;
  }
  return c;
}

inline uint8_t clip8(int v) {
  const int s = v >> kPrecisionBits;  // arithmetic shift (C++20)
  return uint8_t(s < 0 ? 0 : s > 255 ? 255 : s);
}

// Horizontal pass over source rows [y0, y0 + rows).
ImageU8 horizontal(const ImageU8& in, int out_w, int y0, int rows, const Coeffs& c) {
  const int ch = in.channels;
  ImageU8 out(out_w, rows, ch);
  for (int yy = 0; yy < rows; ++yy) {
    const uint8_t* src = in.row(y0 + yy);
    uint8_t* dst = out.row(yy);
    for (int xx = 0; xx < out_w; ++xx) {
      const int xmin = c.bounds[size_t(xx) * 2], xmax = c.bounds[size_t(xx) * 2 + 1];
      const int* k = &c.k[size_t(xx) * c.ksize];
      for (int b = 0; b < ch; ++b) {
        int ss = 1 << (kPrecisionBits - 1);
        for (int x = 0; x < xmax; ++x) ss += src[size_t(x + xmin) * ch + b] * k[x];
        dst[size_t(xx) * ch + b] = clip8(ss);
      }
    }
  }
  return out;
}

ImageU8 vertical(const ImageU8& in, int out_h, const Coeffs& c, int row_offset) {
  const int ch = in.channels;
  const size_t stride = size_t(in.width) * ch;
  ImageU8 out(in.width, out_h, ch);
  for (int yy = 0; yy < out_h; ++yy) {
    const int ymin = c.bounds[size_t(yy) * 2] - row_offset, ymax = c.bounds[size_t(yy) * 2 + 1];
    const int* k = &c.k[size_t(yy) * c.ksize];
    uint8_t* dst = out.row(yy);
    for (size_t i = 0; i < stride; ++i) {
      int ss = 1 << (kPrecisionBits - 1);
      const uint8_t* src = in.pixels.data() + size_t(ymin) * stride + i;
      for (int y = 0; y < ymax; ++y) ss += src[size_t(y) * stride] * k[y];
      dst[i] = clip8(ss);
    }
  }
  return out;
}

ImageU8 resample(const ImageU8& in, int width, int height, const Filter& filter,
                 PillowOrder order) {
  const bool need_h = width != in.width;
  const bool need_v = height != in.height;
  // Pillow >= 13 (python-pillow/Pillow#9549, ImagingResampleInner): when the height shrinks by
  // more than twice as many pixels as the width, the vertical pass runs first. The 8-bit rounding
  // between the passes then differs from the horizontal-first order of Pillow <= 12.3 (up to tens
  // of levels on noisy images). The engine follows the pinned reference (Pillow 13.0.0).
  const int dh = in.height - height, dw = in.width - width;
  if (order == PillowOrder::Pillow13 && need_h && need_v && dh > 0 && dh > 2 * dw) {
    const Coeffs cv = precompute(in.height, height, filter);
    ImageU8 tmp = vertical(in, height, cv, 0);
    const Coeffs chz = precompute(in.width, width, filter);
    return horizontal(tmp, width, 0, height, chz);
  }
  Coeffs cv = precompute(in.height, height, filter);
  const int ybox_first = cv.bounds[0];
  const int ybox_last = cv.bounds[size_t(height) * 2 - 2] + cv.bounds[size_t(height) * 2 - 1];
  if (need_h) {
    Coeffs chz = precompute(in.width, width, filter);
    ImageU8 tmp = horizontal(in, width, ybox_first, ybox_last - ybox_first, chz);
    if (!need_v) return tmp;
    return vertical(tmp, height, cv, ybox_first);
  }
  if (need_v) return vertical(in, height, cv, 0);
  return in;
}

}  // namespace

const char* to_string(ResampleFilter f) {
  switch (f) {
    case ResampleFilter::Box:
      return "box";
    case ResampleFilter::Bilinear:
      return "bilinear";
    case ResampleFilter::Hamming:
      return "hamming";
    case ResampleFilter::Bicubic:
      return "bicubic";
    case ResampleFilter::Lanczos:
      return "lanczos";
  }
  return "?";
}

ImageU8 resize(const ImageU8& image, int width, int height, ResampleFilter filter,
               PillowOrder order) {
  validate_image(image, "resize", {1, 2, 3, 4});
  if (width <= 0 || height <= 0) {
    throw ImageError("resize: target size must be positive, got " + std::to_string(width) + "x" +
                     std::to_string(height));
  }
  if (width == image.width && height == image.height) return image;
  const Filter f = filter_for(filter);
  if (image.channels == 2 || image.channels == 4) {
    // PIL resizes RGBA as RGBa (premultiplied) and LA as La.
    return unpremultiply_alpha(resample(premultiply_alpha(image), width, height, f, order));
  }
  return resample(image, width, height, f, order);
}

}  // namespace qwen
