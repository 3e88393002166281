// PNG reading and writing (libpng). Torch-free.
//
// Reading follows what PIL + `.convert()` give for 8-bit data so that images read here match the
// reference pipelines' PIL images:
//  * 1/2/4/8-bit gray -> 1 channel (low bit depths scaled to 0..255, as PIL does)
//  * gray + alpha      -> 4 channels (RGBA, gray replicated)
//  * RGB               -> 3 channels, RGBA -> 4 channels
//  * palette           -> RGB, or RGBA when the file has a tRNS chunk
//  * gray/RGB with a tRNS colour key -> 4 channels (key colour gets alpha 0)
//  * 16-bit samples    -> the high byte (what PIL does for 16-bit RGB/RGBA; use read_png16 to keep
//                         all 16 bits)
// Gamma / colour-profile chunks are ignored (PIL ignores them too).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "image/image.h"

namespace qwen {

// Reads a PNG file. Throws ImageError (missing file, not a PNG, truncated or corrupt data,
// absurd dimensions) naming the path.
ImageU8 read_png(const std::string& path);
// Same, from an in-memory PNG; `label` names the source in error messages.
ImageU8 decode_png(const uint8_t* data, size_t size, const std::string& label = "PNG data");

// Reads keeping 16-bit samples (8-bit sources are widened with v * 257). Channels 1..4 (2 = gray
// + alpha, palette -> 3 or 4).
ImageU16 read_png16(const std::string& path);

// Writes an 8-bit PNG: 1 channel gray, 2 gray + alpha, 3 RGB, 4 RGBA. Throws ImageError when the
// image is invalid or the file cannot be created/written (the message has the reason from the OS).
void write_png(const std::string& path, const ImageU8& image);
std::vector<uint8_t> encode_png(const ImageU8& image);

// True when the first bytes are the PNG signature.
bool is_png(const uint8_t* data, size_t size);

}  // namespace qwen
