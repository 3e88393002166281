// Pixel format conversions between the wire formats and interleaved 8-bit buffers (torch-free,
// Boost-free; fuzzed together with the request validation).
#pragma once

#include <cstddef>
#include <cstdint>

#include "qwen_image/protocol.h"

namespace qwen::ipc::pixels {

// Reads the image described by `d` (already validated against the segment at `base`) into a packed
// 8-bit buffer of `out_channels` (1, 3 or 4) channels: floats are clamped to 0..1 (NaN -> 0),
// missing alpha becomes 255, gray is replicated, colour to gray takes the first channel.
void to_u8(const uint8_t* base, const proto::ImageDesc& d, int out_channels, uint8_t* out);

// Writes a packed 8-bit image with `src_channels` (1, 3 or 4) into `dst`, packed, in `format`.
// Missing alpha becomes opaque (255 or 1.0).
void from_u8(const uint8_t* src, int width, int height, int src_channels, PixelFormat format,
             uint8_t* dst);

// Box-downscales a packed RGB8 image so that it fits in max_side x max_side (aspect kept).
void downscale_rgb8(const uint8_t* src, int w, int h, int max_side, uint8_t* dst, int* out_w,
                    int* out_h);

}  // namespace qwen::ipc::pixels
