// Plain pixel containers shared by the engine, the CLI and the daemon. No torch here.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace qwen {

// Every problem with an image (unreadable / broken file, unsupported layout, bad size). what() says
// which file or which argument and what is wrong.
struct ImageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Interleaved 8-bit image, row-major, no padding. channels: 1 (mask / gray), 3 (RGB) or 4 (RGBA).
struct ImageU8 {
  int width = 0;
  int height = 0;
  int channels = 3;
  std::vector<uint8_t> pixels;  // width * height * channels

  ImageU8() = default;
  ImageU8(int w, int h, int c, uint8_t fill = 0)
      : width(w), height(h), channels(c), pixels(size_t(w) * size_t(h) * size_t(c), fill) {}

  bool empty() const { return width == 0 || height == 0; }
  size_t size_bytes() const { return size_t(width) * size_t(height) * size_t(channels); }
  uint8_t* row(int y) { return pixels.data() + size_t(y) * size_t(width) * size_t(channels); }
  const uint8_t* row(int y) const {
    return pixels.data() + size_t(y) * size_t(width) * size_t(channels);
  }
  uint8_t& at(int x, int y, int c) { return row(y)[size_t(x) * channels + c]; }
  uint8_t at(int x, int y, int c) const { return row(y)[size_t(x) * channels + c]; }
};

// Interleaved 16-bit image (host byte order), same layout rules as ImageU8; channels 1..4
// (2 = gray + alpha). Produced by read_png16 for 16-bit sources.
struct ImageU16 {
  int width = 0;
  int height = 0;
  int channels = 3;
  std::vector<uint16_t> pixels;

  bool empty() const { return width == 0 || height == 0; }
  size_t size_values() const { return size_t(width) * size_t(height) * size_t(channels); }
};

// Throws ImageError naming `what` when the image is empty, has an unsupported channel count (not
// one of `allowed`), or its pixel buffer does not match width * height * channels.
void validate_image(const ImageU8& image, const std::string& what,
                    const std::vector<int>& allowed = {1, 3, 4});

}  // namespace qwen
