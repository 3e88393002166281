#include <nlohmann/json.hpp>

#include "image/convert.h"
#include "image/geometry.h"
#include "image/png.h"
#include "image/resample.h"
#include "test_util.h"

using namespace qwen;
using qwen::test::data_path;
using qwen::test::fixture;

namespace {
ResampleFilter filter_named(const std::string& s) {
  if (s == "bicubic") return ResampleFilter::Bicubic;
  if (s == "lanczos") return ResampleFilter::Lanczos;
  if (s == "bilinear") return ResampleFilter::Bilinear;
  if (s == "box") return ResampleFilter::Box;
  if (s == "hamming") return ResampleFilter::Hamming;
  throw std::runtime_error("unknown filter " + s);
}
}  // namespace

// Byte-exact against PIL Image.resize (shrink, enlarge, one axis only, mixed, 1x1; gray, RGB,
// RGBA through premultiplied alpha).
TEST(Resize, MatchesPilByteExactly) {
  std::ifstream f(data_path("resize/manifest.json"));
  const auto m = nlohmann::json::parse(f);
  ASSERT_GE(m.size(), 40u);
  for (const auto& e : m) {
    const std::string name = e["expected"];
    SCOPED_TRACE(name);
    const ImageU8 src = read_png(data_path("resize/" + e["source"].get<std::string>()));
    const ImageU8 expected = read_png(data_path("resize/" + name));
    const ImageU8 got = resize(src, e["width"], e["height"], filter_named(e["filter"]));
    EXPECT_EQ(qwen::test::count_diff(got, expected), 0u);
  }
}

// The Edit pipelines' condition images: calculate_dimensions + PIL LANCZOS of the input PNGs.
TEST(Resize, ReproducesEditConditionImages) {
  struct Case {
    std::string dir, image, condition;
    double area;
  };
  const Case cases[] = {
      {"text_encoder_edit", "image_0.png", "condition_image_0.png", 1024.0 * 1024.0},
      {"text_encoder_edit_plus", "image_0.png", "condition_image_0.png", 384.0 * 384.0},
      {"text_encoder_edit_plus", "image_1.png", "condition_image_1.png", 384.0 * 384.0},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.dir + "/" + c.condition);
    const ImageU8 in = read_png(fixture("cases/" + c.dir + "/" + c.image));
    const ImageU8 expected = read_png(fixture("cases/" + c.dir + "/" + c.condition));
    const Size s = calculate_dimensions(c.area, in.width, in.height);
    EXPECT_EQ(s.width, expected.width);
    EXPECT_EQ(s.height, expected.height);
    const ImageU8 got = resize(in, s.width, s.height, ResampleFilter::Lanczos);
    EXPECT_EQ(qwen::test::count_diff(got, expected), 0u);
  }
}

TEST(Resize, SameSizeIsACopyAndBadSizesThrow) {
  ImageU8 img(5, 4, 3);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = uint8_t(i * 11);
  EXPECT_EQ(resize(img, 5, 4, ResampleFilter::Lanczos).pixels, img.pixels);
  EXPECT_THROW(resize(img, 0, 4, ResampleFilter::Bicubic), ImageError);
  EXPECT_THROW(resize(img, 3, -1, ResampleFilter::Bicubic), ImageError);
  EXPECT_THROW(resize(ImageU8(), 3, 3, ResampleFilter::Bicubic), ImageError);
}

TEST(Convert, GrayRgbAndAlphaLikePil) {
  ImageU8 rgba(3, 1, 4);
  rgba.pixels = {10, 200, 30, 0, 255, 255, 255, 128, 90, 60, 30, 255};
  // PIL convert("L"): (R*19595 + G*38470 + B*7471 + 0x8000) >> 16
  const ImageU8 g = to_gray(rgba);
  EXPECT_EQ(g.pixels, (std::vector<uint8_t>{124, 255, 66}));
  EXPECT_EQ(to_rgb(rgba).pixels, (std::vector<uint8_t>{10, 200, 30, 255, 255, 255, 90, 60, 30}));
  // alpha 0 -> white, opaque -> unchanged, white at half alpha over white -> white.
  EXPECT_EQ(composite_on_white(rgba).pixels,
            (std::vector<uint8_t>{255, 255, 255, 255, 255, 255, 90, 60, 30}));
  ImageU8 half(1, 1, 4);
  half.pixels = {0, 0, 0, 128};
  // PIL: Image.alpha_composite(white, (0,0,0,128)) -> (127,127,127)
  EXPECT_EQ(composite_on_white(half).pixels, (std::vector<uint8_t>{127, 127, 127}));
  const ImageU8 pm = premultiply_alpha(rgba);
  EXPECT_EQ(pm.pixels, (std::vector<uint8_t>{0, 0, 0, 0, 128, 128, 128, 128, 90, 60, 30, 255}));
  EXPECT_EQ(unpremultiply_alpha(pm).pixels,
            (std::vector<uint8_t>{0, 0, 0, 0, 255, 255, 255, 128, 90, 60, 30, 255}));
  EXPECT_THROW(premultiply_alpha(ImageU8(2, 2, 3)), ImageError);
}
