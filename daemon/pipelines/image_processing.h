// Torch side of the pipelines' image pre/post-processing (diffusers VaeImageProcessor with
// vae_scale_factor 16, resample LANCZOS), bit-compatible with the reference:
//   preprocess_image : (LANCZOS resize) -> float32 u8/255 -> NCHW -> 2x - 1
//   preprocess_mask  : LANCZOS resize in the mask's own mode -> convert("L") -> /255 -> binarise
//   postprocess      : (x * 0.5 + 0.5).clamp(0, 1) in x's dtype -> float32 -> round(x * 255) with
//                      round-half-to-even -> uint8 RGB
#pragma once

#include <torch/torch.h>

#include <vector>

#include "image/geometry.h"
#include "image/image.h"

namespace qwen::pipelines {

// Default pixel multiple of the Qwen-Image pipelines (vae_scale_factor 8 * 2).
constexpr int kPixelMultiple = 16;

// Floors width/height to multiples of 16 (VaeImageProcessor.get_default_height_width). Throws
// ImageError when a side would become 0.
Size vae_input_size(int width, int height);

// One RGB image -> [1, 3, H, W] float32 in [-1, 1], resized with PIL LANCZOS to
// vae_input_size(width, height) when its size differs (width/height 0 = the image's own size).
// 1-channel images are replicated to RGB; RGBA images have their alpha dropped (PIL
// convert("RGB"); composite first if transparency matters).
torch::Tensor preprocess_image(const ImageU8& image, int width = 0, int height = 0);

// The inpaint mask processor: [1, 1, H, W] float32 of 0/1 (1 = repaint where the resized gray
// value >= 0.5). Any channel count; RGB(A) masks are converted to gray after resizing, as PIL does.
torch::Tensor preprocess_mask(const ImageU8& mask, int width, int height);

// (x * 0.5 + 0.5).clamp(0, 1) computed in x's dtype (bf16 stays bf16): the float image the
// reference returns for output_type="pt". x: [B, 3, H, W].
torch::Tensor denormalize_image(const torch::Tensor& x);

// [B, 3, H, W] decoder output in [-1, 1] -> B RGB images (numpy_to_pil rounding).
std::vector<ImageU8> postprocess(const torch::Tensor& x);
// [B, 3, H, W] image in [0, 1] (any dtype) -> B RGB images: float32(x) * 255, round half to even.
std::vector<ImageU8> to_images(const torch::Tensor& x01);

}  // namespace qwen::pipelines
