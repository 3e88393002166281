#include "pipelines/vision_resize.h"

#include <ATen/ATen.h>

#include <cstring>

namespace qwen::pipelines {

ImageU8 torchvision_resize(const ImageU8& rgb, int width, int height) {
  validate_image(rgb, "torchvision resize input", {3});
  if (width <= 0 || height <= 0)
    throw ImageError("torchvision resize: invalid target size " + std::to_string(width) + "x" +
                     std::to_string(height));
  // HWC bytes -> 1x3xHxW contiguous uint8 (transformers: torch.from_numpy(...).permute(2, 0, 1)
  // .contiguous(), then stacked per shape group).
  auto hwc = at::from_blob(const_cast<uint8_t*>(rgb.pixels.data()), {rgb.height, rgb.width, 3},
                           at::TensorOptions().dtype(at::kByte));
  auto x = hwc.permute({2, 0, 1}).contiguous().unsqueeze(0);
  auto y = at::_upsample_bicubic2d_aa(x, {height, width}, /*align_corners=*/false);
  auto out_hwc = y.squeeze(0).permute({1, 2, 0}).contiguous();
  ImageU8 out;
  out.width = width;
  out.height = height;
  out.channels = 3;
  out.pixels.resize(size_t(width) * size_t(height) * 3);
  std::memcpy(out.pixels.data(), out_hwc.data_ptr<uint8_t>(), out.pixels.size());
  return out;
}

VisionResizer torchvision_resizer() { return &torchvision_resize; }

}  // namespace qwen::pipelines
