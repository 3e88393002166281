// Qwen2-VL image processor, torch-free, with the two backends of transformers 5:
// * Torchvision (default; Qwen2VLImageProcessor, what the Edit pipelines' from_pretrained gives):
//   convert to RGB -> smart_resize -> torch's antialiased bicubic on uint8
//   (aten::_upsample_bicubic2d_aa, supplied by the caller as a VisionResizer: the torch layer,
//   pipelines/vision_resize.h) -> fused rescale + normalize in float32,
//   (x - mean * (1 / rescale_factor)) / (std * (1 / rescale_factor)) (TorchvisionBackend.
//   rescale_and_normalize).
// * Pil (Qwen2VLImageProcessorPil; transformers 4's slow Qwen2VLImageProcessor): convert to RGB
//   (alpha composited on white) -> smart_resize -> PIL BICUBIC resize -> x * (1/255) (float64,
//   stored float32) -> (x - mean) / std (float32).
// Both then duplicate the frame to temporal_patch_size and flatten to patch rows ordered by 2x2
// merge block, each row (c, t, y, x).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "image/geometry.h"
#include "image/image.h"
#include "image/resample.h"

namespace qwen {

// Which transformers image processor to reproduce. preprocessor_config.json cannot say (both read
// the same file): an engine option (EngineOptions::vision_processor).
enum class VisionBackend { Torchvision, Pil };
const char* to_string(VisionBackend);  // "torchvision" / "pil"
// "torchvision" / "pil"; throws ImageError naming the value and the choices otherwise.
VisionBackend parse_vision_backend(const std::string& name);

// Resizes an 8-bit RGB image to width x height the way torchvision does for a CPU uint8 tensor
// (the Torchvision backend's resize; image/ stays torch-free, the torch layer supplies it).
using VisionResizer = std::function<ImageU8(const ImageU8& rgb, int width, int height)>;

struct VisionProcessorConfig {
  int64_t min_pixels = 3136;
  int64_t max_pixels = 12845056;
  int patch_size = 14;
  int temporal_patch_size = 2;
  int merge_size = 2;
  double rescale_factor = 1.0 / 255.0;
  std::array<float, 3> image_mean{0.48145466f, 0.4578275f, 0.40821073f};
  std::array<float, 3> image_std{0.26862954f, 0.26130258f, 0.27577711f};
  bool do_convert_rgb = true;
  // Pil backend: the PIL resize pass order to reproduce (image/resample.h). Not in
  // preprocessor_config.json: Pillow 13 (the pinned reference) by default; the committed fixtures
  // were made with Pillow 11.
  PillowOrder pillow_order = PillowOrder::Pillow13;
  // Not in preprocessor_config.json either: the out-of-the-box (torchvision) processor by default.
  VisionBackend backend = VisionBackend::Torchvision;

  // Reads processor/preprocessor_config.json (missing keys keep the defaults above). Throws
  // ImageError with the path on unreadable / malformed files or unsupported values
  // (resample other than 3 = bicubic, do_resize/do_rescale/do_normalize false).
  static VisionProcessorConfig from_json_file(const std::string& path);

  int factor() const { return patch_size * merge_size; }
  int row_width() const { return 3 * temporal_patch_size * patch_size * patch_size; }  // 1176
};

struct VisionPatches {
  std::vector<float> pixel_values;  // rows x row_width, row-major
  int64_t rows = 0;
  int64_t row_width = 0;
  std::vector<std::array<int64_t, 3>> grid_thw;  // per image (t, h, w) in patches
  std::vector<Size> resized;                     // per image, the size after smart_resize
};

// The image after conversion + smart_resize + bicubic resize (uint8 RGB) — the pixels the
// patches are made of. The Torchvision backend resizes with `torchvision_resize` (no call when the
// size is unchanged, as torchvision); it throws ImageError when that is empty.
ImageU8 vision_resize(const ImageU8& image, const VisionProcessorConfig& config,
                      const VisionResizer& torchvision_resize = {});

// One processor call over several images (patches concatenated in image order).
VisionPatches preprocess_vision(const std::vector<ImageU8>& images,
                                const VisionProcessorConfig& config,
                                const VisionResizer& torchvision_resize = {});

}  // namespace qwen
