#include <cmath>

#include "image/png.h"
#include "image/vision_processor.h"
#include "test_util.h"

using namespace qwen;
using qwen::test::fixture;
using qwen::test::tensor_values;

namespace {
// The fixture cases were made with the PIL processor (Qwen2VLImageProcessorPil / transformers 4's
// slow one) and Pillow 11.3: its resize pass order (image/resample.h). The torchvision backend is
// compared with the live reference (tests/reference/test_reference_vision_processor.cpp).
VisionProcessorConfig edit_config() {
  auto c = VisionProcessorConfig::from_json_file(
      fixture("models/qwen-image-edit-2509-tiny/processor/preprocessor_config.json"));
  c.backend = VisionBackend::Pil;
  c.pillow_order = PillowOrder::Pillow12;
  return c;
}
}  // namespace

// Full pixel_values / image_grid_thw of the `vision_processor` case: two images in one call.
TEST(VisionProcessor, MatchesFixturePixelValues) {
  const auto f = io::SafetensorsFile::open(fixture("cases/vision_processor/tensors.safetensors"));
  std::vector<int64_t> shape;
  const auto expected = tensor_values<float>(*f, "pixel_values", &shape);
  const auto grid = tensor_values<int64_t>(*f, "image_grid_thw");
  const std::vector<ImageU8> images = {read_png(fixture("cases/vision_processor/image_0.png")),
                                       read_png(fixture("cases/vision_processor/image_1.png"))};
  const VisionPatches p = preprocess_vision(images, edit_config());
  ASSERT_EQ(shape, (std::vector<int64_t>{p.rows, p.row_width}));
  ASSERT_EQ(p.grid_thw.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    for (size_t k = 0; k < 3; ++k) EXPECT_EQ(p.grid_thw[i][k], grid[i * 3 + k]) << i << "," << k;
  }
  ASSERT_EQ(p.pixel_values.size(), expected.size());
  size_t bad = 0;
  double worst = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double d = std::fabs(double(p.pixel_values[i]) - expected[i]);
    worst = std::max(worst, d);
    bad += d > 0;
  }
  // The reference is integer-exact up to the float32 normalisation: expect bit equality.
  EXPECT_EQ(bad, 0u) << "max abs diff " << worst;
}

// Edit / Edit-Plus: the processor receives the LANCZOS condition images; compare the first 64 rows
// and every row's sum / abs-sum.
TEST(VisionProcessor, MatchesEditCaseSummaries) {
  for (const std::string dir : {"text_encoder_edit", "text_encoder_edit_plus"}) {
    SCOPED_TRACE(dir);
    const auto f = io::SafetensorsFile::open(fixture("cases/" + dir + "/tensors.safetensors"));
    const auto head = tensor_values<float>(*f, "pixel_values_head");
    const auto row_sum = tensor_values<float>(*f, "pixel_values_row_sum");
    const auto row_abs = tensor_values<float>(*f, "pixel_values_row_abs_sum");
    const auto grid = tensor_values<int64_t>(*f, "image_grid_thw");
    std::vector<ImageU8> images;
    for (int i = 0; i < int(grid.size() / 3); ++i) {
      images.push_back(
          read_png(fixture("cases/" + dir + "/condition_image_" + std::to_string(i) + ".png")));
    }
    const VisionPatches p = preprocess_vision(images, edit_config());
    ASSERT_EQ(size_t(p.rows), row_sum.size());
    for (size_t i = 0; i < p.grid_thw.size(); ++i) {
      for (size_t k = 0; k < 3; ++k) EXPECT_EQ(p.grid_thw[i][k], grid[i * 3 + k]);
    }
    for (size_t i = 0; i < head.size(); ++i) ASSERT_EQ(p.pixel_values[i], head[i]) << "at " << i;
    double worst = 0;
    for (int64_t r = 0; r < p.rows; ++r) {
      double s = 0, a = 0;
      for (int64_t c = 0; c < p.row_width; ++c) {
        const double v = p.pixel_values[size_t(r * p.row_width + c)];
        s += v;
        a += std::fabs(v);
      }
      worst = std::max({worst, std::fabs(s - row_sum[r]), std::fabs(a - row_abs[r])});
    }
    EXPECT_LT(worst, 1e-3) << "row sums differ";
  }
}

TEST(VisionProcessor, PatchOrderOnSyntheticImage) {
  // 56x56 image whose red channel encodes the column and green the row: row r of the output is
  // patch (block row, block col, mh, mw); inside a row values go (c, t, y, x).
  // Same layout for both backends (no resize at 56x56: the torchvision one needs no resizer).
  for (const VisionBackend backend : {VisionBackend::Pil, VisionBackend::Torchvision}) {
    SCOPED_TRACE(to_string(backend));
    VisionProcessorConfig cfg;
    cfg.backend = backend;
    cfg.image_mean = {0, 0, 0};
    cfg.image_std = {1, 1, 1};
    cfg.rescale_factor = 1.0;
    ImageU8 img(56, 56, 3);
    for (int y = 0; y < 56; ++y)
      for (int x = 0; x < 56; ++x) img.at(x, y, 0) = uint8_t(x), img.at(x, y, 1) = uint8_t(y);
    const VisionPatches p = preprocess_vision({img}, cfg);
    ASSERT_EQ(p.rows, 16);
    ASSERT_EQ(p.row_width, 1176);
    // Row 1 = block (0,0), patch (mh 0, mw 1): x starts at 14. Row 2: (mh 1, mw 0): y starts at 14.
    // Row 4 = block (0,1) first patch: x starts at 28.
    auto at = [&](int row, int c, int t, int y, int x) {
      return p.pixel_values[size_t(row) * 1176 + size_t(c) * 392 + size_t(t) * 196 + y * 14 + x];
    };
    EXPECT_EQ(at(1, 0, 0, 0, 0), 14.0f);
    EXPECT_EQ(at(2, 1, 0, 0, 0), 14.0f);
    EXPECT_EQ(at(4, 0, 0, 0, 3), 31.0f);
    EXPECT_EQ(at(4, 0, 1, 0, 3), 31.0f);  // temporal copy
    EXPECT_EQ(at(15, 1, 1, 13, 0), 55.0f);
    EXPECT_EQ(at(15, 0, 0, 13, 13), 55.0f);
  }
}

TEST(VisionProcessor, RgbaIsCompositedOnWhiteAndBadConfigsAreReported) {
  ImageU8 rgba(56, 56, 4, 0);  // fully transparent black -> white
  VisionProcessorConfig cfg;
  cfg.backend = VisionBackend::Pil;
  const VisionPatches p = preprocess_vision({rgba}, cfg);
  EXPECT_FLOAT_EQ(p.pixel_values[0], (1.0f - cfg.image_mean[0]) / cfg.image_std[0]);
  EXPECT_THROW(preprocess_vision({}, cfg), ImageError);
  EXPECT_THROW(VisionProcessorConfig::from_json_file("/nonexistent/preprocessor_config.json"),
               ImageError);
  EXPECT_THROW(VisionProcessorConfig::from_json_file(qwen::test::data_path("png/rgb8.raw")),
               ImageError);
}

// The torchvision backend's torch-free half: the caller's resizer gets the RGB image and the
// smart_resize target (never called when the size does not change), and the normalisation is
// transformers' fused one, (x - mean * (1 / rescale)) / (std * (1 / rescale)) in float32 (it
// differs from the PIL path's x * (1/255) then (x - mean) / std in the last bits).
TEST(VisionProcessor, TorchvisionBackendUsesTheResizerAndFusedNormalisation) {
  VisionProcessorConfig cfg;  // defaults: the out-of-the-box processor
  ASSERT_EQ(cfg.backend, VisionBackend::Torchvision);
  ImageU8 gray(60, 60, 1);  // smart_resize -> 56 x 56
  for (int y = 0; y < 60; ++y)
    for (int x = 0; x < 60; ++x) gray.at(x, y, 0) = uint8_t(4 * x + y);
  EXPECT_THROW(preprocess_vision({gray}, cfg), ImageError);  // no resizer given
  int calls = 0;
  ImageU8 seen;
  const VisionResizer stub = [&](const ImageU8& rgb, int w, int h) {
    ++calls;
    seen = rgb;
    ImageU8 out(w, h, 3);
    for (size_t i = 0; i < out.pixels.size(); ++i) out.pixels[i] = uint8_t(i % 256);
    return out;
  };
  const VisionPatches p = preprocess_vision({gray}, cfg, stub);
  EXPECT_EQ(calls, 1);
  ASSERT_EQ(seen.channels, 3);  // converted to RGB before the resize
  EXPECT_EQ(seen.at(7, 3, 2), uint8_t(4 * 7 + 3));
  ASSERT_EQ(p.resized.size(), 1u);
  EXPECT_EQ(p.resized[0].width, 56);
  EXPECT_EQ(p.resized[0].height, 56);
  ASSERT_EQ(p.rows, 16);
  // Row 0, channel c, t 0, (y 0, x 1) is resized pixel (1, 0): byte 3 + c.
  for (int c = 0; c < 3; ++c) {
    const float inv = float(1.0 / cfg.rescale_factor);
    const float mean = cfg.image_mean[c] * inv, std = cfg.image_std[c] * inv;
    const float expected = (float(3 + c) - mean) / std;
    EXPECT_EQ(p.pixel_values[size_t(c) * 392 + 1], expected) << c;
  }
  // Across all 256 values the two normalisations differ in the last bits for some of them.
  ImageU8 ramp(56, 56, 3);
  for (size_t i = 0; i < ramp.pixels.size(); ++i) ramp.pixels[i] = uint8_t(i % 256);
  VisionProcessorConfig pil = cfg;
  pil.backend = VisionBackend::Pil;
  const VisionPatches a = preprocess_vision({ramp}, cfg), b = preprocess_vision({ramp}, pil);
  EXPECT_EQ(calls, 1);  // 56x56: no resize
  ASSERT_EQ(a.pixel_values.size(), b.pixel_values.size());
  size_t differ = 0;
  float worst = 0;
  for (size_t i = 0; i < a.pixel_values.size(); ++i) {
    differ += a.pixel_values[i] != b.pixel_values[i];
    worst = std::max(worst, std::fabs(a.pixel_values[i] - b.pixel_values[i]));
  }
  EXPECT_GT(differ, 0u);
  EXPECT_LT(worst, 1e-5f);

  EXPECT_EQ(parse_vision_backend("torchvision"), VisionBackend::Torchvision);
  EXPECT_EQ(parse_vision_backend("pil"), VisionBackend::Pil);
  try {
    parse_vision_backend("fast");
    ADD_FAILURE() << "no error";
  } catch (const ImageError& e) {
    EXPECT_NE(std::string(e.what()).find("'fast'"), std::string::npos) << e.what();
  }
}
