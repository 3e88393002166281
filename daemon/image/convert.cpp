#include "image/convert.h"

namespace qwen {
namespace {

inline unsigned muldiv255(unsigned a, unsigned b) {
  const unsigned tmp = a * b + 128;
  return ((tmp >> 8) + tmp) >> 8;
}
inline unsigned shiftdiv255(unsigned a) { return ((a >> 8) + a) >> 8; }
inline uint8_t clip8(int v) { return uint8_t(v <= 0 ? 0 : v < 256 ? v : 255); }

void require_alpha(const ImageU8& image, const char* what) {
  validate_image(image, what, {1, 2, 3, 4});
  if (image.channels != 2 && image.channels != 4) {
    throw ImageError(std::string(what) + ": image has no alpha channel (" +
                     std::to_string(image.channels) + " channels)");
  }
}

}  // namespace

ImageU8 to_gray(const ImageU8& image) {
  validate_image(image, "to_gray", {1, 2, 3, 4});
  ImageU8 out(image.width, image.height, 1);
  const size_t n = size_t(image.width) * image.height;
  const int ch = image.channels;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = &image.pixels[i * ch];
    if (ch >= 3) {
      out.pixels[i] = uint8_t((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16);
    } else {
      out.pixels[i] = p[0];
    }
  }
  return out;
}

ImageU8 to_rgb(const ImageU8& image) {
  validate_image(image, "to_rgb", {1, 2, 3, 4});
  if (image.channels == 3) return image;
  ImageU8 out(image.width, image.height, 3);
  const size_t n = size_t(image.width) * image.height;
  const int ch = image.channels;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = &image.pixels[i * ch];
    uint8_t* q = &out.pixels[i * 3];
    if (ch >= 3) {
      q[0] = p[0], q[1] = p[1], q[2] = p[2];
    } else {
      q[0] = q[1] = q[2] = p[0];
    }
  }
  return out;
}

ImageU8 composite_on_white(const ImageU8& image) {
  validate_image(image, "composite_on_white", {1, 2, 3, 4});
  if (image.channels == 1 || image.channels == 3) return to_rgb(image);
  constexpr unsigned kBits = 7;
  ImageU8 out(image.width, image.height, 3);
  const size_t n = size_t(image.width) * image.height;
  const int ch = image.channels;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = &image.pixels[i * ch];
    const unsigned r = p[0], g = ch == 4 ? p[1] : p[0], b = ch == 4 ? p[2] : p[0];
    const unsigned a = p[ch - 1];
    uint8_t* q = &out.pixels[i * 3];
    if (a == 0) {
      q[0] = q[1] = q[2] = 255;
      continue;
    }
    // Image.alpha_composite(white RGBA, src) with dst alpha 255.
    const unsigned blend = 255u * (255u - a);
    const unsigned outa255 = a * 255u + blend;
    const unsigned coef1 = a * 255u * 255u * (1u << kBits) / outa255;
    const unsigned coef2 = 255u * (1u << kBits) - coef1;
    const unsigned tr = r * coef1 + 255u * coef2, tg = g * coef1 + 255u * coef2,
                   tb = b * coef1 + 255u * coef2;
    q[0] = uint8_t(shiftdiv255(tr + (0x80u << kBits)) >> kBits);
    q[1] = uint8_t(shiftdiv255(tg + (0x80u << kBits)) >> kBits);
    q[2] = uint8_t(shiftdiv255(tb + (0x80u << kBits)) >> kBits);
  }
  return out;
}

ImageU8 premultiply_alpha(const ImageU8& image) {
  require_alpha(image, "premultiply_alpha");
  ImageU8 out = image;
  const int ch = image.channels;
  const size_t n = size_t(image.width) * image.height;
  for (size_t i = 0; i < n; ++i) {
    uint8_t* p = &out.pixels[i * ch];
    const unsigned a = p[ch - 1];
    for (int c = 0; c < ch - 1; ++c) p[c] = uint8_t(muldiv255(p[c], a));
  }
  return out;
}

ImageU8 unpremultiply_alpha(const ImageU8& image) {
  require_alpha(image, "unpremultiply_alpha");
  ImageU8 out = image;
  const int ch = image.channels;
  const size_t n = size_t(image.width) * image.height;
  for (size_t i = 0; i < n; ++i) {
    uint8_t* p = &out.pixels[i * ch];
    const unsigned a = p[ch - 1];
    if (a == 255 || a == 0) continue;
    for (int c = 0; c < ch - 1; ++c) p[c] = clip8(int((255u * p[c]) / a));
  }
  return out;
}

}  // namespace qwen
