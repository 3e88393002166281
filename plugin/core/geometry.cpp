#include "geometry.h"

#include <algorithm>
#include <cmath>

namespace qwen::plugin {

Rect intersect(const Rect& a, const Rect& b) {
  int x0 = std::max(a.x, b.x), y0 = std::max(a.y, b.y);
  int x1 = std::min(a.right(), b.right()), y1 = std::min(a.bottom(), b.bottom());
  if (x1 <= x0 || y1 <= y0) return Rect{};
  return Rect{x0, y0, x1 - x0, y1 - y0};
}

Rect pad_within(const Rect& r, int pad, const Rect& bounds) {
  return intersect(Rect{r.x - pad, r.y - pad, r.w + 2 * pad, r.h + 2 * pad}, bounds);
}

Size model_size_for(Size target, const SizeLimits& limits) {
  const int m = std::max(1, limits.multiple);
  double w = std::max(1, target.w), h = std::max(1, target.h);
  double area = w * h, scale = 1.0;
  if (limits.max_pixels > 0 && area > double(limits.max_pixels))
    scale = std::sqrt(double(limits.max_pixels) / area);
  else if (limits.min_pixels > 0 && area < double(limits.min_pixels))
    scale = std::sqrt(double(limits.min_pixels) / area);
  auto snap = [m](double v) { return std::max(m, int(std::lround(v / m)) * m); };
  return Size{snap(w * scale), snap(h * scale)};
}

int context_padding(const Rect& selection, int min_pad) {
  return std::max(min_pad, std::max(selection.w, selection.h) / 4);
}

std::optional<EditRegion> edit_region(const Rect& layer, const Rect& canvas,
                                      const std::optional<Rect>& selection, int min_pad) {
  if (layer.empty()) return std::nullopt;
  if (!selection) return EditRegion{layer, layer, true};
  Rect sel = intersect(intersect(*selection, layer), canvas);
  if (sel.empty()) return std::nullopt;
  return EditRegion{pad_within(sel, context_padding(sel, min_pad), layer), sel, false};
}

Rect generate_region(const Rect& canvas, const std::optional<Rect>& selection) {
  if (!selection) return canvas;
  Rect r = intersect(*selection, canvas);
  return r.empty() ? canvas : r;
}

namespace {

struct Tap {
  int first = 0;
  std::vector<float> w;
};

// Triangle-filter taps mapping `src` samples onto `dst` samples along one axis.
std::vector<Tap> taps(int src, int dst) {
  std::vector<Tap> out(dst);
  const double scale = double(dst) / src;
  const double support = std::max(1.0, 1.0 / scale);
  for (int i = 0; i < dst; ++i) {
    double c = (i + 0.5) / scale - 0.5;
    int j0 = std::max(0, int(std::floor(c - support)) + 1);
    int j1 = std::min(src - 1, int(std::ceil(c + support)) - 1);
    if (j1 < j0) j0 = j1 = std::clamp(int(std::lround(c)), 0, src - 1);
    Tap& t = out[i];
    t.first = j0;
    double sum = 0;
    for (int j = j0; j <= j1; ++j) {
      double wt = std::max(0.0, 1.0 - std::abs(j - c) / support);
      t.w.push_back(float(wt));
      sum += wt;
    }
    if (sum <= 0) {
      t.w.assign(t.w.size(), 0.f);
      t.w[0] = 1.f;
    } else {
      for (float& v : t.w) v = float(v / sum);
    }
  }
  return out;
}

}  // namespace

Pixels resize(const Pixels& src, int width, int height) {
  if (src.width == width && src.height == height) return src;
  const int c = src.channels;
  auto tx = taps(src.width, width), ty = taps(src.height, height);
  // Horizontal pass: src.height rows x width columns, float.
  std::vector<float> mid(size_t(src.height) * width * c);
  for (int y = 0; y < src.height; ++y) {
    for (int x = 0; x < width; ++x) {
      const Tap& t = tx[x];
      float* o = &mid[(size_t(y) * width + x) * c];
      for (size_t k = 0; k < t.w.size(); ++k) {
        const uint8_t* p = src.px(t.first + int(k), y);
        for (int ch = 0; ch < c; ++ch) o[ch] += t.w[k] * p[ch];
      }
    }
  }
  Pixels out(width, height, c);
  std::vector<float> acc(c);
  for (int y = 0; y < height; ++y) {
    const Tap& t = ty[y];
    for (int x = 0; x < width; ++x) {
      std::fill(acc.begin(), acc.end(), 0.f);
      for (size_t k = 0; k < t.w.size(); ++k) {
        const float* p = &mid[(size_t(t.first + int(k)) * width + x) * c];
        for (int ch = 0; ch < c; ++ch) acc[ch] += t.w[k] * p[ch];
      }
      uint8_t* o = out.px(x, y);
      for (int ch = 0; ch < c; ++ch) o[ch] = uint8_t(std::clamp(std::lround(acc[ch]), 0L, 255L));
    }
  }
  return out;
}

Rect decompose_region(const Rect& layer, const std::optional<Rect>& selection) {
  return selection ? intersect(layer, *selection) : layer;
}

Pixels resize_rgba(const Pixels& src, int width, int height) {
  if (src.channels != 4) return resize(src, width, height);
  if (src.width == width && src.height == height) return src;
  auto tx = taps(src.width, width), ty = taps(src.height, height);
  // Premultiplied: colour weighted by alpha, so transparent pixels lend no colour to the edges.
  std::vector<float> mid(size_t(src.height) * width * 4);
  for (int y = 0; y < src.height; ++y)
    for (int x = 0; x < width; ++x) {
      const Tap& t = tx[x];
      float* o = &mid[(size_t(y) * width + x) * 4];
      for (size_t k = 0; k < t.w.size(); ++k) {
        const uint8_t* p = src.px(t.first + int(k), y);
        const float wa = t.w[k] * p[3];
        for (int ch = 0; ch < 3; ++ch) o[ch] += wa * p[ch];
        o[3] += wa;
      }
    }
  Pixels out(width, height, 4);
  for (int y = 0; y < height; ++y) {
    const Tap& t = ty[y];
    for (int x = 0; x < width; ++x) {
      float acc[4] = {0, 0, 0, 0};
      for (size_t k = 0; k < t.w.size(); ++k) {
        const float* p = &mid[(size_t(t.first + int(k)) * width + x) * 4];
        for (int ch = 0; ch < 4; ++ch) acc[ch] += t.w[k] * p[ch];
      }
      uint8_t* o = out.px(x, y);
      o[3] = uint8_t(std::clamp(std::lround(acc[3]), 0L, 255L));
      for (int ch = 0; ch < 3; ++ch)
        o[ch] = acc[3] > 0 ? uint8_t(std::clamp(std::lround(acc[ch] / acc[3]), 0L, 255L)) : 0;
    }
  }
  return out;
}

Pixels flatten_alpha(const Pixels& rgba, uint8_t background) {
  if (rgba.channels != 4) return rgba;
  Pixels out(rgba.width, rgba.height, 3);
  for (int y = 0; y < rgba.height; ++y)
    for (int x = 0; x < rgba.width; ++x) {
      const uint8_t* p = rgba.px(x, y);
      uint8_t* o = out.px(x, y);
      for (int ch = 0; ch < 3; ++ch)
        o[ch] = uint8_t((p[ch] * p[3] + background * (255 - p[3]) + 127) / 255);
    }
  return out;
}

Pixels with_alpha_of(const Pixels& rgb, const Pixels& alpha_from) {
  Pixels out(rgb.width, rgb.height, 4);
  for (int y = 0; y < rgb.height; ++y)
    for (int x = 0; x < rgb.width; ++x) {
      const uint8_t* p = rgb.px(x, y);
      uint8_t* o = out.px(x, y);
      o[0] = p[0], o[1] = p[1], o[2] = p[2];
      o[3] = alpha_from.channels == 4 ? alpha_from.px(x, y)[3] : 255;
    }
  return out;
}

Pixels opaque_rgba(const Pixels& rgb) { return with_alpha_of(rgb, Pixels{}); }

Pixels feathered_mask(const Pixels& sel, int radius) {
  if (radius <= 0) return sel;
  const int w = sel.width, h = sel.height, n = 2 * radius + 1;
  auto at = [&](int x, int y) { return int(sel.data[size_t(y) * w + x]); };
  // Box blur with edge clamping (the selection continues past the crop's border): running sums
  // along rows, then along columns.
  std::vector<int> rows(size_t(w) * h);
  for (int y = 0; y < h; ++y) {
    int sum = 0;
    for (int k = -radius; k <= radius; ++k) sum += at(std::clamp(k, 0, w - 1), y);
    for (int x = 0; x < w; ++x) {
      rows[size_t(y) * w + x] = sum;
      sum += at(std::min(x + radius + 1, w - 1), y) - at(std::max(x - radius, 0), y);
    }
  }
  Pixels out(w, h, 1);
  auto row = [&](int x, int y) { return rows[size_t(std::clamp(y, 0, h - 1)) * w + x]; };
  for (int x = 0; x < w; ++x) {
    int sum = 0;
    for (int k = -radius; k <= radius; ++k) sum += row(x, k);
    for (int y = 0; y < h; ++y) {
      int blurred = (sum + n * n / 2) / (n * n);
      out.data[size_t(y) * w + x] = uint8_t(std::min(blurred, at(x, y)));
      sum += row(x, y + radius + 1) - row(x, y - radius);
    }
  }
  return out;
}

int feather_radius(const Rect& selection) {
  return std::clamp(std::min(selection.w, selection.h) / 32, 2, 16);
}

Pixels binary_mask(const Pixels& sel) {
  Pixels out(sel.width, sel.height, 1);
  for (size_t i = 0; i < out.data.size(); ++i) out.data[i] = sel.data[i] ? 255 : 0;
  return out;
}

}  // namespace qwen::plugin
