#include "qwen_image/pixels.h"

#include <algorithm>
#include <cstring>

namespace qwen::ipc::pixels {

namespace {

inline uint8_t f2u(float x) {
  if (!(x > 0.0f)) return 0;  // also NaN
  if (x >= 1.0f) return 255;
  return static_cast<uint8_t>(x * 255.0f + 0.5f);
}

template <typename In>
void convert_rows(const uint8_t* src0, const proto::ImageDesc& d, int sc, int oc, uint8_t* out) {
  for (int y = 0; y < d.height; ++y) {
    const uint8_t* row = src0 + d.stride * uint64_t(y);
    uint8_t* o = out + size_t(y) * size_t(d.width) * size_t(oc);
    for (int x = 0; x < d.width; ++x) {
      In px[4] = {};
      std::memcpy(px, row + size_t(x) * sc * sizeof(In), size_t(sc) * sizeof(In));
      uint8_t v[4] = {0, 0, 0, 255};
      for (int c = 0; c < sc; ++c) {
        if constexpr (sizeof(In) == 1)
          v[c] = px[c];
        else
          v[c] = f2u(px[c]);
      }
      if (oc == 1) {
        o[0] = v[0];
      } else {
        const bool gray = sc == 1;
        o[0] = v[0];
        o[1] = gray ? v[0] : v[1];
        o[2] = gray ? v[0] : v[2];
        if (oc == 4) o[3] = sc == 4 ? v[3] : 255;
      }
      o += oc;
    }
  }
}

}  // namespace

void to_u8(const uint8_t* base, const proto::ImageDesc& d, int oc, uint8_t* out) {
  const auto f = static_cast<PixelFormat>(d.format);
  const int sc = channels(f);
  const uint8_t* src = base + d.offset;
  if (bytes_per_channel(f) == 1) {
    if (sc == oc) {  // fast path: row copies
      const size_t row = size_t(d.width) * size_t(sc);
      for (int y = 0; y < d.height; ++y) std::memcpy(out + row * y, src + d.stride * y, row);
      return;
    }
    convert_rows<uint8_t>(src, d, sc, oc, out);
  } else {
    if (sc == oc) {
      const size_t n = size_t(d.width) * size_t(sc);
      for (int y = 0; y < d.height; ++y) {
        const uint8_t* row = src + d.stride * uint64_t(y);
        uint8_t* o = out + n * y;
        for (size_t i = 0; i < n; ++i) {
          float v;
          std::memcpy(&v, row + i * 4, 4);
          o[i] = f2u(v);
        }
      }
      return;
    }
    convert_rows<float>(src, d, sc, oc, out);
  }
}

void from_u8(const uint8_t* src, int w, int h, int sc, PixelFormat f, uint8_t* dst) {
  const int oc = channels(f);
  const bool fl = bytes_per_channel(f) == 4;
  const size_t n = size_t(w) * size_t(h);
  if (!fl && sc == oc) {
    std::memcpy(dst, src, n * size_t(sc));
    return;
  }
  float lut[256];
  for (int i = 0; i < 256; ++i) lut[i] = float(i) / 255.0f;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* s = src + i * size_t(sc);
    uint8_t v[4];
    if (sc == 1) {
      v[0] = v[1] = v[2] = s[0];
      v[3] = 255;
    } else {
      v[0] = s[0];
      v[1] = s[1];
      v[2] = s[2];
      v[3] = sc == 4 ? s[3] : 255;
    }
    if (fl) {
      float o[4];
      for (int c = 0; c < oc; ++c) o[c] = lut[oc == 1 ? v[0] : v[c]];
      std::memcpy(dst + i * size_t(oc) * 4, o, size_t(oc) * 4);
    } else {
      uint8_t* o = dst + i * size_t(oc);
      for (int c = 0; c < oc; ++c) o[c] = v[c];
    }
  }
}

void downscale_rgb8(const uint8_t* src, int w, int h, int max_side, uint8_t* dst, int* ow,
                    int* oh) {
  const int big = std::max(w, h);
  const int f = big <= max_side ? 1 : (big + max_side - 1) / max_side;
  *ow = std::max(1, w / f);
  *oh = std::max(1, h / f);
  for (int y = 0; y < *oh; ++y)
    for (int x = 0; x < *ow; ++x)
      for (int c = 0; c < 3; ++c) {
        unsigned sum = 0, cnt = 0;
        for (int dy = 0; dy < f && y * f + dy < h; ++dy)
          for (int dx = 0; dx < f && x * f + dx < w; ++dx, ++cnt)
            sum += src[(size_t(y * f + dy) * size_t(w) + size_t(x * f + dx)) * 3 + size_t(c)];
        dst[(size_t(y) * size_t(*ow) + size_t(x)) * 3 + size_t(c)] =
            uint8_t(cnt ? (sum + cnt / 2) / cnt : 0);
      }
}

}  // namespace qwen::ipc::pixels
