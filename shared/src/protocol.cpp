// Request layout, encoding (client) and validation (daemon). Torch-free and Boost-free: this file
// is compiled into the libFuzzer target of tests/transport.
#include "qwen_image/protocol.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace qwen::ipc::proto {

namespace {

std::string fixed_string(const char* p, size_t cap, bool* ok) {
  const void* nul = std::memchr(p, 0, cap);
  *ok = nul != nullptr;
  if (!nul) return {};
  return std::string(p, static_cast<const char*>(nul));
}

bool is_color(uint32_t f) {
  auto p = static_cast<PixelFormat>(f);
  return p == PixelFormat::RGBA8 || p == PixelFormat::RGB8 || p == PixelFormat::RGBA_F32 ||
         p == PixelFormat::RGB_F32;
}
bool is_gray(uint32_t f) {
  auto p = static_cast<PixelFormat>(f);
  return p == PixelFormat::GRAY8 || p == PixelFormat::GRAY_F32;
}

// Checks one image descriptor against the segment (whose job header is `header_size` bytes).
// Returns "" when it is usable.
std::string check_image(const ImageDesc& d, size_t seg_size, size_t header_size, const Limits& lim,
                        const char* what) {
  const std::string w = what;
  if (!valid_pixel_format(d.format))
    return w + ": unknown pixel format " + std::to_string(d.format);
  if (d.width <= 0 || d.height <= 0)
    return w + ": bad size " + std::to_string(d.width) + "x" + std::to_string(d.height);
  if (d.width > lim.max_input_dim || d.height > lim.max_input_dim ||
      int64_t(d.width) * d.height > lim.max_input_pixels)
    return w + ": " + std::to_string(d.width) + "x" + std::to_string(d.height) +
           " is larger than the daemon accepts (" + std::to_string(lim.max_input_dim) +
           " pixels a side)";
  const uint64_t row = uint64_t(d.width) * bytes_per_pixel(static_cast<PixelFormat>(d.format));
  if (d.stride < row)
    return w + ": stride " + std::to_string(d.stride) + " is smaller than a row (" +
           std::to_string(row) + " bytes)";
  if (d.stride > (uint64_t(1) << 32)) return w + ": absurd stride " + std::to_string(d.stride);
  const uint64_t need = d.stride * uint64_t(d.height - 1) + row;
  if (d.size < need)
    return w + ": " + std::to_string(d.size) + " bytes reserved but the pixels need " +
           std::to_string(need);
  if (d.offset < header_size || d.offset > seg_size || d.size > seg_size - d.offset)
    return w + ": pixels at offset " + std::to_string(d.offset) + " (+" + std::to_string(d.size) +
           " bytes) lie outside the " + std::to_string(seg_size) + "-byte segment";
  return {};
}

}  // namespace

bool valid_pixel_format(uint32_t f) { return f >= 1 && f <= 6; }

size_t bytes_per_pixel(PixelFormat f) { return size_t(channels(f)) * size_t(bytes_per_channel(f)); }

bool valid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + size_t(len) > n) return false;
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000))
      return false;  // overlong
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += size_t(len);
  }
  return true;
}

bool known_pipeline(const std::string& n) {
  return n == "generate" || n == "img2img" || n == "inpaint" || n == "edit" || n == "edit-plus" ||
         n == "edit-inpaint" || n == "edit-auto" || n == "decompose";
}

PipelineInputs pipeline_inputs(const std::string& n) {
  if (n == "img2img") return {1, 1, false};
  if (n == "inpaint") return {1, 1, true};
  // Qwen-Image-2.1 edits take 1-10 references (issue #15); a model may take fewer
  // (ModelCaps::max_references, checked once the job's model is known).
  if (n == "edit" || n == "edit-plus" || n == "edit-auto") return {1, kMaxEditReferences, false};
  if (n == "edit-inpaint") return {1, 1, true};
  if (n == "decompose") return {1, 1, false};
  return {0, 0, false};
}

std::string validate_job(const void* segment, size_t size, const Limits& lim, Request* out,
                         ErrorKind* kind) {
  *kind = ErrorKind::ProtocolMismatch;
  if (segment == nullptr || size < sizeof(SegmentPrefix))
    return "job segment too small (" + std::to_string(size) + " bytes) to hold a header";
  SegmentPrefix pre;
  std::memcpy(&pre, segment, sizeof pre);
  if (pre.magic != kMagicJob) return "not a qwen-image job segment (bad magic number)";
  if (pre.version < kOldestJobVersion || pre.version > kProtocolVersion)
    return "protocol version mismatch: the client speaks version " + std::to_string(pre.version) +
           ", this daemon versions " + std::to_string(kOldestJobVersion) + ".." +
           std::to_string(kProtocolVersion) +
           "; install the plug-in and the daemon from the same release";
  // Version 2 and 3 headers end before the later fields (JobHeader keeps its layout, fields are
  // only appended).
  const size_t header_size = job_header_size(pre.version);
  if (pre.header_size != header_size)
    return "job header size " + std::to_string(pre.header_size) + " differs from the daemon's " +
           std::to_string(header_size) + " for version " + std::to_string(pre.version) +
           " (mismatched builds)";
  *kind = ErrorKind::Rejected;
  if (size < header_size) return "job segment smaller than its header";
  if (pre.segment_size != size)
    return "segment size disagrees: the header says " + std::to_string(pre.segment_size) +
           " bytes, the segment has " + std::to_string(size);
  if (size > lim.max_segment_bytes)
    return "job segment of " + std::to_string(size) + " bytes exceeds the daemon's limit of " +
           std::to_string(lim.max_segment_bytes);

  // Work on a private copy: the client can still write to the shared header.
  JobHeader h;
  std::memset(&h, 0, sizeof h);
  std::memcpy(&h, segment, header_size);  // an older header leaves the later fields 0
  Request r;
  r.version = pre.version;
  bool ok = false;
  r.pipeline = fixed_string(h.pipeline, sizeof h.pipeline, &ok);
  if (!ok) return "pipeline name is not NUL-terminated";
  if (!known_pipeline(r.pipeline))
    return "unknown pipeline '" + (valid_utf8(r.pipeline) ? r.pipeline : std::string("?")) +
           "' (expected generate, img2img, inpaint, edit, edit-plus, edit-inpaint, edit-auto or "
           "decompose)";
  r.model = fixed_string(h.model, sizeof h.model, &ok);
  if (!ok) return "model name is not NUL-terminated";
  if (!valid_utf8(r.model)) return "model name is not valid UTF-8";

  // One set of limits (qwen_image/limits.h): what the engine would refuse is rejected here, at
  // submission; the daemon's configuration can only lower them.
  const int max_dim = std::min(lim.max_output_dim, kMaxOutputSide);
  const int max_steps = std::min(lim.max_steps, kMaxSteps);
  const int max_seq = std::min(lim.max_sequence_length, kMaxSequenceLength);
  auto bad_side = [&](int v) { return v < 0 || (v > 0 && v < kMinOutputSide) || v > max_dim; };
  if (bad_side(h.width) || bad_side(h.height))
    return "requested size " + std::to_string(h.width) + "x" + std::to_string(h.height) +
           " is out of range (0 = default, else " + std::to_string(kMinOutputSide) + ".." +
           std::to_string(max_dim) + " pixels a side)";
  if (int64_t(h.width) * h.height > kMaxOutputPixels)
    return "requested size " + std::to_string(h.width) + "x" + std::to_string(h.height) +
           " is larger than " + std::to_string(kMaxOutputPixels >> 20) + " megapixels";
  // Version 5: steps 0 and true_cfg_scale -1 leave them to the model (limits.h); an older client
  // never sends them, and its values are taken as before.
  const bool model_defaults = pre.version >= 5;
  const bool default_steps = model_defaults && h.steps == kModelDefaultSteps;
  if (!default_steps && (h.steps < 1 || h.steps > max_steps))
    return "steps must be 1.." + std::to_string(max_steps) + ", got " + std::to_string(h.steps) +
           (model_defaults ? " (0 = the model's default)" : "");
  if (h.num_images_per_prompt < 1 || h.num_images_per_prompt > lim.max_images_per_prompt)
    return "num_images_per_prompt must be 1.." + std::to_string(lim.max_images_per_prompt) +
           ", got " + std::to_string(h.num_images_per_prompt);
  if (h.max_sequence_length < 1 || h.max_sequence_length > max_seq)
    return "max_sequence_length must be 1.." + std::to_string(max_seq) + ", got " +
           std::to_string(h.max_sequence_length);
  const bool default_cfg = model_defaults && h.true_cfg_scale == kModelDefaultTrueCfgScale;
  if (!default_cfg && (!std::isfinite(h.true_cfg_scale) || h.true_cfg_scale < 0.0f ||
                       h.true_cfg_scale > kMaxTrueCfgScale))
    return "true_cfg_scale must be a number in 0.." + std::to_string(int(kMaxTrueCfgScale)) +
           (model_defaults ? " (-1 = the model's default)" : "");
  if (!std::isfinite(h.strength) || h.strength < 0.0f || h.strength > 1.0f)
    return "strength must be a number in 0..1";
  if (h.exact_geometry > 1) return "exact_geometry must be 0 or 1";
  if (!is_color(h.result_format))
    return "result format " + std::to_string(h.result_format) +
           " is not one of RGBA8, RGB8, RGBA_F32, RGB_F32";

  if (h.num_prompts < 1 || h.num_prompts > uint32_t(lim.max_prompts))
    return "a job needs 1.." + std::to_string(lim.max_prompts) + " prompts, got " +
           std::to_string(h.num_prompts);
  if (h.num_negative_prompts != 0 && h.num_negative_prompts != 1 &&
      h.num_negative_prompts != h.num_prompts)
    return "negative prompts: give none, one, or one per prompt";
  if (uint64_t(h.num_prompts) * uint64_t(h.num_images_per_prompt) > uint64_t(kMaxResults))
    return "too many result images (at most " + std::to_string(kMaxResults) + " per job)";
  if (h.num_loras > uint32_t(kMaxLoras))
    return "a job takes at most " + std::to_string(kMaxLoras) + " LoRAs, got " +
           std::to_string(h.num_loras);
  for (uint32_t i = 0; i < h.num_loras; ++i)
    if (!std::isfinite(h.lora_strengths[i]) || h.lora_strengths[i] < -kMaxLoraStrength ||
        h.lora_strengths[i] > kMaxLoraStrength)
      return "LoRA " + std::to_string(i + 1) + ": strength must be a number in -" +
             std::to_string(int(kMaxLoraStrength)) + ".." + std::to_string(int(kMaxLoraStrength));
  if (h.lightning > 1) return "lightning must be 0 or 1";
  if (h.shift != 0.0f && !(std::isfinite(h.shift) && h.shift > 0.0f && h.shift <= 100.0f))
    return "shift must be a number in (0, 100] (0 = default)";
  // Decompose (version 3). 0 = the default; other pipelines ignore the fields but they must still
  // be in range (one vocabulary, one set of limits).
  const int layers = h.layers == 0 ? kDefaultLayers : h.layers;
  const int resolution = h.resolution == 0 ? kDefaultResolution : h.resolution;
  if (layers < kMinLayers || layers > kMaxLayers)
    return "layers must be " + std::to_string(kMinLayers) + ".." + std::to_string(kMaxLayers) +
           ", got " + std::to_string(h.layers);
  if (!valid_decompose_resolution(resolution))
    return "resolution must be 640 or 1024 (the reference's buckets), got " +
           std::to_string(h.resolution);
  if (h.cfg_normalize > 1) return "cfg_normalize must be 0 or 1";
  // Qwen-Image-2.1 (version 4; older headers: the cache on, the model's output resolution).
  if (pre.version < 4) h.kv_cache = 1;
  if (h.kv_cache > 1) return "kv_cache must be 0 or 1";
  if (h.output_resolution != 0 &&
      (h.output_resolution < kMinOutputResolution || h.output_resolution > kMaxOutputResolution))
    return "output_resolution must be 0 (the model's default) or " +
           std::to_string(kMinOutputResolution) + ".." + std::to_string(kMaxOutputResolution) +
           ", got " + std::to_string(h.output_resolution);
  if (r.pipeline == "decompose") {
    if (h.width != 0 || h.height != 0)
      return "decompose takes no width/height (send 0): the output size follows the picture's "
             "aspect ratio at resolution " +
             std::to_string(resolution) + "^2";
    if (uint64_t(h.num_prompts) * uint64_t(h.num_images_per_prompt) * uint64_t(layers) >
        uint64_t(kMaxResults))
      return "too many result layers: " + std::to_string(h.num_prompts) + " prompt(s) x " +
             std::to_string(h.num_images_per_prompt) + " image(s) x " + std::to_string(layers) +
             " layers exceeds " + std::to_string(kMaxResults) + " per job";
    const auto f = static_cast<PixelFormat>(h.result_format);
    if (f != PixelFormat::RGBA8 && f != PixelFormat::RGBA_F32)
      return "decompose returns RGBA layers: ask for result format RGBA8 or RGBA_F32";
  }
  if (h.text_offset < header_size || h.text_offset > size || h.text_size > size - h.text_offset)
    return "prompt text lies outside the segment";
  {
    const char* t = static_cast<const char*>(segment) + h.text_offset;
    uint64_t pos = 0;
    const uint32_t count = h.num_prompts + h.num_negative_prompts;
    for (uint32_t i = 0; i < count + h.num_loras; ++i) {
      uint32_t len;
      if (h.text_size - pos < sizeof len) return "prompt text is truncated";
      std::memcpy(&len, t + pos, sizeof len);
      pos += sizeof len;
      if (i >= count) {  // a LoRA name or absolute path
        const std::string what = "LoRA " + std::to_string(i - count + 1);
        if (len == 0 || len > 4096) return what + ": the name must be 1..4096 bytes";
        if (h.text_size - pos < len) return "prompt text is truncated";
        std::string s(t + pos, len);
        pos += len;
        if (!valid_utf8(s) || s.find('\0') != std::string::npos)
          return what + ": the name is not valid UTF-8 text";
        r.loras.push_back({std::move(s), h.lora_strengths[i - count]});
        continue;
      }
      if (len > lim.max_prompt_bytes)
        return "prompt " + std::to_string(i + 1) + " is " + std::to_string(len) +
               " bytes long (at most " + std::to_string(lim.max_prompt_bytes) + ")";
      if (h.text_size - pos < len) return "prompt text is truncated";
      std::string s(t + pos, len);
      pos += len;
      if (!valid_utf8(s)) return "prompt " + std::to_string(i + 1) + " is not valid UTF-8";
      if (s.find('\0') != std::string::npos)
        return "prompt " + std::to_string(i + 1) + " contains a NUL character";
      (i < h.num_prompts ? r.prompts : r.negative_prompts).push_back(std::move(s));
    }
  }

  const PipelineInputs need = pipeline_inputs(r.pipeline);
  // A version-2/3 header has kMaxImages descriptors; version 4 adds more_images.
  const uint32_t max_carried = pre.version < 4 ? uint32_t(kMaxImages) : uint32_t(kMaxJobImages);
  if (h.num_images > max_carried)
    return "a version-" + std::to_string(pre.version) + " job carries at most " +
           std::to_string(max_carried) + " input images, got " + std::to_string(h.num_images);
  if (h.num_images < uint32_t(need.min_images) || h.num_images > uint32_t(need.max_images))
    return "pipeline " + r.pipeline + " takes " +
           (need.min_images == need.max_images
                ? std::to_string(need.min_images)
                : std::to_string(need.min_images) + ".." + std::to_string(need.max_images)) +
           " input image(s), got " + std::to_string(h.num_images);
  for (uint32_t i = 0; i < h.num_images; ++i) {
    const std::string what = "input image " + std::to_string(i + 1);
    const ImageDesc& d = i < uint32_t(kMaxImages) ? h.images[i] : h.more_images[i - kMaxImages];
    std::string e = check_image(d, size, header_size, lim, what.c_str());
    if (!e.empty()) return e;
    if (!is_color(d.format)) return what + ": must be RGB or RGBA";
    r.images.push_back(d);
  }
  if (h.has_mask > 1) return "has_mask must be 0 or 1";
  if (need.mask && !h.has_mask) return "pipeline " + r.pipeline + " needs a mask";
  if (!need.mask && h.has_mask) return "pipeline " + r.pipeline + " takes no mask";
  if (h.has_mask) {
    std::string e = check_image(h.mask, size, header_size, lim, "mask");
    if (!e.empty()) return e;
    if (!is_gray(h.mask.format)) return "mask: must be single-channel (GRAY8 or GRAY_F32)";
    if (h.mask.width != h.images[0].width || h.mask.height != h.images[0].height)
      return "mask is " + std::to_string(h.mask.width) + "x" + std::to_string(h.mask.height) +
             " but the image is " + std::to_string(h.images[0].width) + "x" +
             std::to_string(h.images[0].height);
    r.mask = h.mask;
  }
  const uint64_t preview_need = uint64_t(kPreviewMax) * kPreviewMax * 3;
  if (h.preview_size != 0 && (h.preview_size < preview_need || h.preview_offset < header_size ||
                              h.preview_offset > size || h.preview_size > size - h.preview_offset))
    return "preview area lies outside the segment or is too small";

  r.width = h.width;
  r.height = h.height;
  r.steps = h.steps;
  r.num_images_per_prompt = h.num_images_per_prompt;
  r.max_sequence_length = h.max_sequence_length;
  if (!default_cfg) r.true_cfg_scale = h.true_cfg_scale;
  r.strength = h.strength;
  r.exact_geometry = h.exact_geometry != 0;
  r.seed = h.seed;
  r.result_format = static_cast<PixelFormat>(h.result_format);
  r.client_pid = h.client_pid;
  r.job_id = h.job_id;
  if (h.shift != 0.0f) r.shift = h.shift;
  r.lightning = h.lightning != 0;
  r.layers = layers;
  r.resolution = resolution;
  r.cfg_normalize = h.cfg_normalize != 0;
  r.kv_cache = h.kv_cache != 0;
  r.output_resolution = h.output_resolution;
  *kind = ErrorKind::None;
  if (out) *out = std::move(r);
  return {};
}

// ---- model list ----

std::string caps_flags(const ModelCaps& c) {
  if (!c.known) return "unknown";
  std::string s;
  auto add = [&](bool on, const char* name) {
    if (on) s += (s.empty() ? "" : ",") + std::string(name);
  };
  add(c.can_generate, "generate");
  add(c.can_edit, "edit");
  add(c.can_decompose, "decompose");
  add(c.rgba, "rgba");
  add(c.loras, "loras");
  return s.empty() ? "none" : s;
}

namespace {
constexpr const char* kCapsMagic = "qwen-image-caps ";
constexpr const char* kLorasMagic = "qwen-image-loras ";
std::string clean_field(std::string s) {  // no TAB / newline / NUL inside a field
  for (char& c : s)
    if (c == '\t' || c == '\n' || c == '\0') c = ' ';
  return s;
}
}  // namespace

void encode_models(const std::vector<ModelEntry>& models, char* out, size_t cap,
                   const std::vector<LoraInfo>& loras) {
  if (cap == 0) return;
  std::memset(out, 0, cap);
  std::string lines, caps = kCapsMagic + std::to_string(kProtocolVersion) + "\n";
  for (const auto& m : models) {
    std::string line =
        clean_field(m.name) + "\t" + clean_field(m.state) + "\t" + clean_field(m.dir) + "\n";
    std::string c = clean_field(m.caps.family) + "\t" + caps_flags(m.caps) + "\t" +
                    std::to_string(m.caps.max_references) + "\n";
    if (lines.size() + line.size() + 1 + caps.size() + c.size() + 1 > cap) break;
    lines += line;
    caps += c;
  }
  std::memcpy(out, lines.data(), lines.size());
  std::memcpy(out + lines.size() + 1, caps.data(), caps.size());
  // Version 4: the LoRA section after the capability section's NUL, in what is left.
  const size_t used = lines.size() + 1 + caps.size() + 1;
  std::string section = kLorasMagic + std::to_string(loras.size()) + "\n";
  if (used + section.size() + 1 > cap) return;
  for (const auto& l : loras) {
    std::string line = clean_field(l.name) + "\t" + (l.lightning ? "lightning" : "lora") + "\t" +
                       std::to_string(l.lightning_steps) + "\n";
    if (used + section.size() + line.size() + 1 > cap) continue;  // a shorter one may still fit
    section += line;
  }
  std::memcpy(out + used, section.data(), section.size());
}

std::vector<ModelEntry> decode_models(const char* buf, size_t cap, int* job_version,
                                      std::vector<LoraInfo>* loras, int* loras_left_out) {
  std::vector<ModelEntry> out;
  *job_version = 2;
  if (loras) loras->clear();
  if (loras_left_out) *loras_left_out = 0;
  const char* nul = static_cast<const char*>(std::memchr(buf, 0, cap));
  const std::string lines(buf, nul ? nul : buf + cap);
  auto split = [](const std::string& text, char sep) {
    std::vector<std::string> parts;
    size_t pos = 0;
    for (;;) {
      size_t e = text.find(sep, pos);
      parts.push_back(text.substr(pos, e == std::string::npos ? std::string::npos : e - pos));
      if (e == std::string::npos) break;
      pos = e + 1;
    }
    return parts;
  };
  for (const auto& line : split(lines, '\n')) {
    if (line.empty()) continue;
    ModelEntry m;
    const auto f = split(line, '\t');
    m.name = f[0];
    if (f.size() > 1) m.state = f[1];
    if (f.size() > 2) m.dir = line.substr(f[0].size() + f[1].size() + 2);
    out.push_back(std::move(m));
  }
  if (!nul || size_t(nul - buf) + 1 >= cap) return out;
  const char* start = nul + 1;
  const char* end = static_cast<const char*>(std::memchr(start, 0, cap - size_t(start - buf)));
  if (!end) return out;
  const auto caps_lines = split(std::string(start, end), '\n');
  const std::string magic = kCapsMagic;
  if (caps_lines.empty() || caps_lines[0].rfind(magic, 0) != 0) return out;
  try {
    *job_version = std::stoi(caps_lines[0].substr(magic.size()));
  } catch (const std::exception&) {
    *job_version = 2;
    return out;
  }
  for (size_t i = 0; i < out.size() && i + 1 < caps_lines.size(); ++i) {
    const auto f = split(caps_lines[i + 1], '\t');
    if (f.size() != 3) continue;
    ModelCaps c;
    c.family = f[0];
    bool ok = true, unknown = false;
    for (const auto& flag : split(f[1], ',')) {  // flags of a newer daemon are ignored
      c.can_generate |= flag == "generate";
      c.can_edit |= flag == "edit";
      c.can_decompose |= flag == "decompose";
      c.rgba |= flag == "rgba";
      c.loras |= flag == "loras";
      unknown |= flag == "unknown";
    }
    try {
      c.max_references = std::stoi(f[2]);
    } catch (const std::exception&) {
      ok = false;
    }
    c.known = ok && !unknown;
    out[i].caps = c;
  }
  // Version 4: the LoRA section.
  if (size_t(end - buf) + 1 >= cap) return out;
  const char* lstart = end + 1;
  const char* lend = static_cast<const char*>(std::memchr(lstart, 0, cap - size_t(lstart - buf)));
  if (!lend) return out;
  const auto lora_lines = split(std::string(lstart, lend), '\n');
  const std::string lmagic = kLorasMagic;
  if (lora_lines.empty() || lora_lines[0].rfind(lmagic, 0) != 0) return out;
  int total = 0;
  try {
    total = std::stoi(lora_lines[0].substr(lmagic.size()));
  } catch (const std::exception&) {
    return out;
  }
  std::vector<LoraInfo> found;
  for (size_t i = 1; i < lora_lines.size(); ++i) {
    const auto f = split(lora_lines[i], '\t');
    if (f.size() < 3 || f[0].empty()) continue;
    LoraInfo l;
    l.name = f[0];
    l.lightning = f[1] == "lightning";
    try {
      l.lightning_steps = std::stoi(f[2]);
    } catch (const std::exception&) {
      l.lightning_steps = 0;
    }
    found.push_back(std::move(l));
  }
  if (loras_left_out) *loras_left_out = std::max(0, total - int(found.size()));
  if (loras) *loras = std::move(found);
  return out;
}

// ---- client side ----

namespace {
size_t view_stride(const ImageView& v) {
  return v.stride ? v.stride : size_t(v.width) * bytes_per_pixel(v.format);
}
size_t view_bytes(const ImageView& v) {
  return view_stride(v) * size_t(v.height - 1) + size_t(v.width) * bytes_per_pixel(v.format);
}
void check_view(const ImageView& v, const std::string& what) {
  auto bad = [&](const std::string& m) {
    throw ClientError(ClientError::Kind::Rejected, what + m);
  };
  if (!valid_pixel_format(uint32_t(v.format))) bad(": unknown pixel format");
  if (v.width <= 0 || v.height <= 0) bad(": empty image");
  if (v.data == nullptr) bad(": no pixel data");
  if (v.stride != 0 && v.stride < size_t(v.width) * bytes_per_pixel(v.format))
    bad(": stride smaller than a row");
}
}  // namespace

JobLayout plan_job(const JobRequest& req) {
  JobLayout L;
  if (req.images.size() > size_t(kMaxJobImages))
    throw ClientError(ClientError::Kind::Rejected, "at most " + std::to_string(kMaxJobImages) +
                                                       " input images per job, got " +
                                                       std::to_string(req.images.size()));
  if (req.pipeline.size() >= sizeof(JobHeader::pipeline))
    throw ClientError(ClientError::Kind::Rejected, "pipeline name too long");
  if (req.model.size() >= sizeof(JobHeader::model))
    throw ClientError(ClientError::Kind::Rejected, "model name too long");
  if (req.loras.size() > size_t(kMaxLoras))
    throw ClientError(ClientError::Kind::Rejected,
                      "at most " + std::to_string(kMaxLoras) + " LoRAs per job");
  if (req.layers < kMinLayers || req.layers > kMaxLayers)
    throw ClientError(ClientError::Kind::Rejected, "layers must be " + std::to_string(kMinLayers) +
                                                       ".." + std::to_string(kMaxLayers) +
                                                       ", got " + std::to_string(req.layers));
  if (!valid_decompose_resolution(req.resolution))
    throw ClientError(ClientError::Kind::Rejected,
                      "resolution must be 640 or 1024, got " + std::to_string(req.resolution));
  size_t off = align_up(sizeof(JobHeader));
  L.text_offset = off;
  for (const auto* list : {&req.prompts, &req.negative_prompts})
    for (const auto& s : *list) {
      if (s.size() > std::numeric_limits<uint32_t>::max())
        throw ClientError(ClientError::Kind::Rejected, "prompt too long");
      L.text_size += sizeof(uint32_t) + s.size();
    }
  for (const auto& l : req.loras) {
    if (l.name.empty() || l.name.size() > 4096)
      throw ClientError(ClientError::Kind::Rejected, "LoRA name must be 1..4096 bytes");
    L.text_size += sizeof(uint32_t) + l.name.size();
  }
  off = align_up(off + L.text_size);
  for (size_t i = 0; i < req.images.size(); ++i) {
    check_view(req.images[i], "input image " + std::to_string(i + 1));
    L.image_offsets.push_back(off);
    off = align_up(off + view_bytes(req.images[i]));
  }
  if (req.mask) {
    check_view(*req.mask, "mask");
    L.mask_offset = off;
    off = align_up(off + view_bytes(*req.mask));
  }
  L.preview_offset = off;
  L.preview_size = size_t(kPreviewMax) * kPreviewMax * 3;
  L.total = align_up(off + L.preview_size);
  return L;
}

void encode_job(const JobRequest& req, const JobLayout& L, int64_t pid, uint64_t job_id,
                void* segment) {
  auto* base = static_cast<uint8_t*>(segment);
  JobHeader h;
  std::memset(&h, 0, sizeof h);
  h.prefix = {kMagicJob, kProtocolVersion, uint32_t(sizeof(JobHeader)), 0, uint64_t(L.total)};
  h.state = uint32_t(JobState::Submitted);
  h.client_pid = pid;
  h.job_id = job_id;
  std::memcpy(h.pipeline, req.pipeline.data(), req.pipeline.size());
  std::memcpy(h.model, req.model.data(), req.model.size());
  h.width = req.width;
  h.height = req.height;
  h.steps = req.steps;
  h.num_images_per_prompt = req.num_images_per_prompt;
  h.max_sequence_length = req.max_sequence_length;
  h.true_cfg_scale = req.true_cfg_scale;
  h.strength = req.strength;
  h.exact_geometry = req.exact_geometry ? 1 : 0;
  h.seed = req.seed;
  h.result_format = uint32_t(req.result_format);
  h.num_prompts = uint32_t(req.prompts.size());
  h.num_negative_prompts = uint32_t(req.negative_prompts.size());
  h.text_offset = L.text_offset;
  h.text_size = L.text_size;
  uint8_t* t = base + L.text_offset;
  for (const auto* list : {&req.prompts, &req.negative_prompts})
    for (const auto& s : *list) {
      const uint32_t n = uint32_t(s.size());
      std::memcpy(t, &n, sizeof n);
      std::memcpy(t + sizeof n, s.data(), s.size());
      t += sizeof n + s.size();
    }
  h.num_loras = uint32_t(req.loras.size());
  for (size_t i = 0; i < req.loras.size(); ++i) {
    const std::string& s = req.loras[i].name;
    const uint32_t n = uint32_t(s.size());
    std::memcpy(t, &n, sizeof n);
    std::memcpy(t + sizeof n, s.data(), s.size());
    t += sizeof n + s.size();
    h.lora_strengths[i] = req.loras[i].strength;
  }
  h.lightning = req.lightning ? 1 : 0;
  h.shift = req.shift ? *req.shift : 0.0f;
  h.layers = req.layers;
  h.resolution = req.resolution;
  h.cfg_normalize = req.cfg_normalize ? 1 : 0;
  h.kv_cache = req.kv_cache ? 1 : 0;
  h.output_resolution = req.output_resolution;
  h.phase = uint32_t(JobPhase::Queued);
  h.phase_fraction = -1.0f;
  auto put = [&](const ImageView& v, size_t off, ImageDesc* d) {
    d->width = v.width;
    d->height = v.height;
    d->format = uint32_t(v.format);
    d->stride = view_stride(v);
    d->offset = off;
    d->size = view_bytes(v);
    std::memcpy(base + off, v.data, d->size);
  };
  h.num_images = uint32_t(req.images.size());
  for (size_t i = 0; i < req.images.size(); ++i)
    put(req.images[i], L.image_offsets[i],
        i < size_t(kMaxImages) ? &h.images[i] : &h.more_images[i - kMaxImages]);
  if (req.mask) {
    h.has_mask = 1;
    put(*req.mask, L.mask_offset, &h.mask);
  }
  h.preview_offset = L.preview_offset;
  h.preview_size = L.preview_size;
  std::memcpy(base, &h, sizeof h);
}

}  // namespace qwen::ipc::proto

namespace qwen::ipc {

int channels(PixelFormat f) {
  switch (f) {
    case PixelFormat::RGBA8:
    case PixelFormat::RGBA_F32:
      return 4;
    case PixelFormat::RGB8:
    case PixelFormat::RGB_F32:
      return 3;
    case PixelFormat::GRAY8:
    case PixelFormat::GRAY_F32:
      return 1;
  }
  return 0;
}

int bytes_per_channel(PixelFormat f) {
  switch (f) {
    case PixelFormat::RGBA8:
    case PixelFormat::RGB8:
    case PixelFormat::GRAY8:
      return 1;
    case PixelFormat::RGBA_F32:
    case PixelFormat::RGB_F32:
    case PixelFormat::GRAY_F32:
      return 4;
  }
  return 0;
}

}  // namespace qwen::ipc
