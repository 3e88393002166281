// Plain pixel containers shared by the engine, the CLI and the daemon. No torch here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace qwen {

// Interleaved 8-bit image, row-major, no padding. channels: 1 (mask / gray), 3 (RGB) or 4 (RGBA).
struct ImageU8 {
  int width = 0;
  int height = 0;
  int channels = 3;
  std::vector<uint8_t> pixels;  // width * height * channels

  bool empty() const { return width == 0 || height == 0; }
  size_t size_bytes() const { return size_t(width) * size_t(height) * size_t(channels); }
  uint8_t* row(int y) { return pixels.data() + size_t(y) * size_t(width) * size_t(channels); }
  const uint8_t* row(int y) const {
    return pixels.data() + size_t(y) * size_t(width) * size_t(channels);
  }
};

}  // namespace qwen
