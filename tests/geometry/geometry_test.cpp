// Edit geometry round trips with an identity stand-in for the model (the "model" returns the
// canvas it was given): Exact mode must give zero shift and zero zoom on the input's pixel grid.
// Measured on synthetic dot patterns (intensity centroids of Gaussian dots at sub-pixel positions)
// over many sizes and aspect ratios; the reference's resize-and-stretch numbers are printed.
#include "pipelines/geometry.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "image/convert.h"
#include "image/resample.h"

namespace qwen::pipelines {
namespace {

constexpr uint8_t kBackground = 40;

struct Dot {
  double x, y;  // pixel-centre coordinates: pixel i covers [i, i+1), centre i + 0.5
};

struct Pattern {
  ImageU8 image;
  std::vector<Dot> dots;
  double sigma;
};

// Gaussian dots on a grid, at sub-pixel positions, kept away from the borders.
Pattern make_pattern(int w, int h) {
  Pattern p;
  p.sigma = std::clamp(std::min(w, h) / 40.0, 1.5, 4.0);
  const double pitch = 12 * p.sigma;
  const int nx = std::max(1, int(w / pitch)), ny = std::max(1, int(h / pitch));
  for (int j = 0; j < ny; ++j)
    for (int i = 0; i < nx; ++i)
      p.dots.push_back({(i + 0.5) * w / nx + 0.31, (j + 0.5) * h / ny - 0.23});
  p.image = ImageU8(w, h, 3, kBackground);
  const double r = 4 * p.sigma;
  for (const auto& d : p.dots) {
    for (int y = std::max(0, int(d.y - r)); y < std::min(h, int(d.y + r) + 1); ++y)
      for (int x = std::max(0, int(d.x - r)); x < std::min(w, int(d.x + r) + 1); ++x) {
        const double dx = x + 0.5 - d.x, dy = y + 0.5 - d.y;
        const double v = 180.0 * std::exp(-(dx * dx + dy * dy) / (2 * p.sigma * p.sigma));
        for (int c = 0; c < 3; ++c) {
          const double k = c == 0 ? 1.0 : c == 1 ? 0.8 : 0.6;
          p.image.at(x, y, c) = uint8_t(std::min(255.0, p.image.at(x, y, c) + k * v + 0.5));
        }
      }
  }
  return p;
}

// Background-subtracted (signed) intensity centroid of channel 0 in a window around `guess`.
Dot centroid(const ImageU8& img, Dot guess, double radius) {
  double sw = 0, sx = 0, sy = 0;
  for (int y = std::max(0, int(guess.y - radius));
       y < std::min(img.height, int(guess.y + radius) + 1); ++y)
    for (int x = std::max(0, int(guess.x - radius));
         x < std::min(img.width, int(guess.x + radius) + 1); ++x) {
      const double wgt = double(img.at(x, y, 0)) - kBackground;
      sw += wgt;
      sx += wgt * (x + 0.5);
      sy += wgt * (y + 0.5);
    }
  return {sx / sw, sy / sw};
}

struct Error {
  double max_shift = 0;  // largest |output - input| centroid distance (input px)
  double zoom_x_px = 0;  // (fitted scale - 1) * width: zoom error across the image (px)
  double zoom_y_px = 0;
  double mean_dx = 0, mean_dy = 0;
};

// Linear fit out = a * in + b on one axis; returns a (1 when the positions do not vary).
double fit_slope(const std::vector<double>& in, const std::vector<double>& out) {
  const double n = double(in.size());
  double mi = 0, mo = 0;
  for (size_t k = 0; k < in.size(); ++k) mi += in[k] / n, mo += out[k] / n;
  double sxy = 0, sxx = 0;
  for (size_t k = 0; k < in.size(); ++k)
    sxy += (in[k] - mi) * (out[k] - mo), sxx += (in[k] - mi) * (in[k] - mi);
  // Not measurable when the dots do not spread along this axis (one row / column of dots).
  return sxx / n > 1.0 ? sxy / sxx : 1.0;
}

Error measure(const Pattern& p, const ImageU8& out) {
  Error e;
  std::vector<double> ix, iy, ox, oy;
  for (const auto& d : p.dots) {
    const Dot a = centroid(p.image, d, 3 * p.sigma);
    const Dot b = centroid(out, d, 3 * p.sigma);
    e.max_shift = std::max(e.max_shift, std::hypot(b.x - a.x, b.y - a.y));
    e.mean_dx += (b.x - a.x) / p.dots.size();
    e.mean_dy += (b.y - a.y) / p.dots.size();
    ix.push_back(a.x), iy.push_back(a.y), ox.push_back(b.x), oy.push_back(b.y);
  }
  e.zoom_x_px = (fit_slope(ix, ox) - 1.0) * p.image.width;
  e.zoom_y_px = (fit_slope(iy, oy) - 1.0) * p.image.height;
  return e;
}

// Where a dot ends up when the reference result (model size) is scaled back UNIFORMLY (by the
// width, top-left anchored, the way a user overlays it without distorting it): the drift the
// aspect change causes. Analytic (pixel-centre mapping of the resamplers).
double reference_uniform_drift(const EditCanvas& c, const std::vector<Dot>& dots) {
  const double sx = c.scale_x(), sy = c.scale_y();
  double worst = 0;
  for (const auto& d : dots) {
    const double y_model = d.y * sy;     // centre-based: (y)*s for coordinates measured from 0
    const double y_back = y_model / sx;  // uniform scale back by the width's factor
    worst = std::max(worst, std::abs(y_back - d.y));
  }
  return worst;
}

struct SizeCase {
  int w, h;
};
const std::vector<SizeCase> kSizes = {
    {1920, 1080}, {800, 1200},  {640, 480},  {1000, 999}, {17, 513},
    {513, 17},    {1024, 1024}, {1023, 767}, {333, 777},  {1280, 720},
    {101, 103},   {2048, 512},  {720, 1281}, {1, 1},      {3, 7},
};

TEST(EditGeometry, ExactCanvasPlan) {
  for (const auto& s : kSizes) {
    const EditCanvas c = plan_exact(s.w, s.h);
    const EditCanvas r = plan_reference(s.w, s.h);
    SCOPED_TRACE(std::to_string(s.w) + "x" + std::to_string(s.h));
    EXPECT_EQ(c.model_w, r.model_w);  // same token count as the reference
    EXPECT_EQ(c.model_h, r.model_h);
    EXPECT_EQ(c.model_w % 32, 0);
    EXPECT_EQ(c.model_h % 32, 0);
    EXPECT_GE(c.content_x, 0);
    EXPECT_GE(c.content_y, 0);
    EXPECT_LE(c.content_x + c.content_w, c.model_w);
    EXPECT_LE(c.content_y + c.content_h, c.model_h);
    // One side fills the canvas; the other is the uniform scale rounded to a whole pixel.
    EXPECT_TRUE(c.content_w == c.model_w || c.content_h == c.model_h);
    EXPECT_LE(std::abs(c.content_w - s.w * std::min(c.scale_x(), c.scale_y())), 0.5 + 1e-9);
    EXPECT_LE(std::abs(c.content_h - s.h * std::min(c.scale_x(), c.scale_y())), 0.5 + 1e-9);
    // Aspect ratio kept to the rounding of the content to whole pixels.
    EXPECT_LE(std::abs(c.aspect_error()), 0.5 / std::min(c.content_w, c.content_h) + 1e-12);
  }
  // The spec's examples.
  EXPECT_EQ(plan_reference(1920, 1080).model_w, 1376);
  EXPECT_EQ(plan_reference(1920, 1080).model_h, 768);
  EXPECT_EQ(plan_reference(640, 480).model_w, 1184);
  EXPECT_EQ(plan_reference(640, 480).model_h, 896);
  const EditCanvas c = plan_exact(1920, 1080);
  EXPECT_EQ(c.content_w, 1365);
  EXPECT_EQ(c.content_h, 768);
  EXPECT_EQ(c.content_x, 5);
  EXPECT_EQ(c.content_y, 0);
}

TEST(EditGeometry, RoundTripWithIdentityModel) {
  std::printf("%-10s | %-32s | %-44s | %s\n", "input", "exact: model, content, shift/zoom px",
              "reference stretch: model, aspect err, aniso px", "ref uniform drift px");
  for (const auto& s : kSizes) {
    if (s.w < 16 || s.h < 16) continue;  // no room for dots
    SCOPED_TRACE(std::to_string(s.w) + "x" + std::to_string(s.h));
    const Pattern p = make_pattern(s.w, s.h);

    const EditCanvas c = plan_exact(s.w, s.h);
    const ImageU8 canvas = to_model(p.image, c);
    ASSERT_EQ(canvas.width, c.model_w);
    ASSERT_EQ(canvas.height, c.model_h);
    const ImageU8 back = from_model(canvas, c);  // identity model
    ASSERT_EQ(back.width, s.w);
    ASSERT_EQ(back.height, s.h);
    const Error e = measure(p, back);
    EXPECT_LT(e.max_shift, 0.05);
    EXPECT_LT(std::abs(e.zoom_x_px), 0.05);
    EXPECT_LT(std::abs(e.zoom_y_px), 0.05);

    const EditCanvas r = plan_reference(s.w, s.h);
    const ImageU8 rback = from_model(to_model(p.image, r), r);
    const Error er = measure(p, rback);
    std::printf(
        "%4dx%-5d | %4dx%-4d %4dx%-4d %.3f/%.3f | %4dx%-4d stretch rt %.3f, %+.2f%%, %.2f px | "
        "%.2f\n",
        s.w, s.h, c.model_w, c.model_h, c.content_w, c.content_h, e.max_shift,
        std::max(std::abs(e.zoom_x_px), std::abs(e.zoom_y_px)), r.model_w, r.model_h, er.max_shift,
        100 * r.aspect_error(), r.anisotropy_px(), reference_uniform_drift(r, p.dots));
  }
}

TEST(EditGeometry, PaddingIsReflection) {
  ImageU8 img(10, 4, 3);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 10; ++x)
      for (int c = 0; c < 3; ++c) img.at(x, y, c) = uint8_t(x * 20 + y * 3 + c);
  EditCanvas c;
  c.in_w = 10, c.in_h = 4, c.model_w = 10, c.model_h = 12, c.content_w = 10, c.content_h = 4;
  c.content_y = 4, c.padded = true;
  const ImageU8 out = to_model(img, c);
  // Rows around the content (rows 4..7): reflect_101 with period 6 -> content rows
  //   y=0..11 -> -4..7 -> 2,3,2,1,0,1,2,3,2,1,0,1
  const int expect[12] = {2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1};
  for (int y = 0; y < 12; ++y)
    for (int x = 0; x < 10; ++x) EXPECT_EQ(out.at(x, y, 1), img.at(x, expect[y], 1)) << y;
  // The padding never reaches the result.
  ImageU8 poisoned = out;
  for (int y = 0; y < 12; ++y)
    if (y < 4 || y >= 8)
      for (int x = 0; x < 10; ++x) poisoned.at(x, y, 0) = 255;
  EXPECT_EQ(from_model(poisoned, c).pixels, img.pixels);
}

TEST(EditGeometry, SameSizeIsLossless) {
  // An input that already has the model's size and aspect maps 1:1 both ways.
  const Pattern p = make_pattern(1024, 1024);
  const EditCanvas c = plan_exact(1024, 1024);
  EXPECT_EQ(c.content_w, 1024);
  EXPECT_EQ(to_model(p.image, c).pixels, p.image.pixels);
  EXPECT_EQ(from_model(p.image, c).pixels, p.image.pixels);
}

// Mask with rectangles (white = repaint).
ImageU8 rect_mask(int w, int h) {
  ImageU8 m(w, h, 1, 0);
  auto fill = [&](int x0, int y0, int x1, int y1) {
    for (int y = std::max(0, y0); y < std::min(h, y1); ++y)
      for (int x = std::max(0, x0); x < std::min(w, x1); ++x) m.at(x, y, 0) = 255;
  };
  fill(w / 5, h / 4, w / 2, h / 2);
  fill(3 * w / 5, 3 * h / 5, 9 * w / 10, 9 * h / 10);
  return m;
}

Dot mask_centroid(const ImageU8& m) {
  double n = 0, sx = 0, sy = 0;
  for (int y = 0; y < m.height; ++y)
    for (int x = 0; x < m.width; ++x)
      if (m.at(x, y, 0) >= 128) n += 1, sx += x + 0.5, sy += y + 0.5;
  return {sx / n, sy / n};
}

TEST(EditGeometry, MaskThroughTheSameCanvas) {
  for (const auto& s : kSizes) {
    if (s.w < 16 || s.h < 16) continue;
    SCOPED_TRACE(std::to_string(s.w) + "x" + std::to_string(s.h));
    const ImageU8 mask = rect_mask(s.w, s.h);
    const EditCanvas c = plan_exact(s.w, s.h);
    for (MaskFilter f : {MaskFilter::Lanczos, MaskFilter::Nearest}) {
      const ImageU8 mm = mask_to_model(mask, c, f);
      ASSERT_EQ(mm.channels, 1);
      ASSERT_EQ(mm.width, c.model_w);
      ASSERT_EQ(mm.height, c.model_h);
      // Binary, and nothing outside the content is repainted.
      for (int y = 0; y < mm.height; ++y)
        for (int x = 0; x < mm.width; ++x) {
          const uint8_t v = mm.at(x, y, 0);
          ASSERT_TRUE(v == 0 || v == 255);
          const bool inside = x >= c.content_x && x < c.content_x + c.content_w &&
                              y >= c.content_y && y < c.content_y + c.content_h;
          if (!inside) {
            ASSERT_EQ(v, 0);
          }
        }
      // Aligned with the image: the Lanczos mask equals the thresholded canvas of the same
      // rectangles sent through the image path.
      if (f == MaskFilter::Lanczos) {
        const ImageU8 as_image = to_gray(to_model(to_rgb(mask), c));
        for (int y = c.content_y; y < c.content_y + c.content_h; ++y)
          for (int x = c.content_x; x < c.content_x + c.content_w; ++x)
            ASSERT_EQ(mm.at(x, y, 0), as_image.at(x, y, 0) >= 128 ? 255 : 0) << x << "," << y;
      }
      // Round trip: a binary mask can only put its edges on the model's pixel grid, so the
      // centroid is within half a model pixel (Lanczos: edges where the resampled mask crosses
      // 50 %) / one model pixel (nearest).
      const ImageU8 back = mask_from_model(mm, c, s.w, s.h, f);
      ASSERT_EQ(back.width, s.w);
      ASSERT_EQ(back.height, s.h);
      const Dot a = mask_centroid(mask), b = mask_centroid(back);
      const double model_px = 1.0 / std::min(c.scale_x(), c.scale_y());
      const double tol =
          f == MaskFilter::Lanczos ? 0.5 * std::max(1.0, model_px) + 0.05 : model_px + 0.5;
      EXPECT_LT(std::abs(a.x - b.x), tol);
      EXPECT_LT(std::abs(a.y - b.y), tol);
    }
  }
}

TEST(EditGeometry, NearestMatchesPilConvention) {
  // PIL NEAREST: source index floor((x + 0.5) * in / out).
  ImageU8 img(5, 1, 1);
  for (int x = 0; x < 5; ++x) img.at(x, 0, 0) = uint8_t(x * 10);
  const ImageU8 up = resize_nearest(img, 8, 1);
  const int expect[8] = {0, 0, 10, 20, 20, 30, 40, 40};  // floor((x + .5) * 0.625) * 10
  for (int x = 0; x < 8; ++x) EXPECT_EQ(up.at(x, 0, 0), expect[x]) << x;
}

TEST(EditGeometry, RejectsMismatchedSizes) {
  const EditCanvas c = plan_exact(100, 50);
  EXPECT_THROW(to_model(ImageU8(99, 50, 3), c), ImageError);
  EXPECT_THROW(from_model(ImageU8(100, 50, 3), c), ImageError);
  EXPECT_THROW(mask_to_model(ImageU8(100, 51, 1), c), ImageError);
  EXPECT_THROW(plan_exact(0, 5), ImageError);
}

}  // namespace
}  // namespace qwen::pipelines
