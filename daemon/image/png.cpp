#include "image/png.h"

#include <png.h>

#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>

namespace qwen {
namespace {

constexpr uint32_t kMaxSide = 1u << 16;            // 65536 px per side
constexpr uint64_t kMaxBytes = uint64_t(1) << 32;  // decoded size limit (4 GiB)

// libpng reports errors through a callback that must not return; we longjmp back into the
// function that called setjmp. Those functions only hold trivially destructible locals.
struct ErrorState {
  char message[512] = {0};
};

void on_error(png_structp png, png_const_charp msg) {
  auto* st = static_cast<ErrorState*>(png_get_error_ptr(png));
  std::snprintf(st->message, sizeof st->message, "%s", msg ? msg : "unknown libpng error");
  png_longjmp(png, 1);
}
void on_warning(png_structp, png_const_charp) {}

struct ReadSource {
  const uint8_t* data = nullptr;
  size_t size = 0;
  size_t pos = 0;
};

void read_fn(png_structp png, png_bytep out, size_t n) {
  auto* src = static_cast<ReadSource*>(png_get_io_ptr(png));
  if (src->size - src->pos < n) png_error(png, "unexpected end of data (the file is truncated)");
  std::memcpy(out, src->data + src->pos, n);
  src->pos += n;
}

struct Header {
  uint32_t width = 0, height = 0;
  int channels = 0;
  int depth = 0;  // bits per sample after the transforms
  size_t rowbytes = 0;
};

// Phase 1: signature, header, transforms. Returns false (message in `err`) on failure.
bool read_header(png_structp png, png_infop info, bool keep16, Header* h) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_user_limits(png, kMaxSide, kMaxSide);
  png_read_info(png, info);
  png_uint_32 w = 0, ht = 0;
  int bit_depth = 0, color_type = 0, interlace = 0;
  png_get_IHDR(png, info, &w, &ht, &bit_depth, &color_type, &interlace, nullptr, nullptr);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  if (bit_depth == 16) {
    if (keep16)
      png_set_swap(png);  // host order (little-endian hosts)
    else
      png_set_strip_16(png);
  }
  const bool has_alpha =
      (color_type & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS);
  const bool gray = !(color_type & PNG_COLOR_MASK_COLOR) && color_type != PNG_COLOR_TYPE_PALETTE;
  if (!keep16 && gray && has_alpha) png_set_gray_to_rgb(png);  // gray+alpha -> RGBA
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  h->width = w;
  h->height = ht;
  h->channels = png_get_channels(png, info);
  h->depth = png_get_bit_depth(png, info);
  h->rowbytes = png_get_rowbytes(png, info);
  return true;
}

// Phase 2: pixel data into caller-owned rows.
bool read_rows(png_structp png, png_infop info, png_bytep* rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  png_read_end(png, info);
  return true;
}

struct Decoded {
  Header h;
  std::vector<uint8_t> bytes;  // rowbytes * height
};

Decoded decode(const uint8_t* data, size_t size, const std::string& label, bool keep16) {
  if (!is_png(data, size)) {
    throw ImageError(label + ": not a PNG file (the PNG signature is missing)");
  }
  ErrorState err;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &err, on_error, on_warning);
  if (!png) throw ImageError(label + ": cannot initialise libpng");
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    throw ImageError(label + ": cannot initialise libpng");
  }
  ReadSource src{data, size, 0};
  png_set_read_fn(png, &src, read_fn);
  Decoded out;
  if (!read_header(png, info, keep16, &out.h)) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw ImageError(label + ": broken PNG: " + err.message);
  }
  const uint64_t total = uint64_t(out.h.rowbytes) * out.h.height;
  if (out.h.width == 0 || out.h.height == 0 || total > kMaxBytes) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw ImageError(label + ": unsupported PNG size " + std::to_string(out.h.width) + "x" +
                     std::to_string(out.h.height));
  }
  std::vector<png_bytep> rows;
  try {
    out.bytes.resize(size_t(total));
    rows.resize(out.h.height);
  } catch (...) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw ImageError(label + ": out of memory decoding the PNG");
  }
  for (uint32_t y = 0; y < out.h.height; ++y)
    rows[y] = out.bytes.data() + size_t(y) * out.h.rowbytes;
  const bool ok = read_rows(png, info, rows.data());
  png_destroy_read_struct(&png, &info, nullptr);
  if (!ok) throw ImageError(label + ": broken PNG: " + err.message);
  return out;
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    throw ImageError(path + ": cannot open image file (" + std::strerror(errno) + ")");
  }
  std::vector<uint8_t> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) throw ImageError(path + ": read error");
  return data;
}

void write_fn(png_structp png, png_bytep data, size_t n) {
  auto* out = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + n);
}
void flush_fn(png_structp) {}

bool write_impl(png_structp png, png_infop info, const ImageU8* image, int color_type,
                png_bytep* rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_IHDR(png, info, png_uint_32(image->width), png_uint_32(image->height), 8, color_type,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, info);
  return true;
}

}  // namespace

void validate_image(const ImageU8& image, const std::string& what,
                    const std::vector<int>& allowed) {
  if (image.width <= 0 || image.height <= 0) {
    throw ImageError(what + ": empty image (" + std::to_string(image.width) + "x" +
                     std::to_string(image.height) + ")");
  }
  bool ok = false;
  for (int c : allowed) ok = ok || c == image.channels;
  if (!ok) {
    std::string list;
    for (int c : allowed) list += (list.empty() ? "" : ", ") + std::to_string(c);
    throw ImageError(what + ": unsupported channel count " + std::to_string(image.channels) +
                     " (expected one of " + list + ")");
  }
  if (image.pixels.size() != image.size_bytes()) {
    throw ImageError(
        what + ": pixel buffer has " + std::to_string(image.pixels.size()) +
        " bytes, expected width*height*channels = " + std::to_string(image.size_bytes()));
  }
}

bool is_png(const uint8_t* data, size_t size) {
  return data != nullptr && size >= 8 && png_sig_cmp(data, 0, 8) == 0;
}

ImageU8 decode_png(const uint8_t* data, size_t size, const std::string& label) {
  Decoded d = decode(data, size, label, false);
  if (d.h.depth != 8 || d.h.channels < 1 || d.h.channels > 4 || d.h.channels == 2) {
    throw ImageError(label + ": unexpected PNG layout after conversion (" +
                     std::to_string(d.h.channels) + " channels, " + std::to_string(d.h.depth) +
                     " bits)");
  }
  ImageU8 img;
  img.width = int(d.h.width);
  img.height = int(d.h.height);
  img.channels = d.h.channels;
  img.pixels = std::move(d.bytes);
  return img;
}

ImageU8 read_png(const std::string& path) {
  std::vector<uint8_t> data = read_file(path);
  return decode_png(data.data(), data.size(), path);
}

ImageU16 read_png16(const std::string& path) {
  std::vector<uint8_t> data = read_file(path);
  Decoded d = decode(data.data(), data.size(), path, true);
  ImageU16 img;
  img.width = int(d.h.width);
  img.height = int(d.h.height);
  img.channels = d.h.channels;
  img.pixels.resize(img.size_values());
  if (d.h.depth == 16) {
    std::memcpy(img.pixels.data(), d.bytes.data(), img.pixels.size() * 2);
  } else {
    for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = uint16_t(d.bytes[i] * 257);
  }
  return img;
}

std::vector<uint8_t> encode_png(const ImageU8& image) {
  validate_image(image, "encode_png", {1, 2, 3, 4});
  const int color_type = image.channels == 1   ? PNG_COLOR_TYPE_GRAY
                         : image.channels == 2 ? PNG_COLOR_TYPE_GRAY_ALPHA
                         : image.channels == 3 ? PNG_COLOR_TYPE_RGB
                                               : PNG_COLOR_TYPE_RGB_ALPHA;
  ErrorState err;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, on_error, on_warning);
  if (!png) throw ImageError("encode_png: cannot initialise libpng");
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    throw ImageError("encode_png: cannot initialise libpng");
  }
  std::vector<uint8_t> out;
  std::vector<png_bytep> rows(size_t(image.height));
  for (int y = 0; y < image.height; ++y) rows[y] = const_cast<png_bytep>(image.row(y));
  png_set_write_fn(png, &out, write_fn, flush_fn);
  const bool ok = write_impl(png, info, &image, color_type, rows.data());
  png_destroy_write_struct(&png, &info);
  if (!ok) throw ImageError(std::string("encode_png: ") + err.message);
  return out;
}

void write_png(const std::string& path, const ImageU8& image) {
  std::vector<uint8_t> bytes = encode_png(image);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) {
    throw ImageError(path + ": cannot create output file (" + std::strerror(errno) + ")");
  }
  const size_t n = std::fwrite(bytes.data(), 1, bytes.size(), f);
  const int write_errno = errno;
  const bool closed = std::fclose(f) == 0;
  if (n != bytes.size() || !closed) {
    std::remove(path.c_str());
    throw ImageError(path + ": cannot write output file (" +
                     std::strerror(n != bytes.size() ? write_errno : errno) + ")");
  }
}

}  // namespace qwen
