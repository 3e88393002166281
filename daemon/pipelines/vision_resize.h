// The torch half of the Qwen2-VL image processor's Torchvision backend (image/vision_processor.h):
// torchvision.transforms.v2.functional.resize(uint8 CPU tensor, [h, w], BICUBIC, antialias=True),
// which on a CPU uint8 tensor runs aten::_upsample_bicubic2d_aa natively (separable, a = -0.5,
// integer weights, rounding and clipping inside the kernel; no float round trip).
#pragma once

#include "image/image.h"
#include "image/vision_processor.h"

namespace qwen::pipelines {

// Resizes an 8-bit RGB image (1x3xHxW uint8 on the CPU, as transformers' TorchvisionBackend makes
// it from a PIL image) with at::_upsample_bicubic2d_aa(x, {height, width}, align_corners=false).
ImageU8 torchvision_resize(const ImageU8& rgb, int width, int height);

// torchvision_resize as the VisionResizer preprocess_vision takes.
VisionResizer torchvision_resizer();

}  // namespace qwen::pipelines
