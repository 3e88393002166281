#include "geometry.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

using namespace qwen::plugin;

TEST(PluginGeometry, IntersectAndPad) {
  EXPECT_EQ(intersect({0, 0, 10, 10}, {5, 5, 10, 10}), (Rect{5, 5, 5, 5}));
  EXPECT_TRUE(intersect({0, 0, 10, 10}, {10, 0, 5, 5}).empty());
  EXPECT_TRUE(intersect({0, 0, 10, 10}, {-20, -20, 5, 5}).empty());
  EXPECT_EQ(pad_within({10, 10, 10, 10}, 5, {0, 0, 100, 100}), (Rect{5, 5, 20, 20}));
  EXPECT_EQ(pad_within({2, 90, 10, 10}, 5, {0, 0, 100, 100}), (Rect{0, 85, 17, 15}));
}

TEST(PluginGeometry, ModelSizeKeepsSmallSizesRoundedTo16) {
  SizeLimits l{0, 1328 * 1328, 16};
  EXPECT_EQ(model_size_for({64, 48}, l), (Size{64, 48}));
  EXPECT_EQ(model_size_for({70, 41}, l), (Size{64, 48}));
  EXPECT_EQ(model_size_for({3, 2}, l), (Size{16, 16}));
}

TEST(PluginGeometry, ModelSizeDownscalesLargeImagesKeepingAspect) {
  SizeLimits l;
  for (Size t : {Size{4000, 3000}, Size{6000, 1000}, Size{1080, 1920}, Size{2048, 2048}}) {
    Size s = model_size_for(t, l);
    EXPECT_EQ(s.w % 16, 0);
    EXPECT_EQ(s.h % 16, 0);
    double area = double(s.w) * s.h;
    EXPECT_LE(area, l.max_pixels * 1.05) << t.w << "x" << t.h;
    EXPECT_GE(area, l.max_pixels * 0.9) << t.w << "x" << t.h;
    EXPECT_NEAR(double(s.w) / s.h, double(t.w) / t.h, 0.05 * t.w / t.h) << t.w << "x" << t.h;
  }
  EXPECT_EQ(model_size_for({1328, 1328}, l), (Size{1328, 1328}));
}

TEST(PluginGeometry, ModelSizeUpscalesSmallRegions) {
  SizeLimits l{512 * 512, 1024 * 1024, 16};
  Size s = model_size_for({100, 50}, l);
  EXPECT_EQ(s.w % 16, 0);
  EXPECT_NEAR(double(s.w) / s.h, 2.0, 0.1);
  EXPECT_GE(double(s.w) * s.h, 512 * 512 * 0.9);
}

TEST(PluginGeometry, EditRegionPadsSelectionInsideLayer) {
  Rect canvas{0, 0, 200, 100};
  Rect layer{-50, 10, 200, 200};  // offset, partly outside the canvas
  auto r = edit_region(layer, canvas, Rect{-30, 0, 100, 50}, 8);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->whole_layer);
  // selection ∩ layer ∩ canvas
  EXPECT_EQ(r->selection, (Rect{0, 10, 70, 40}));
  // padded by max(8, 70/4 = 17) and clipped to the layer (not the canvas)
  EXPECT_EQ(r->crop, (Rect{-17, 10, 70 + 34, 40 + 17}));
  EXPECT_EQ(intersect(r->crop, layer), r->crop);
}

TEST(PluginGeometry, EditRegionWithoutSelectionIsTheWholeLayer) {
  auto r = edit_region({5, 6, 30, 40}, {0, 0, 100, 100}, std::nullopt);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->whole_layer);
  EXPECT_EQ(r->crop, (Rect{5, 6, 30, 40}));
}

TEST(PluginGeometry, EditRegionSelectionOffTheLayer) {
  EXPECT_FALSE(edit_region({0, 0, 10, 10}, {0, 0, 100, 100}, Rect{50, 50, 10, 10}));
  EXPECT_FALSE(edit_region({0, 0, 0, 0}, {0, 0, 100, 100}, std::nullopt));
}

TEST(PluginGeometry, GenerateRegion) {
  EXPECT_EQ(generate_region({0, 0, 64, 48}, std::nullopt), (Rect{0, 0, 64, 48}));
  EXPECT_EQ(generate_region({0, 0, 64, 48}, Rect{8, 8, 100, 16}), (Rect{8, 8, 56, 16}));
}

static Pixels gradient(int w, int h, int c) {
  Pixels p(w, h, c);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int ch = 0; ch < c; ++ch) p.px(x, y)[ch] = uint8_t((x * 255 / (w - 1) + ch * 10) % 256);
  return p;
}

TEST(PluginPixels, ResizeIdentityAndConstant) {
  Pixels g = gradient(17, 9, 3);
  EXPECT_EQ(resize(g, 17, 9).data, g.data);
  Pixels c(31, 7, 4, 77);
  for (auto [w, h] : {std::pair{5, 3}, std::pair{100, 40}, std::pair{31, 1}}) {
    Pixels r = resize(c, w, h);
    ASSERT_EQ(r.data.size(), size_t(w) * h * 4);
    for (uint8_t v : r.data) ASSERT_EQ(v, 77);
  }
}

TEST(PluginPixels, ResizeDownscaleAveragesAndRoundTripIsClose) {
  // A one-pixel stripe pattern downscaled 4x does not alias: every output is close to the mean.
  Pixels p(64, 8, 1);
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 64; ++x) p.px(x, y)[0] = (x % 2) ? 200 : 0;
  Pixels r = resize(p, 16, 2);
  for (int x = 1; x < 15; ++x) EXPECT_NEAR(r.px(x, 0)[0], 100, 3) << x;
  Pixels g = gradient(128, 64, 3);
  Pixels back = resize(resize(g, 64, 32), 128, 64);
  double err = 0;
  for (size_t i = 0; i < g.data.size(); ++i) err += std::abs(int(g.data[i]) - int(back.data[i]));
  EXPECT_LT(err / g.data.size(), 3.0);
}

TEST(PluginPixels, AlphaHelpers) {
  Pixels rgba(2, 1, 4);
  uint8_t a[8] = {255, 0, 0, 255, 0, 0, 0, 0};
  std::copy(a, a + 8, rgba.data.begin());
  Pixels rgb = flatten_alpha(rgba, 255);
  ASSERT_EQ(rgb.channels, 3);
  EXPECT_EQ(rgb.px(0, 0)[0], 255);
  EXPECT_EQ(rgb.px(0, 0)[1], 0);
  EXPECT_EQ(rgb.px(1, 0)[1], 255);  // transparent -> background
  Pixels back = with_alpha_of(rgb, rgba);
  EXPECT_EQ(back.px(1, 0)[3], 0);
  EXPECT_EQ(opaque_rgba(rgb).px(1, 0)[3], 255);
}

// Ellipse selection: the feathered mask is 0 outside, 255 well inside and in between at the edge.
TEST(PluginPixels, FeatheredMaskNeverLeavesTheSelection) {
  const int w = 80, h = 60;
  Pixels sel(w, h, 1);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      double dx = (x + 0.5 - 40) / 30, dy = (y + 0.5 - 30) / 20;
      sel.px(x, y)[0] = dx * dx + dy * dy <= 1 ? 255 : 0;
    }
  Pixels m = feathered_mask(sel, 4);
  bool soft = false;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t s = sel.px(x, y)[0], v = m.px(x, y)[0];
      ASSERT_LE(v, s);
      if (s == 0) {
        ASSERT_EQ(v, 0);
      }
      if (v > 0 && v < 255) soft = true;
    }
  EXPECT_TRUE(soft);
  EXPECT_EQ(m.px(40, 30)[0], 255);
  // A selection that fills the whole crop stays fully opaque (edges are clamped, not faded).
  Pixels full(10, 10, 1, 255);
  for (uint8_t v : feathered_mask(full, 3).data) ASSERT_EQ(v, 255);
  EXPECT_EQ(binary_mask(m).px(40, 30)[0], 255);
  EXPECT_EQ(binary_mask(m).px(0, 0)[0], 0);
  EXPECT_GE(feather_radius({0, 0, 10, 10}), 2);
  EXPECT_LE(feather_radius({0, 0, 10000, 10000}), 16);
}

// The running-sum blur equals a direct (2r+1)^2 box average with clamped edges.
TEST(PluginPixels, FeatheredMaskMatchesDirectBoxBlur) {
  const int w = 23, h = 17, r = 3, n = 2 * r + 1;
  Pixels sel(w, h, 1);
  uint32_t state = 12345;
  for (auto& v : sel.data) {
    state = state * 1103515245u + 12345u;
    v = (state >> 16) % 3 ? 255 : uint8_t((state >> 8) & 0xff);
  }
  Pixels m = feathered_mask(sel, r);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      int sum = 0;
      for (int dy = -r; dy <= r; ++dy)
        for (int dx = -r; dx <= r; ++dx)
          sum += sel.px(std::clamp(x + dx, 0, w - 1), std::clamp(y + dy, 0, h - 1))[0];
      int expected = std::min((sum + n * n / 2) / (n * n), int(sel.px(x, y)[0]));
      ASSERT_EQ(m.px(x, y)[0], expected) << x << "," << y;
    }
}

// Decompose (issue #16): the region, and RGBA resampling on premultiplied alpha.
TEST(PluginGeometry, DecomposeRegionIsTheSelectionBoundsOnTheLayer) {
  EXPECT_EQ(decompose_region({8, 12, 80, 40}, std::nullopt), (Rect{8, 12, 80, 40}));
  EXPECT_EQ(decompose_region({8, 12, 80, 40}, Rect{20, 16, 40, 30}), (Rect{20, 16, 40, 30}));
  EXPECT_EQ(decompose_region({-10, -5, 40, 30}, Rect{0, 0, 64, 48}), (Rect{0, 0, 30, 25}));
  EXPECT_TRUE(decompose_region({0, 0, 10, 10}, Rect{20, 20, 5, 5}).empty());
}

TEST(PluginGeometry, ResizeRgbaKeepsTransparentColourOutOfTheEdges) {
  // Left half opaque red, right half transparent *green*: the green must not bleed into the red.
  Pixels src(8, 4, 4);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 8; ++x) {
      uint8_t* p = src.px(x, y);
      if (x < 4) {
        p[0] = 200, p[1] = 0, p[2] = 0, p[3] = 255;
      } else {
        p[0] = 0, p[1] = 255, p[2] = 0, p[3] = 0;
      }
    }
  EXPECT_EQ(resize_rgba(src, 8, 4).data, src.data);  // same size: exact copy
  const Pixels down = resize_rgba(src, 3, 2);
  ASSERT_EQ(down.channels, 4);
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x) {
      const uint8_t* p = down.px(x, y);
      if (p[3] > 0) {
        EXPECT_EQ(p[0], 200) << x;  // colour stays red wherever anything is visible
        EXPECT_EQ(p[1], 0) << x;
      }
    }
  EXPECT_EQ(down.px(0, 0)[3], 255);
  EXPECT_GT(down.px(1, 0)[3], 0);  // the edge pixel is partly transparent
  EXPECT_LT(down.px(1, 0)[3], 255);
  EXPECT_EQ(down.px(2, 0)[3], 0);
  // Plain resize would have mixed green into the edge.
  EXPECT_GT(resize(src, 3, 2).px(1, 0)[1], 0);
}
