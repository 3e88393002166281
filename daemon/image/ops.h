// Small pixel operations used around the pipelines (GeometryMode::Exact: pad to the model size,
// crop the padding off afterwards). Torch-free.
#pragma once

#include "image/image.h"

namespace qwen {

// The rectangle [x, x + width) x [y, y + height); throws ImageError when it is empty or not
// inside the image.
ImageU8 crop(const ImageU8& image, int x, int y, int width, int height);

// Extends the image to width x height (>= its size) by placing it at (x, y) and replicating the
// nearest edge pixel into the new border (no new colours at the seams). Throws ImageError when
// the image does not fit.
ImageU8 pad_edge(const ImageU8& image, int width, int height, int x = 0, int y = 0);

}  // namespace qwen
