#include "image/geometry.h"
#include "test_util.h"

using namespace qwen;

TEST(Geometry, PythonRoundIsHalfToEven) {
  EXPECT_EQ(python_round(0.5), 0.0);
  EXPECT_EQ(python_round(1.5), 2.0);
  EXPECT_EQ(python_round(2.5), 2.0);
  EXPECT_EQ(python_round(36.5), 36.0);
  EXPECT_EQ(python_round(-0.5), -0.0);
  EXPECT_EQ(python_round(-1.5), -2.0);
  EXPECT_EQ(python_round(2.4999999), 2.0);
  EXPECT_EQ(python_round(2.5000001), 3.0);
}

TEST(Geometry, CalculateDimensions) {
  const double mp = 1024.0 * 1024.0;
  EXPECT_EQ(calculate_dimensions(mp, 1920, 1080), (Size{1376, 768}));
  EXPECT_EQ(calculate_dimensions(mp, 800, 1200), (Size{832, 1248}));
  EXPECT_EQ(calculate_dimensions(mp, 640, 480), (Size{1184, 896}));
  EXPECT_EQ(calculate_dimensions(mp, 1, 1), (Size{1024, 1024}));
  EXPECT_EQ(calculate_dimensions(384.0 * 384.0, 1920, 1080), (Size{512, 288}));
  EXPECT_EQ(calculate_dimensions(384.0 * 384.0, 96, 64), (Size{480, 320}));
  EXPECT_EQ(calculate_dimensions(384.0 * 384.0, 64, 112), (Size{288, 512}));
  EXPECT_THROW(calculate_dimensions(mp, 0, 10), ImageError);
  EXPECT_THROW(calculate_dimensions(384.0 * 384.0, 100000, 10), ImageError);
}

TEST(Geometry, FloorToMultiple) {
  EXPECT_EQ(floor_to_multiple(Size{100, 70}, 16), (Size{96, 64}));
  EXPECT_EQ(floor_to_multiple(Size{96, 64}, 16), (Size{96, 64}));
  EXPECT_THROW(floor_to_multiple(Size{15, 64}, 16), ImageError);
}

TEST(Geometry, SmartResize) {
  const int64_t mn = 3136, mx = 12845056;
  EXPECT_EQ(smart_resize(1024, 1024, 28, mn, mx), (Size{1036, 1036}));
  EXPECT_EQ(smart_resize(768, 1376, 28, mn, mx), (Size{1372, 756}));
  EXPECT_EQ(smart_resize(384, 384, 28, mn, mx), (Size{392, 392}));
  EXPECT_EQ(smart_resize(1022, 28 * 40, 28, mn, mx).height, 1008);  // 36.5 -> 36
  EXPECT_EQ(smart_resize(896, 1184, 28, mn, mx), (Size{1176, 896}));
  // Too small: scaled up to min_pixels; too large: scaled down under max_pixels.
  EXPECT_EQ(smart_resize(20, 30, 28, mn, mx), (Size{84, 56}));
  const Size big = smart_resize(8000, 6000, 28, mn, 1003520);
  EXPECT_LE(int64_t(big.width) * big.height, 1003520);
  EXPECT_EQ(big.width % 28, 0);
  EXPECT_EQ(big.height % 28, 0);
  EXPECT_THROW(smart_resize(10, 2500, 28, mn, mx), ImageError);
  EXPECT_THROW(smart_resize(0, 10, 28, mn, mx), ImageError);
}
