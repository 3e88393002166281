#include "image/ops.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace qwen {

ImageU8 crop(const ImageU8& image, int x, int y, int width, int height) {
  validate_image(image, "crop", {1, 2, 3, 4});
  if (width <= 0 || height <= 0 || x < 0 || y < 0 || x > image.width - width ||
      y > image.height - height) {
    throw ImageError("crop: rectangle " + std::to_string(width) + "x" + std::to_string(height) +
                     "+" + std::to_string(x) + "+" + std::to_string(y) + " is not inside the " +
                     std::to_string(image.width) + "x" + std::to_string(image.height) + " image");
  }
  ImageU8 out(width, height, image.channels);
  const size_t row_bytes = size_t(width) * image.channels;
  for (int r = 0; r < height; ++r) {
    std::memcpy(out.row(r), image.row(y + r) + size_t(x) * image.channels, row_bytes);
  }
  return out;
}

ImageU8 pad_edge(const ImageU8& image, int width, int height, int x, int y) {
  validate_image(image, "pad_edge", {1, 2, 3, 4});
  if (x < 0 || y < 0 || x + image.width > width || y + image.height > height) {
    throw ImageError("pad_edge: a " + std::to_string(image.width) + "x" +
                     std::to_string(image.height) + " image at +" + std::to_string(x) + "+" +
                     std::to_string(y) + " does not fit in " + std::to_string(width) + "x" +
                     std::to_string(height));
  }
  const int ch = image.channels;
  ImageU8 out(width, height, ch);
  for (int r = 0; r < height; ++r) {
    const uint8_t* src = image.row(std::clamp(r - y, 0, image.height - 1));
    uint8_t* dst = out.row(r);
    for (int c = 0; c < width; ++c) {
      const int sx = std::clamp(c - x, 0, image.width - 1);
      std::memcpy(dst + size_t(c) * ch, src + size_t(sx) * ch, size_t(ch));
    }
  }
  return out;
}

}  // namespace qwen
