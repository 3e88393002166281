// Image resizing that reproduces PIL's Image.resize bit for bit on 8-bit images (Pillow's
// ImagingResample: separable convolution, horizontal pass then vertical pass (vertical first when
// the height shrinks by more than twice as many pixels as the width, as Pillow >= 13), filter support
// scaled by the reduction factor when shrinking, coefficients normalised and converted to 22-bit
// fixed point, results clipped to 0..255). RGBA / gray+alpha images are resized premultiplied and
// un-premultiplied afterwards, like PIL does for modes RGBA / LA. Torch-free.
#pragma once

#include <string>

#include "image/image.h"

namespace qwen {

enum class ResampleFilter { Box, Bilinear, Hamming, Bicubic, Lanczos };
const char* to_string(ResampleFilter);

// Which Pillow's pass order to reproduce: Pillow >= 13 runs the vertical pass first when the
// height shrinks by more than twice as many pixels as the width (python-pillow/Pillow#9549);
// Pillow <= 12.3 always runs the horizontal pass first. The results differ in the 8-bit rounding
// between the passes. Default: 13, the pinned reference (tests/reference/README.md).
enum class PillowOrder { Pillow13, Pillow12 };

// Resizes to width x height. Same size returns a copy (as PIL does). Throws ImageError on an
// invalid image or a non-positive target size.
ImageU8 resize(const ImageU8& image, int width, int height, ResampleFilter filter,
               PillowOrder order = PillowOrder::Pillow13);

}  // namespace qwen
