// Channel conversions with PIL's exact integer arithmetic. Torch-free.
#pragma once

#include "image/image.h"

namespace qwen {

// PIL convert("L"): 1 channel. RGB(A) uses ITU-R 601-2 luma in PIL's fixed point
// ((R*19595 + G*38470 + B*7471 + 0x8000) >> 16); alpha is dropped; gray is copied.
ImageU8 to_gray(const ImageU8& image);

// PIL convert("RGB"): 3 channels. Alpha is dropped (not composited); gray is replicated.
ImageU8 to_rgb(const ImageU8& image);

// transformers' image_transforms.convert_to_rgb: an image with alpha is alpha-composited over an
// opaque white background (PIL Image.alpha_composite arithmetic), then the alpha is dropped. RGB
// input is returned unchanged, gray is replicated.
ImageU8 composite_on_white(const ImageU8& image);

// PIL RGBA <-> RGBa (and LA <-> La): colour channels multiplied / divided by alpha in PIL's
// integer arithmetic. 2- or 4-channel images only.
ImageU8 premultiply_alpha(const ImageU8& image);
ImageU8 unpremultiply_alpha(const ImageU8& image);

}  // namespace qwen
