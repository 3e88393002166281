#include "image/vision_processor.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "image/convert.h"
#include "image/resample.h"
#include "image/vision_processor_json.h"

namespace qwen {

const char* to_string(VisionBackend b) { return b == VisionBackend::Pil ? "pil" : "torchvision"; }

VisionBackend parse_vision_backend(const std::string& name) {
  if (name == "torchvision") return VisionBackend::Torchvision;
  if (name == "pil") return VisionBackend::Pil;
  throw ImageError("vision processor must be 'torchvision' (the default) or 'pil', got '" + name +
                   "'");
}

VisionProcessorConfig VisionProcessorConfig::from_json_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw ImageError(path + ": cannot open the image processor config");
  std::stringstream ss;
  ss << f.rdbuf();
  return vision_processor_config_from_json_text(ss.str(), path);
}

VisionProcessorConfig vision_processor_config_from_json_text(const std::string& text,
                                                             const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw ImageError(path + ": malformed JSON: " + e.what());
  }
  VisionProcessorConfig c;
  try {
    if (!j.is_object()) throw ImageError("top level is not an object");
    // transformers 5 Qwen2VLImageProcessor: `size` {shortest_edge, longest_edge} (the only form in
    // Qwen3-VL's preprocessor_config.json), overridden by min_pixels / max_pixels when present.
    if (auto sz = j.find("size"); sz != j.end() && sz->is_object()) {
      c.min_pixels = sz->value("shortest_edge", c.min_pixels);
      c.max_pixels = sz->value("longest_edge", c.max_pixels);
    }
    c.min_pixels = j.value("min_pixels", c.min_pixels);
    c.max_pixels = j.value("max_pixels", c.max_pixels);
    c.patch_size = j.value("patch_size", c.patch_size);
    c.temporal_patch_size = j.value("temporal_patch_size", c.temporal_patch_size);
    c.merge_size = j.value("merge_size", c.merge_size);
    c.rescale_factor = j.value("rescale_factor", c.rescale_factor);
    c.do_convert_rgb = j.value("do_convert_rgb", c.do_convert_rgb);
    for (const char* key : {"image_mean", "image_std"}) {
      if (!j.contains(key)) continue;
      const auto& a = j.at(key);
      if (!a.is_array() || a.size() != 3)
        throw ImageError(std::string(key) + " must have 3 values");
      auto& dst = std::string(key) == "image_mean" ? c.image_mean : c.image_std;
      for (int i = 0; i < 3; ++i) dst[i] = float(a[i].get<double>());
    }
    if (j.value("resample", 3) != 3) throw ImageError("only resample = 3 (bicubic) is supported");
    for (const char* key : {"do_resize", "do_rescale", "do_normalize"}) {
      if (!j.value(key, true)) throw ImageError(std::string(key) + " = false is not supported");
    }
  } catch (const ImageError& e) {
    throw ImageError(path + ": " + e.what());
  } catch (const std::exception& e) {
    throw ImageError(path + ": bad value: " + e.what());
  }
  if (c.patch_size <= 0 || c.merge_size <= 0 || c.temporal_patch_size <= 0 || c.min_pixels <= 0 ||
      c.max_pixels < c.min_pixels) {
    throw ImageError(path + ": invalid patch / pixel-range settings");
  }
  return c;
}

ImageU8 vision_resize(const ImageU8& image, const VisionProcessorConfig& config,
                      const VisionResizer& torchvision_resize) {
  validate_image(image, "vision processor input", {1, 2, 3, 4});
  // Both backends convert a PIL image with transformers' convert_to_rgb (alpha on white).
  ImageU8 rgb = config.do_convert_rgb ? composite_on_white(image) : to_rgb(image);
  const Size s =
      smart_resize(rgb.height, rgb.width, config.factor(), config.min_pixels, config.max_pixels);
  if (config.backend == VisionBackend::Pil)
    return resize(rgb, s.width, s.height, ResampleFilter::Bicubic, config.pillow_order);
  // torchvision's resize returns the input unchanged when the size is the same.
  if (s.width == rgb.width && s.height == rgb.height) return rgb;
  if (!torchvision_resize)
    throw ImageError(
        "vision processor: the torchvision backend needs torch's resize (pipelines::vision_inputs "
        "supplies it); select the pil backend to run without torch");
  ImageU8 out = torchvision_resize(rgb, s.width, s.height);
  if (out.width != s.width || out.height != s.height || out.channels != 3)
    throw ImageError("vision processor: the torchvision resize returned a wrong image size");
  return out;
}

VisionPatches preprocess_vision(const std::vector<ImageU8>& images,
                                const VisionProcessorConfig& config,
                                const VisionResizer& torchvision_resize) {
  if (images.empty()) throw ImageError("vision processor: no images given");
  const int ps = config.patch_size, ms = config.merge_size, tps = config.temporal_patch_size;
  VisionPatches out;
  out.row_width = config.row_width();
  // Per channel lookup: uint8 -> normalised float32.
  std::array<std::array<float, 256>, 3> lut{};
  for (int c = 0; c < 3; ++c) {
    if (config.backend == VisionBackend::Pil) {
      // Qwen2VLImageProcessorPil: numpy rescale (float64, stored float32), then
      // (x - mean) / std in float32.
      for (int u = 0; u < 256; ++u) {
        const float v = float(double(u) * config.rescale_factor);
        lut[c][u] = (v - config.image_mean[c]) / config.image_std[c];
      }
    } else {
      // TorchvisionBackend._fuse_mean_std_and_rescale_factor: float32 tensor(mean) times the
      // Python float 1 / rescale_factor, computed in float32; then tvF.normalize on the float32
      // image: sub_(mean') then div_(std'), each rounded to float32.
      const float inv = float(1.0 / config.rescale_factor);
      const float mean = config.image_mean[c] * inv, std = config.image_std[c] * inv;
      for (int u = 0; u < 256; ++u) lut[c][u] = (float(u) - mean) / std;
    }
  }
  std::vector<ImageU8> resized;
  resized.reserve(images.size());
  for (const ImageU8& im : images) {
    resized.push_back(vision_resize(im, config, torchvision_resize));
    const ImageU8& r = resized.back();
    const int64_t gh = r.height / ps, gw = r.width / ps;
    out.grid_thw.push_back({1, gh, gw});
    out.resized.push_back(Size{r.width, r.height});
    out.rows += gh * gw;
  }
  out.pixel_values.resize(size_t(out.rows * out.row_width));
  float* dst = out.pixel_values.data();
  for (const ImageU8& r : resized) {
    const int gh = r.height / ps, gw = r.width / ps;
    for (int bh = 0; bh < gh / ms; ++bh) {
      for (int bw = 0; bw < gw / ms; ++bw) {
        for (int mh = 0; mh < ms; ++mh) {
          for (int mw = 0; mw < ms; ++mw) {
            const int y0 = (bh * ms + mh) * ps, x0 = (bw * ms + mw) * ps;
            for (int c = 0; c < 3; ++c) {
              for (int t = 0; t < tps; ++t) {  // every temporal slot holds the same frame
                for (int py = 0; py < ps; ++py) {
                  const uint8_t* src = r.row(y0 + py) + size_t(x0) * 3 + c;
                  for (int px = 0; px < ps; ++px) *dst++ = lut[c][src[size_t(px) * 3]];
                }
              }
            }
          }
        }
      }
    }
  }
  return out;
}

}  // namespace qwen
