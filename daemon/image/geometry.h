// Size arithmetic of the reference pipelines / processors, with Python's rounding. Torch-free.
#pragma once

#include <cstdint>

namespace qwen {

struct Size {
  int width = 0;
  int height = 0;
  bool operator==(const Size&) const = default;
};

// Python 3 round(x) for floats: nearest integer, ties to even (std::round rounds ties away).
double python_round(double x);

// diffusers' calculate_dimensions(target_area, ratio) (Edit pipelines), ratio = width / height:
//   w = sqrt(area * ratio); h = w / ratio; w = round(w / 32) * 32; h = round(h / 32) * 32.
// Throws ImageError when the ratio is not positive or a side rounds to 0 (extreme aspect ratios).
Size calculate_dimensions(double target_area, double ratio);
// Convenience: ratio of an image of the given size.
Size calculate_dimensions(double target_area, int width, int height);

// The size VaeImageProcessor.preprocess/resize uses: each side floored to a multiple of `factor`
// (16 for Qwen-Image). Throws ImageError when a side becomes 0.
Size floor_to_multiple(Size size, int factor);

// Qwen2-VL smart_resize(height, width, factor, min_pixels, max_pixels) -> (height, width) as a
// Size. Throws ImageError for an aspect ratio above 200 or a degenerate input size.
Size smart_resize(int height, int width, int factor = 28, int64_t min_pixels = 56 * 56,
                  int64_t max_pixels = 14 * 14 * 4 * 1280);

}  // namespace qwen
