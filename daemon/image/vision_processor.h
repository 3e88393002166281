// Qwen2-VL image processor (transformers' slow, PIL-based Qwen2VLImageProcessor), torch-free:
// convert to RGB (alpha composited on white) -> smart_resize -> PIL BICUBIC resize -> x * (1/255)
// (float64, stored float32) -> (x - mean) / std (float32) -> duplicate the frame to
// temporal_patch_size -> flatten to patch rows ordered by 2x2 merge block, each row (c, t, y, x).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "image/geometry.h"
#include "image/image.h"

namespace qwen {

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
// patches are made of.
ImageU8 vision_resize(const ImageU8& image, const VisionProcessorConfig& config);

// One processor call over several images (patches concatenated in image order).
VisionPatches preprocess_vision(const std::vector<ImageU8>& images,
                                const VisionProcessorConfig& config = {});

}  // namespace qwen
