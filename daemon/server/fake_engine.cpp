#include "server/fake_engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <thread>

#include "server/model_caps.h"

namespace qwen::server {

namespace {

uint32_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return uint32_t(x);
}

uint64_t hash_str(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

class FakeEngine : public Engine {
 public:
  FakeEngine(const EngineOptions& o, int step_ms) : step_ms_(step_ms) {
    info_.model_dir = o.model_dir;
    info_.pipeline_class = "FakeEngine";
    info_.device = "cpu";
    info_.dtype = "float32";
    // Capabilities of the model it stands in for (model_type or model_index.json): a Layered
    // model only decomposes; anything else runs every other pipeline, as before.
    const ipc::ModelCaps caps =
        caps_before_load(ModelSpec{"", o.model_dir, {}, {}, {}, o.model_type});
    info_.model_type = o.model_type;
    info_.can_decompose = caps.known && caps.can_decompose;
    // Edits as the model it stands in for can (an unknown model: anything but decompose), so the
    // plug-in sees the real models' capabilities (issue #17).
    info_.can_edit = caps.known ? caps.can_edit : !info_.can_decompose;
    if (info_.can_decompose) {
      info_.pipeline_class = "FakeEngine (QwenImageLayeredPipeline)";
      info_.default_pipeline = PipelineKind::Decompose;
    } else if (caps.known && caps.max_references == 3) {
      info_.default_pipeline = PipelineKind::EditPlus;
    }
    // A Qwen-Image-2.1 folder (model_index.json names QwenImage21Pipeline): RGBA results, so the
    // model list says rgba and 10 references (caps_of) and the plug-in's alpha path is tested.
    if (caps.known && caps.rgba && caps.can_edit) {
      info_.family = "qwen-image-2.1";
      info_.pipeline_class = "FakeEngine (QwenImage21Pipeline)";
      rgba_ = true;
    }
  }
  const ModelInfo& info() const override { return info_; }
  std::vector<ImageU8> run(const RunParams& p, const ProgressFn& progress) override {
    for (const auto& s : p.prompts)
      if (s == "fail") throw EngineError("fake engine: failure requested by the prompt");
    const int steps = p.steps > 0 ? p.steps : 50;  // 0: the model's default, as QwenEngine
    for (int step = 1; step <= steps; ++step) {
      if (step_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(step_ms_));
      ProgressInfo info;
      info.step = step;
      info.total = steps;
      if (step % 2 == 0) {
        info.preview.width = 300;  // larger than a preview: the daemon scales it down
        info.preview.height = 200;
        info.preview.channels = 3;
        info.preview.pixels.assign(300 * 200 * 3, uint8_t(step * 10));
      }
      if (progress && !progress(info)) throw CancelledError();
    }
    auto out = fake_results(p);
    if (rgba_)  // 2.1 stand-in: edits keep the first input's alpha; generate: a left-to-right ramp
      for (auto& im : out) {
        ImageU8 a;
        a.width = im.width;
        a.height = im.height;
        a.channels = 4;
        a.pixels.resize(a.size_bytes());
        const ImageU8* in = p.images.empty() ? nullptr : &p.images[0];
        for (int y = 0; y < im.height; ++y)
          for (int x = 0; x < im.width; ++x) {
            uint8_t* d = a.row(y) + size_t(x) * 4;
            const uint8_t* s = im.row(y) + size_t(x) * 3;
            d[0] = s[0], d[1] = s[1], d[2] = s[2];
            d[3] = in ? (in->channels == 4 ? in->row(y)[size_t(x) * 4 + 3] : 255)
                      : uint8_t(x * 255 / std::max(1, im.width - 1));
          }
        im = std::move(a);
      }
    return out;
  }

 private:
  ModelInfo info_;
  int step_ms_;
  bool rgba_ = false;
};

}  // namespace

std::pair<int, int> decompose_size(int width, int height, int resolution) {
  // QwenImageLayeredPipeline.__call__: calculate_dimensions(resolution^2, w / h) (rounded to
  // multiples of 32), then floored to multiples of vae_scale_factor * 2 = 16.
  const double ratio = double(width) / double(height);
  const double w = std::sqrt(double(resolution) * resolution * ratio);
  const double h = w / ratio;
  // Python's round() rounds halves to even, as std::nearbyint does in the default mode.
  int cw = int(std::nearbyint(w / 32.0)) * 32, ch = int(std::nearbyint(h / 32.0)) * 32;
  return {cw / 16 * 16, ch / 16 * 16};
}

std::vector<ImageU8> fake_layers(const RunParams& p) {
  if (p.images.empty()) throw EngineError("fake engine: decompose needs a picture");
  const ImageU8& in = p.images[0];
  const auto [w, h] = decompose_size(in.width, in.height, p.resolution);
  const int n = p.layers;
  std::vector<ImageU8> out;
  for (size_t pi = 0; pi < p.prompts.size(); ++pi)
    for (int k = 0; k < p.num_images_per_prompt; ++k)
      for (int layer = 0; layer < n; ++layer) {
        ImageU8 img;
        img.width = w;
        img.height = h;
        img.channels = 4;
        img.pixels.assign(img.size_bytes(), 0);
        // Band `layer` of n horizontal bands, nearest-neighbour from the input; transparent
        // elsewhere, so the layers' composite is the resized picture whatever their order.
        for (int y = layer * h / n; y < (layer + 1) * h / n; ++y)
          for (int x = 0; x < w; ++x) {
            const int sx = int(int64_t(x) * in.width / w), sy = int(int64_t(y) * in.height / h);
            const uint8_t* s = in.pixels.data() + (size_t(sy) * in.width + sx) * in.channels;
            uint8_t* d = img.row(y) + size_t(x) * 4;
            for (int c = 0; c < 3; ++c) d[c] = s[in.channels < 3 ? 0 : c];
            d[3] = in.channels == 4 ? s[3] : in.channels == 2 ? s[1] : 255;
          }
        out.push_back(std::move(img));
      }
  return out;
}

std::vector<ImageU8> fake_results(const RunParams& p) {
  if (p.pipeline == PipelineKind::Decompose) return fake_layers(p);
  std::vector<ImageU8> out;
  for (size_t pi = 0; pi < p.prompts.size(); ++pi) {
    for (int k = 0; k < p.num_images_per_prompt; ++k) {
      ImageU8 img;
      img.channels = 3;
      if (!p.images.empty()) {
        const ImageU8& in = p.images[0];
        img.width = in.width;
        img.height = in.height;
        img.pixels.resize(img.size_bytes());
        const size_t n = size_t(in.width) * size_t(in.height);
        for (size_t i = 0; i < n; ++i)
          for (int c = 0; c < 3; ++c)
            img.pixels[i * 3 + size_t(c)] =
                in.pixels[i * size_t(in.channels) + size_t(in.channels == 1 ? 0 : c)];
      } else {
        img.width = p.width > 0 ? p.width : 64;
        img.height = p.height > 0 ? p.height : 48;
        img.pixels.resize(img.size_bytes());
        const uint64_t base = uint64_t(p.seed) * 31 + hash_str(p.prompts[pi]) + uint64_t(k) * 7919;
        for (int y = 0; y < img.height; ++y)
          for (int x = 0; x < img.width; ++x) {
            const uint32_t v = mix(base ^ (uint64_t(y) << 32 | uint32_t(x)));
            uint8_t* px = img.row(y) + size_t(x) * 3;
            px[0] = uint8_t(v);
            px[1] = uint8_t(v >> 8);
            px[2] = uint8_t(v >> 16);
          }
      }
      out.push_back(std::move(img));
    }
  }
  return out;
}

std::unique_ptr<Engine> make_fake_engine(const EngineOptions& options, int step_ms) {
  return std::make_unique<FakeEngine>(options, step_ms);
}

}  // namespace qwen::server
