#include "image/geometry.h"

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <string>

#include "image/image.h"

namespace qwen {

double python_round(double x) {
  // Round half to even independently of the current floating-point rounding mode.
  const double f = std::floor(x);
  const double d = x - f;
  if (d > 0.5) return f + 1.0;
  if (d < 0.5) return f;
  return std::fmod(f, 2.0) == 0.0 ? f : f + 1.0;
}

Size calculate_dimensions(double target_area, double ratio) {
  if (!(ratio > 0.0) || !std::isfinite(ratio) || !(target_area > 0.0)) {
    throw ImageError("calculate_dimensions: invalid aspect ratio " + std::to_string(ratio) +
                     " or area " + std::to_string(target_area));
  }
  const double w = std::sqrt(target_area * ratio);
  const double h = w / ratio;
  Size s{int(python_round(w / 32.0)) * 32, int(python_round(h / 32.0)) * 32};
  if (s.width <= 0 || s.height <= 0) {
    throw ImageError("calculate_dimensions: aspect ratio " + std::to_string(ratio) +
                     " is too extreme (a side rounds to 0 pixels)");
  }
  return s;
}

Size calculate_dimensions(double target_area, int width, int height) {
  if (width <= 0 || height <= 0) {
    throw ImageError("calculate_dimensions: invalid image size " + std::to_string(width) + "x" +
                     std::to_string(height));
  }
  return calculate_dimensions(target_area, double(width) / double(height));
}

Size floor_to_multiple(Size size, int factor) {
  Size s{size.width - size.width % factor, size.height - size.height % factor};
  if (s.width <= 0 || s.height <= 0) {
    throw ImageError("size " + std::to_string(size.width) + "x" + std::to_string(size.height) +
                     " is smaller than the minimum of " + std::to_string(factor) +
                     " pixels per side");
  }
  return s;
}

Size smart_resize(int height, int width, int factor, int64_t min_pixels, int64_t max_pixels) {
  if (height <= 0 || width <= 0) {
    throw ImageError("smart_resize: invalid image size " + std::to_string(width) + "x" +
                     std::to_string(height));
  }
  if (double(std::max(height, width)) / double(std::min(height, width)) > 200.0) {
    throw ImageError("image aspect ratio must be at most 200:1, got " + std::to_string(width) +
                     "x" + std::to_string(height));
  }
  int64_t h_bar = int64_t(python_round(double(height) / factor)) * factor;
  int64_t w_bar = int64_t(python_round(double(width) / factor)) * factor;
  if (h_bar * w_bar > max_pixels) {
    const double beta = std::sqrt(double(height) * double(width) / double(max_pixels));
    h_bar = std::max<int64_t>(factor, int64_t(std::floor(height / beta / factor)) * factor);
    w_bar = std::max<int64_t>(factor, int64_t(std::floor(width / beta / factor)) * factor);
  } else if (h_bar * w_bar < min_pixels) {
    const double beta = std::sqrt(double(min_pixels) / (double(height) * double(width)));
    h_bar = int64_t(std::ceil(height * beta / factor)) * factor;
    w_bar = int64_t(std::ceil(width * beta / factor)) * factor;
  }
  if (h_bar <= 0 || w_bar <= 0) {
    throw ImageError("smart_resize: image " + std::to_string(width) + "x" + std::to_string(height) +
                     " is too small");
  }
  return Size{int(w_bar), int(h_bar)};
}

}  // namespace qwen
