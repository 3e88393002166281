// libFuzzer target: the daemon's request validation and pixel decoding on hostile job segments.
// Two modes (first byte): the input taken as a whole segment, or XOR-ed onto a valid request so
// that the fuzzer explores fields one at a time.
#include <cstdint>
#include <cstring>
#include <vector>

#include "qwen_image/pixels.h"
#include "qwen_image/protocol.h"

using namespace qwen::ipc;

namespace {
std::vector<uint8_t> make_template() {
  static uint8_t px[16 * 12 * 8];
  static float mask[16 * 12];
  for (size_t i = 0; i < sizeof px; ++i) px[i] = uint8_t(i);
  JobRequest r;
  r.pipeline = "inpaint";
  r.prompts = {"a cat", "ein Hund \xc3\xa4"};
  r.negative_prompts = {"blurry"};
  r.images.push_back(ImageView{16, 12, PixelFormat::RGBA8, 16 * 4 + 8, px});
  r.mask = ImageView{16, 12, PixelFormat::GRAY_F32, 0, mask};
  r.images[0].height = 11;  // keep the padded stride within the buffer
  r.mask->height = 11;
  proto::JobLayout L = proto::plan_job(r);
  std::vector<uint8_t> seg(L.total);
  proto::encode_job(r, L, 1, 2, seg.data());
  return seg;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<uint8_t> tmpl = make_template();
  std::vector<uint8_t> seg;
  if (size > 0 && (data[0] & 1)) {
    seg = tmpl;
    for (size_t i = 1; i < size; ++i) seg[(i * 131) % seg.size()] ^= data[i];
  } else {
    seg.assign(data, data + size);
  }
  proto::Limits lim;
  lim.max_input_pixels = 1 << 16;
  proto::Request req;
  proto::ErrorKind kind;
  const std::string err = proto::validate_job(seg.data(), seg.size(), lim, &req, &kind);
  if (!err.empty()) return 0;
  // A request that passes validation must be decodable without touching memory outside it.
  for (const auto& d : req.images) {
    std::vector<uint8_t> out(size_t(d.width) * size_t(d.height) * 4);
    pixels::to_u8(seg.data(), d, 4, out.data());
    pixels::to_u8(seg.data(), d, 3, out.data());
  }
  if (req.mask) {
    std::vector<uint8_t> out(size_t(req.mask->width) * size_t(req.mask->height));
    pixels::to_u8(seg.data(), *req.mask, 1, out.data());
  }
  return 0;
}
