#include "pipelines/image_processing.h"

#include <cstring>
#include <sstream>

#include "image/convert.h"
#include "image/resample.h"

namespace qwen::pipelines {

Size vae_input_size(int width, int height) {
  if (width <= 0 || height <= 0) {
    throw ImageError("invalid image size " + std::to_string(width) + "x" + std::to_string(height));
  }
  return floor_to_multiple(Size{width, height}, kPixelMultiple);
}

namespace {

ImageU8 resized(const ImageU8& image, int width, int height, const char* what) {
  validate_image(image, what, {1, 2, 3, 4});
  const Size s =
      vae_input_size(width > 0 ? width : image.width, height > 0 ? height : image.height);
  return resize(image, s.width, s.height, ResampleFilter::Lanczos);
}

}  // namespace

torch::Tensor preprocess_image(const ImageU8& image, int width, int height) {
  const ImageU8 rgb = to_rgb(resized(image, width, height, "input image"));
  torch::Tensor u8 = torch::from_blob(const_cast<uint8_t*>(rgb.pixels.data()),
                                      {rgb.height, rgb.width, 3}, torch::kUInt8);
  torch::Tensor x = u8.to(torch::kFloat) / 255.0f;  // numpy: float32 array / 255.0
  x = x.permute({2, 0, 1}).unsqueeze(0).contiguous();
  return 2.0 * x - 1.0;
}

torch::Tensor preprocess_mask(const ImageU8& mask, int width, int height) {
  const ImageU8 gray = to_gray(resized(mask, width, height, "mask"));
  torch::Tensor u8 = torch::from_blob(const_cast<uint8_t*>(gray.pixels.data()),
                                      {1, 1, gray.height, gray.width}, torch::kUInt8);
  const torch::Tensor x = u8.to(torch::kFloat) / 255.0f;
  return (x >= 0.5f).to(torch::kFloat);
}

torch::Tensor denormalize_image(const torch::Tensor& x) { return (x * 0.5 + 0.5).clamp(0, 1); }

std::vector<ImageU8> to_images(const torch::Tensor& x01) {
  if (x01.dim() != 4 || x01.size(1) != 3) {
    std::ostringstream os;
    os << "to_images: expected [B, 3, H, W], got " << x01.sizes();
    throw std::invalid_argument(os.str());
  }
  const torch::Tensor u8 = (x01.to(torch::kCPU, torch::kFloat) * 255.0f)
                               .round()
                               .clamp(0, 255)
                               .to(torch::kUInt8)
                               .permute({0, 2, 3, 1})
                               .contiguous();
  std::vector<ImageU8> out;
  for (int64_t b = 0; b < u8.size(0); ++b) {
    ImageU8 img(int(u8.size(2)), int(u8.size(1)), 3);
    std::memcpy(img.pixels.data(), u8[b].data_ptr<uint8_t>(), img.pixels.size());
    out.push_back(std::move(img));
  }
  return out;
}

std::vector<ImageU8> postprocess(const torch::Tensor& x) { return to_images(denormalize_image(x)); }

}  // namespace qwen::pipelines
