// Edit-Inpaint (no golden fixture: structural invariants on the tiny edit model), the Exact edit
// geometry (result on the input's pixel grid) and step previews.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "common/fixtures.h"
#include "image/geometry.h"
#include "pipelines/engine.h"
#include "pipelines/engine_impl.h"
#include "pipelines/latents.h"
#include "pipelines/pipeline_edit.h"

namespace {

qwen::Engine& engine(bool preview = false) {
  auto open = [](bool with_preview) {
    qwen::EngineOptions o;
    o.model_dir = qwen::test::tiny_edit_model_dir();
    o.device = "cpu";
    o.threads = 2;
    o.preview = with_preview;
    return qwen::Engine::open(o);
  };
  static std::unique_ptr<qwen::Engine> plain = open(false);
  if (!preview) return *plain;
  static std::unique_ptr<qwen::Engine> with_preview = open(true);
  return *with_preview;
}

// A smooth colour pattern with some structure.
qwen::ImageU8 pattern(int w, int h) {
  qwen::ImageU8 img(w, h, 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = img.row(y) + size_t(x) * 3;
      p[0] = static_cast<uint8_t>(255 * x / (w - 1));
      p[1] = static_cast<uint8_t>(255 * y / (h - 1));
      p[2] = static_cast<uint8_t>(((x / 8 + y / 8) % 2) ? 200 : 40);
    }
  return img;
}

// White (repaint) rectangle [x0, x1) x [y0, y1) on black.
qwen::ImageU8 rect_mask(int w, int h, int x0, int y0, int x1, int y1) {
  qwen::ImageU8 m(w, h, 1, 0);
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) m.row(y)[x] = 255;
  return m;
}

qwen::RunParams inpaint_params(const qwen::ImageU8& image, const qwen::ImageU8& mask) {
  qwen::RunParams p;
  p.pipeline = qwen::PipelineKind::EditInpaint;
  p.prompts = {"Replace the centre with a red ball"};
  p.steps = 2;
  p.strength = 1.0f;
  p.seed = 11;
  p.images = {image};
  p.mask = mask;
  return p;
}

// Mean / max absolute difference over the pixels inside (or outside) a rectangle given in fractions
// of the image size.
struct Diff {
  double mean = 0;
  int max = 0;
};
Diff diff(const qwen::ImageU8& a, const qwen::ImageU8& b, double fx0, double fy0, double fx1,
          double fy1, bool inside) {
  EXPECT_EQ(a.width, b.width);
  EXPECT_EQ(a.height, b.height);
  Diff d;
  int64_t n = 0;
  double sum = 0;
  for (int y = 0; y < a.height; ++y)
    for (int x = 0; x < a.width; ++x) {
      const double fx = (x + 0.5) / a.width, fy = (y + 0.5) / a.height;
      const bool in = fx >= fx0 && fx < fx1 && fy >= fy0 && fy < fy1;
      if (in != inside) continue;
      for (int c = 0; c < 3; ++c) {
        const int v = std::abs(int(a.row(y)[x * 3 + c]) - int(b.row(y)[x * 3 + c]));
        sum += v;
        d.max = std::max(d.max, v);
        ++n;
      }
    }
  d.mean = n ? sum / double(n) : 0.0;
  return d;
}

}  // namespace

// The loop itself: exact invariants in latent space (the VAE decoder's mid-block attention lets
// every latent influence every pixel a little, so pixels are only close, latents are exact).
TEST(EditInpaintLoop, KeepsUnmaskedLatentsExactlyAndConditionsOnTheImage) {
  using namespace qwen::pipelines;
  auto& qe = dynamic_cast<QwenEngine&>(engine());
  auto& tr = *qe.transformer();
  const int64_t H = 64, W = 96, h = H / 8, w = W / 8;
  auto gen0 = make_generator(1);
  auto image = randn(gen0, {1, 16, 1, h, w}, torch::kFloat32, torch::kCPU);
  auto mask_img = torch::zeros({1, 16, h, w});
  mask_img.slice(2, 2, 6).slice(3, 4, 8).fill_(1);  // repaint a block of 2x2 patches
  auto mask = pack_latents(mask_img);
  TextCondition cond{
      randn(gen0, {1, 7, tr.config().joint_attention_dim}, torch::kFloat32, torch::kCPU), {}};
  LatentJob job;
  job.height = H;
  job.width = W;
  job.steps = 4;
  job.true_cfg_scale = 1.0;
  auto run = [&](double strength, int64_t seed, DenoiseTrace* trace) {
    auto gen = make_generator(seed);
    return edit_inpaint_latents(tr, qe.scheduler_config(), job, strength, image, mask, cond, {},
                                gen, torch::kFloat32, torch::kCPU, {}, trace);
  };
  DenoiseTrace trace;
  auto out = run(0.6, 5, &trace);
  // strength 0.6 of 4 steps: t_start = int(4 - 2.4) = 1, three steps.
  EXPECT_EQ(trace.step_latents.size(), 3u);
  const auto packed_image = pack_latents(image);
  EXPECT_TRUE(torch::equal(out * (1 - mask), packed_image * (1 - mask)));
  EXPECT_GT((out - packed_image).abs().mul(mask).max().item<float>(), 1e-3);
  EXPECT_TRUE(torch::equal(run(0.6, 5, nullptr), out));
  EXPECT_FALSE(torch::equal(run(0.6, 6, nullptr), out));
  // Before the last step the kept area is the image noised to the current sigma, not the image.
  EXPECT_FALSE(torch::equal(trace.step_latents[0] * (1 - mask), packed_image * (1 - mask)));
  // A small strength still runs one step (get_timesteps truncates N - N * strength).
  DenoiseTrace one;
  run(0.1, 5, &one);
  EXPECT_EQ(one.step_latents.size(), 1u);
  EXPECT_THROW(run(0.0, 5, nullptr), std::invalid_argument);
}

TEST(EditInpaintEngine, KeepsUnmaskedPixelsAndRepaintsTheMask) {
  const int w = 96, h = 64;
  const auto image = pattern(w, h);
  // Keep-everything mask: the result is the VAE round trip of the (resized) input with the same
  // posterior sample (the generator's first draw), since every step blends the kept latents back.
  auto keep = inpaint_params(image, qwen::ImageU8(w, h, 1, 0));
  auto round_trip = engine().run(keep);
  ASSERT_EQ(round_trip.size(), 1u);
  const auto calc = qwen::calculate_dimensions(1024.0 * 1024.0, w, h);
  EXPECT_EQ(round_trip[0].width, calc.width);  // forced to the calculated size
  EXPECT_EQ(round_trip[0].height, calc.height);

  // Repaint the central third.
  auto job = inpaint_params(image, rect_mask(w, h, w / 3, h / 3, 2 * w / 3, 2 * h / 3));
  job.width = 64;  // ignored: Edit-Inpaint always runs at the calculated size
  job.height = 64;
  auto out = engine().run(job);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].width, calc.width);
  ASSERT_EQ(out[0].height, calc.height);
  // Far outside the mask (a margin of 1/12 of the image around it): the round trip.
  const double m = 1.0 / 12;
  const auto outside = diff(out[0], round_trip[0], 1.0 / 3 - m, 1.0 / 3 - m, 2.0 / 3 + m,
                            2.0 / 3 + m, /*inside=*/false);
  const auto inside = diff(out[0], round_trip[0], 0.4, 0.4, 0.6, 0.6, /*inside=*/true);
  // The latents there are exact (EditInpaintLoop); the decoder's mid-block attention spreads a
  // little of the repainted area everywhere, so the pixels are close, not equal.
  EXPECT_LE(outside.mean, 6.0) << "max " << outside.max;
  // Inside the mask the content changed, much more than outside.
  EXPECT_GT(inside.mean, 3 * outside.mean) << "outside " << outside.mean;

  // Deterministic for a seed; another seed repaints differently.
  auto again = engine().run(job);
  EXPECT_EQ(again[0].pixels, out[0].pixels);
  job.seed = 12;
  auto other = engine().run(job);
  EXPECT_NE(other[0].pixels, out[0].pixels);
}

TEST(EditInpaintEngine, RejectsBadInputs) {
  const auto image = pattern(40, 30);
  auto p = inpaint_params(image, qwen::ImageU8(20, 30, 1, 255));
  try {
    engine().run(p);
    FAIL() << "a mask of another size was accepted";
  } catch (const qwen::EngineError& e) {
    EXPECT_NE(std::string(e.what()).find("mask size 20x30 differs from the image size 40x30"),
              std::string::npos)
        << e.what();
  }
  p.mask.reset();
  EXPECT_THROW(engine().run(p), qwen::EngineError);  // no mask
  p.mask = qwen::ImageU8(40, 30, 1, 255);
  p.images.push_back(image);
  EXPECT_THROW(engine().run(p), qwen::EngineError);  // two images
  p.images.clear();
  EXPECT_THROW(engine().run(p), qwen::EngineError);  // none
}

TEST(EditGeometry, ExactReturnsTheInputGridReferenceTheModelSize) {
  const auto image = pattern(100, 73);
  qwen::RunParams p;
  p.pipeline = qwen::PipelineKind::Edit;
  p.prompts = {"Make it brighter"};
  p.steps = 1;
  p.seed = 3;
  p.images = {image};
  p.geometry = qwen::GeometryMode::Reference;
  auto ref = engine().run(p);
  const auto calc = qwen::calculate_dimensions(1024.0 * 1024.0, 100, 73);
  ASSERT_EQ(ref.size(), 1u);
  EXPECT_EQ(ref[0].width, calc.width);
  EXPECT_EQ(ref[0].height, calc.height);

  p.geometry = qwen::GeometryMode::Exact;
  auto exact = engine().run(p);
  ASSERT_EQ(exact.size(), 1u);
  EXPECT_EQ(exact[0].width, 100);
  EXPECT_EQ(exact[0].height, 73);
  EXPECT_EQ(exact[0].channels, 3);

  // Edit-Plus: the last image's grid.
  p.pipeline = qwen::PipelineKind::EditPlus;
  p.images = {pattern(50, 50), image};
  auto plus = engine().run(p);
  ASSERT_EQ(plus.size(), 1u);
  EXPECT_EQ(plus[0].width, 100);
  EXPECT_EQ(plus[0].height, 73);

  // Edit-Inpaint: the input's grid; far from the mask the result stays close to the input
  // structure of the keep-everything run.
  auto ip = inpaint_params(image, rect_mask(100, 73, 40, 30, 60, 45));
  ip.geometry = qwen::GeometryMode::Exact;
  auto inp = engine().run(ip);
  ASSERT_EQ(inp.size(), 1u);
  EXPECT_EQ(inp[0].width, 100);
  EXPECT_EQ(inp[0].height, 73);
  ip.mask = qwen::ImageU8(100, 73, 1, 0);
  auto keep = engine().run(ip);
  const auto outside = diff(inp[0], keep[0], 0.25, 0.25, 0.75, 0.75, /*inside=*/false);
  const auto inside = diff(inp[0], keep[0], 0.42, 0.43, 0.58, 0.6, /*inside=*/true);
  EXPECT_LE(outside.mean, 6.0) << "max " << outside.max;
  EXPECT_GT(inside.mean, 3 * outside.mean) << "outside " << outside.mean;
}

TEST(EnginePreview, SmallRgbPreviewEveryStep) {
  qwen::RunParams p;
  p.pipeline = qwen::PipelineKind::Edit;
  p.prompts = {"Make it brighter"};
  p.steps = 3;
  p.seed = 3;
  p.images = {pattern(100, 73)};
  int calls = 0;
  engine(true).run(p, [&](const qwen::ProgressInfo& info) {
    ++calls;
    EXPECT_FALSE(info.preview.empty()) << "step " << info.step;
    EXPECT_EQ(info.preview.channels, 3);
    EXPECT_LE(std::max(info.preview.width, info.preview.height), 256);
    EXPECT_EQ(info.preview.pixels.size(), info.preview.size_bytes());
    // The latent grid (1/8 of the model size), aspect ratio kept.
    const auto calc = qwen::calculate_dimensions(1024.0 * 1024.0, 100, 73);
    EXPECT_EQ(info.preview.width, calc.width / 8);
    EXPECT_EQ(info.preview.height, calc.height / 8);
    return true;
  });
  EXPECT_EQ(calls, 3);
  // Without the option: no preview.
  engine(false).run(p, [&](const qwen::ProgressInfo& info) {
    EXPECT_TRUE(info.preview.empty());
    return true;
  });
}
