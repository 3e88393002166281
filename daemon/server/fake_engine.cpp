#include "server/fake_engine.h"

#include <chrono>
#include <thread>

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
    info_.can_edit = true;
  }
  const ModelInfo& info() const override { return info_; }
  std::vector<ImageU8> run(const RunParams& p, const ProgressFn& progress) override {
    for (const auto& s : p.prompts)
      if (s == "fail") throw EngineError("fake engine: failure requested by the prompt");
    for (int step = 1; step <= p.steps; ++step) {
      if (step_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(step_ms_));
      ProgressInfo info;
      info.step = step;
      info.total = p.steps;
      if (step % 2 == 0) {
        info.preview.width = 300;  // larger than a preview: the daemon scales it down
        info.preview.height = 200;
        info.preview.channels = 3;
        info.preview.pixels.assign(300 * 200 * 3, uint8_t(step * 10));
      }
      if (progress && !progress(info)) throw CancelledError();
    }
    return fake_results(p);
  }

 private:
  ModelInfo info_;
  int step_ms_;
};

}  // namespace

std::vector<ImageU8> fake_results(const RunParams& p) {
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
