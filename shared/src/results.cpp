// The formats the daemon writes for the client (result segments, previews, the job phase), next to
// their readers, so that both sides share one definition (issue #17). Torch-free, Boost-free.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <stdexcept>

#include "qwen_image/pixels.h"
#include "qwen_image/protocol.h"

namespace qwen::ipc::proto {

namespace {
template <typename T>
std::atomic_ref<T> at(T& v) {
  return std::atomic_ref<T>(v);
}
JobHeader* job_header(void* seg) { return static_cast<JobHeader*>(seg); }
}  // namespace

ResultHeader plan_result(const std::vector<ResultPixels>& images, PixelFormat f) {
  if (images.empty() || images.size() > size_t(kMaxResults))
    throw std::invalid_argument("the engine returned " + std::to_string(images.size()) +
                                " images (1.." + std::to_string(kMaxResults) + " fit a result)");
  if (f != PixelFormat::RGBA8 && f != PixelFormat::RGB8 && f != PixelFormat::RGBA_F32 &&
      f != PixelFormat::RGB_F32)
    throw std::invalid_argument("result format " + std::to_string(uint32_t(f)) +
                                " is not a colour format");
  ResultHeader rh{};
  size_t off = align_up(sizeof(ResultHeader));
  for (size_t i = 0; i < images.size(); ++i) {
    const ResultPixels& im = images[i];
    if (im.width <= 0 || im.height <= 0 || im.data == nullptr ||
        (im.channels != 1 && im.channels != 3 && im.channels != 4))
      throw std::invalid_argument("the engine returned a malformed image");
    ImageDesc& d = rh.images[i];
    d.width = im.width;
    d.height = im.height;
    d.format = uint32_t(f);
    d.stride = size_t(im.width) * bytes_per_pixel(f);
    d.offset = off;
    d.size = d.stride * size_t(im.height);
    off = align_up(off + d.size);
  }
  rh.count = uint32_t(images.size());
  rh.prefix = {kMagicResult, kControlVersion, uint32_t(sizeof(ResultHeader)), 0, off};
  return rh;
}

void write_result(const ResultHeader& rh, const std::vector<ResultPixels>& images, void* segment) {
  auto* base = static_cast<uint8_t*>(segment);
  for (size_t i = 0; i < images.size() && i < rh.count; ++i)
    pixels::from_u8(images[i].data, images[i].width, images[i].height, images[i].channels,
                    PixelFormat(rh.images[i].format), base + rh.images[i].offset);
  std::memcpy(base, &rh, sizeof rh);
}

std::string read_result(const void* segment, size_t size, std::vector<Image>* out) {
  if (size < sizeof(ResultHeader)) return "segment too small";
  ResultHeader rh;
  std::memcpy(&rh, segment, sizeof rh);
  if (rh.prefix.magic != kMagicResult || rh.prefix.version != kControlVersion)
    return "bad magic or version";
  if (rh.count > uint32_t(kMaxResults)) return "too many images";
  out->clear();
  for (uint32_t i = 0; i < rh.count; ++i) {
    const ImageDesc& d = rh.images[i];
    if (!valid_pixel_format(d.format) || d.width <= 0 || d.height <= 0)
      return "bad image descriptor";
    const uint64_t need = uint64_t(d.width) * uint64_t(d.height) *
                          bytes_per_pixel(static_cast<PixelFormat>(d.format));
    if (d.offset > size || need > size - d.offset) return "image outside the segment";
    Image img{d.width, d.height, static_cast<PixelFormat>(d.format), {}};
    const auto* src = static_cast<const uint8_t*>(segment) + d.offset;
    img.bytes.assign(src, src + need);
    out->push_back(std::move(img));
  }
  return {};
}

void publish_preview(void* segment, const uint8_t* rgb, int width, int height) {
  JobHeader* h = job_header(segment);
  // Seqlock: odd while the preview is being written.
  at(h->preview_seq).fetch_add(1, std::memory_order_acq_rel);
  int w = 0, ph = 0;
  pixels::downscale_rgb8(rgb, width, height, kPreviewMax,
                         static_cast<uint8_t*>(segment) + h->preview_offset, &w, &ph);
  h->preview_width = w;
  h->preview_height = ph;
  at(h->preview_seq).fetch_add(1, std::memory_order_release);
}

std::optional<Image> read_preview(const void* segment, size_t size, size_t preview_offset,
                                  uint32_t pseq) {
  auto* h = const_cast<JobHeader*>(static_cast<const JobHeader*>(segment));
  if (pseq % 2 != 0) return std::nullopt;
  const int w = h->preview_width, ph = h->preview_height;
  if (w <= 0 || ph <= 0 || w > kPreviewMax || ph > kPreviewMax) return std::nullopt;
  const size_t n = size_t(w) * size_t(ph) * 3;
  if (preview_offset > size || n > size - preview_offset) return std::nullopt;
  Image img{w, ph, PixelFormat::RGB8, {}};
  const auto* src = static_cast<const uint8_t*>(segment) + preview_offset;
  img.bytes.assign(src, src + n);
  if (at(h->preview_seq).load(std::memory_order_acquire) != pseq) return std::nullopt;
  return img;
}

void set_phase(void* segment, JobPhase phase, float fraction, const std::string& detail) {
  JobHeader* h = job_header(segment);
  at(h->phase_seq).fetch_add(1, std::memory_order_acq_rel);  // odd: writing
  const size_t n = std::min(detail.size(), kPhaseDetailBytes - 1);
  std::memcpy(h->phase_detail, detail.data(), n);
  h->phase_detail[n] = '\0';
  h->phase_fraction = fraction;
  at(h->phase).store(uint32_t(phase), std::memory_order_relaxed);
  at(h->phase_seq).fetch_add(1, std::memory_order_release);
}

bool read_phase(const void* segment, JobProgress* p) {
  auto* h = const_cast<JobHeader*>(static_cast<const JobHeader*>(segment));
  const uint32_t s1 = at(h->phase_seq).load(std::memory_order_acquire);
  if (s1 % 2 != 0) return false;
  const uint32_t phase = at(h->phase).load(std::memory_order_relaxed);
  const float fraction = h->phase_fraction;
  char detail[kPhaseDetailBytes];
  std::memcpy(detail, h->phase_detail, sizeof detail);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (at(h->phase_seq).load(std::memory_order_relaxed) != s1) return false;
  detail[kPhaseDetailBytes - 1] = '\0';
  p->phase = phase <= uint32_t(JobPhase::Decoding) ? JobPhase(phase) : JobPhase::Denoising;
  p->fraction = fraction;
  p->detail = detail;
  return true;
}

}  // namespace qwen::ipc::proto
