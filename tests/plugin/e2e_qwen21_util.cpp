#include "e2e_qwen21_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <filesystem>

#include "image/png.h"

namespace fs = std::filesystem;

namespace qwen::plugin::test {

namespace {

const std::string kCli = QWEN_BINARY_DIR "/daemon/cli/qwen-image";

// The reference interpreter: $QWEN_REFERENCE_PYTHON, else the checkout's .venv.
std::string reference_python() {
  if (const char* p = std::getenv("QWEN_REFERENCE_PYTHON"); p && *p) return p;
  return QWEN_PLUGIN_TEST_DIR "/../../.venv/bin/python";
}

// Runs argv (output into `out_file`) for at most `timeout_s`; "" when it exited 0, else what
// went wrong with the command and its output.
std::string run(const std::vector<std::string>& argv, const std::string& out_file,
                double timeout_s) {
  int rc;
  {
    Child child(argv, {{"OMP_NUM_THREADS", "1"}}, out_file);
    rc = child.wait(timeout_s);
  }
  if (rc == 0) return "";
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
  return cmd + "\nexit " + std::to_string(rc) + " (-1: timed out)\n" + read_file(out_file);
}

Size model_size(int width, int height) {
  SizeLimits limits;
  limits.min_pixels = 0;
  limits.max_pixels = 16384;  // kQwen21Config
  limits.multiple = 32;       // Qwen-Image-2.1 (plugin/common/jobs.cpp)
  return model_size_for({width, height}, limits);
}

void write_rgba_png(const Pixels& p, const std::string& path) {
  ImageU8 im(p.width, p.height, p.channels);
  im.pixels = p.data;
  write_png(path, im);
}

// The CLI's RGBA PNG at `path`, resized onto width x height as the plug-in does.
Pixels cli_result(const std::string& path, int width, int height, std::string* err) {
  const Pixels got = read_picture(path);
  if (got.channels != 4) {
    *err = "the CLI's result " + path + " is not an RGBA PNG (" + std::to_string(got.channels) +
           " channels)";
    return {};
  }
  return resize_rgba(got, width, height);
}

std::vector<std::string> job_args(const std::string& model, const std::string& prompt, Size size,
                                  const std::string& png) {
  return {"--model",
          model,
          "--prompt",
          prompt,
          "--width",
          std::to_string(size.w),
          "--height",
          std::to_string(size.h),
          "--steps",
          std::to_string(kQwen21Steps),
          "--seed",
          std::to_string(kQwen21Seed),
          "--true-cfg-scale",
          "1",
          "--device",
          "cpu",
          "--dtype",
          "float32",
          "--threads",
          "1",
          "-q",
          "--output",
          png};
}

}  // namespace

std::string qwen21_unavailable() {
  if (!fs::exists(kCli)) return "the qwen-image CLI is not built (" + kCli + ")";
  const std::string python = reference_python();
  if (!fs::exists(python))
    return "no reference venv at " + python + " (installers/setup.sh makes it)";
  return "";
}

TinyQwen21::TinyQwen21(int seed) {
  const std::string out = dir.path + "/gen";
  fs::create_directories(out);
  log = run({reference_python(), QWEN_PLUGIN_TEST_DIR "/../reference/gen_qwen21_pipeline.py", out,
             "--seed", std::to_string(seed), "--parts", "model", "--threads", "1"},
            dir.path + "/gen.log", 600);
  if (log.empty() && fs::exists(out + "/model/model_index.json")) model = out + "/model";
  if (model.empty() && log.empty()) log = "no model folder in " + out;
}

std::vector<std::string> TinyQwen21::daemon_args() const {
  return {"--device", "cpu", "--dtype", "float32", "--threads", "1", "--model", model};
}

Pixels TinyQwen21::generate_as_plugin(const std::string& prompt, int width, int height,
                                      const std::string& work, std::string* err) const {
  const Size size = model_size(width, height);
  const std::string png = work + "/cli-generate.png";
  std::vector<std::string> argv = {kCli, "generate"};
  for (auto& a : job_args(model, prompt, size, png)) argv.push_back(a);
  if (*err = run(argv, work + "/cli-generate.log", 600); !err->empty()) return {};
  return cli_result(png, width, height, err);
}

Pixels TinyQwen21::edit_as_plugin(const std::string& prompt, const Pixels& input,
                                  const std::vector<Pixels>& refs, const std::string& work,
                                  std::string* err) const {
  const Size size = model_size(input.width, input.height);
  std::vector<std::string> argv = {kCli, "edit"};
  const std::string in = work + "/cli-input.png";
  try {
    write_rgba_png(resize_rgba(input, size.w, size.h), in);
    argv.insert(argv.end(), {"--image", in});
    for (size_t i = 0; i < refs.size(); ++i) {
      const std::string ref = work + "/cli-ref" + std::to_string(i + 1) + ".png";
      write_rgba_png(refs[i], ref);
      argv.insert(argv.end(), {"--image", ref});
    }
  } catch (const std::exception& e) {
    *err = e.what();
    return {};
  }
  const std::string png = work + "/cli-edit.png";
  for (auto& a : job_args(model, prompt, size, png)) argv.push_back(a);
  if (*err = run(argv, work + "/cli-edit.log", 600); !err->empty()) return {};
  return cli_result(png, input.width, input.height, err);
}

namespace {

std::string daemon_log(const std::string& dir) { return read_file(dir + "/daemon.log"); }

// The bounds of the non-zero pixels of a 1-channel picture (empty Rect when there are none).
Rect nonzero_bounds(const Pixels& p) {
  int x0 = p.width, y0 = p.height, x1 = -1, y1 = -1;
  for (int y = 0; y < p.height; ++y)
    for (int x = 0; x < p.width; ++x)
      if (*p.px(x, y)) {
        x0 = std::min(x0, x), y0 = std::min(y0, y);
        x1 = std::max(x1, x), y1 = std::max(y1, y);
      }
  return x1 < 0 ? Rect{} : Rect{x0, y0, x1 - x0 + 1, y1 - y0 + 1};
}

Rect rect_of(const LayerInfo& l) { return {l.x, l.y, l.w, l.h}; }

// A linear 8-bit value in the sRGB curve (babl's "Y u8" -> "Y' u8").
uint8_t srgb_u8(uint8_t linear) {
  const double x = linear / 255.0;
  const double y = x <= 0.0031308 ? 12.92 * x : 1.055 * std::pow(x, 1 / 2.4) - 0.055;
  return uint8_t(std::lround(y * 255));
}

}  // namespace

void expect_qwen21_generate(const TinyQwen21& m, const std::string& dir, const std::string& ext,
                            const std::string& gimp) {
  const auto layers = read_layers(dir + "/layers.txt");
  ASSERT_EQ(layers.size(), 2u) << gimp << daemon_log(dir);
  EXPECT_EQ(rect_of(layers[0]), (Rect{0, 0, 64, 64}));
  EXPECT_FALSE(layers[0].has_mask);
  const Pixels result = read_picture(dir + "/result" + ext);
  ASSERT_EQ(result.width, 64) << gimp;
  // 4 channels: the layer has an alpha channel (an RGB one would come back with alpha 255).
  ASSERT_EQ(result.channels, 4);
  std::string err;
  const Pixels want = m.generate_as_plugin(kQwen21GeneratePrompt, 64, 64, dir, &err);
  ASSERT_EQ(want.width, 64) << err;
  EXPECT_EQ(differing_values(result, want), 0)
      << "channel values of the layer that differ from the CLI's RGBA PNG";
  int translucent =
      0;  // the random tiny model's alpha is not all opaque: the layer's is the model's
  for (size_t i = 3; i < want.data.size(); i += 4) translucent += want.data[i] < 255;
  EXPECT_GT(translucent, 0);
}

void expect_qwen21_edit_layer(const TinyQwen21& m, const std::string& dir, const std::string& ext,
                              const std::string& gimp) {
  const Pixels target = read_picture(dir + "/target" + ext), ref = read_picture(dir + "/ref" + ext);
  ASSERT_EQ(target.width, 77) << gimp;
  ASSERT_EQ(target.height, 53);
  ASSERT_EQ(ref.width, 40) << gimp;
  ASSERT_EQ(ref.height, 24);
  // Both pictures go to the model with their transparency (cleared areas: alpha 0).
  ASSERT_EQ(target.channels, 4);
  ASSERT_EQ(ref.channels, 4);
  int opaque = 0, cleared = 0;
  for (int y = 0; y < 53; ++y)
    for (int x = 0; x < 77; ++x) {
      const bool in = x >= 11 && x < 26 && y >= 9 && y < 19;  // image (20, 20, 15, 10)
      (in ? cleared : opaque) += target.px(x, y)[3] == (in ? 0 : 255);
    }
  EXPECT_EQ(cleared, 15 * 10);
  EXPECT_EQ(opaque, 77 * 53 - 15 * 10);
  EXPECT_EQ(ref.px(9, 23)[3], 0);
  EXPECT_EQ(ref.px(10, 0)[3], 255);
  const auto layers = read_layers(dir + "/layers.txt");
  ASSERT_EQ(layers.size(), 2u) << gimp << daemon_log(dir);
  EXPECT_EQ(rect_of(layers[0]), (Rect{9, 11, 77, 53})) << "not on the edited layer's pixel grid";
  EXPECT_FALSE(layers[0].has_mask);
  const Pixels result = read_picture(dir + "/result" + ext);
  ASSERT_EQ(result.width, 77) << gimp;
  ASSERT_EQ(result.height, 53);
  ASSERT_EQ(result.channels, 4);
  std::string err;
  const Pixels want = m.edit_as_plugin(kQwen21EditLayerPrompt, target, {ref}, dir, &err);
  ASSERT_EQ(want.width, 77) << err;
  EXPECT_EQ(differing_values(result, want), 0)
      << "channel values of the layer that differ from the CLI's edit";
}

void expect_qwen21_edit_selection(const TinyQwen21& m, const std::string& dir,
                                  const std::string& ext, const std::string& gimp) {
  const Rect layer{5, 4, 140, 100}, sel{61, 41, 37, 25}, crop_rect{29, 9, 101, 89};
  // The geometry as the plug-in works it out (plugin/core), for these numbers.
  const auto region = edit_region(layer, {0, 0, 150, 110}, sel);
  ASSERT_TRUE(region.has_value());
  ASSERT_EQ(region->crop, crop_rect);
  ASSERT_EQ(feather_radius(region->selection), 2);

  const Pixels selection = read_picture(dir + "/selection.pgm");
  ASSERT_EQ(selection.width, 150) << gimp;
  ASSERT_EQ(selection.channels, 1);
  ASSERT_EQ(nonzero_bounds(selection), sel) << "the selection is not the ellipse's";
  int partial = 0, outside_box = 0;
  for (uint8_t v : selection.data) partial += v != 0 && v != 255;
  ASSERT_EQ(partial, 0) << "the selection was made without antialiasing";
  for (int y = sel.y; y < sel.bottom(); ++y)
    for (int x = sel.x; x < sel.right(); ++x) outside_box += *selection.px(x, y) == 0;
  ASSERT_GT(outside_box, 0) << "the selection is not an ellipse";

  const auto layers = read_layers(dir + "/layers.txt");
  ASSERT_EQ(layers.size(), 2u) << gimp << daemon_log(dir);
  EXPECT_EQ(rect_of(layers[0]), crop_rect);
  EXPECT_TRUE(layers[0].has_mask);
  EXPECT_EQ(rect_of(layers[1]), layer);

  // The source layer is untouched, and so is the image outside the selection.
  const Pixels before = read_picture(dir + "/src-before" + ext);
  const Pixels after = read_picture(dir + "/src-after" + ext);
  ASSERT_EQ(before.width, 140) << gimp;
  EXPECT_EQ(differing_values(before, after), 0) << "the source layer changed";
  const Pnm flat_before = read_pnm(dir + "/flat-before.pnm");
  const Pnm flat_after = read_pnm(dir + "/flat-after.pnm");
  ASSERT_EQ(flat_before.width, 150) << gimp;
  ASSERT_EQ(flat_after.width, 150) << gimp;
  int outside = 0, changed_outside = 0, changed_inside = 0;
  for (int y = 0; y < 110; ++y)
    for (int x = 0; x < 150; ++x) {
      const bool differs =
          !std::equal(flat_before.px(x, y), flat_before.px(x, y) + 3, flat_after.px(x, y));
      if (*selection.px(x, y) == 0) {
        ++outside;
        changed_outside += differs;
      } else {
        changed_inside += differs;
      }
    }
  EXPECT_GT(outside, 0);
  EXPECT_EQ(changed_outside, 0) << "pixels outside the selection changed";
  EXPECT_GT(changed_inside, 0) << "the result is not seen inside the selection";

  // The mask: 0 wherever the selection is, its non-zero pixels span exactly the selection's
  // bounds, and it is the selection feathered inwards.
  const Pixels mask = read_picture(dir + "/mask.pgm");
  ASSERT_EQ(mask.width, crop_rect.w) << gimp;
  ASSERT_EQ(mask.height, crop_rect.h);
  ASSERT_EQ(mask.channels, 1);
  const Pixels sel_crop = crop(selection, crop_rect);
  int leaks = 0;
  for (size_t i = 0; i < mask.data.size(); ++i) leaks += sel_crop.data[i] == 0 && mask.data[i];
  EXPECT_EQ(leaks, 0) << "mask pixels over unselected ones";
  EXPECT_EQ(nonzero_bounds(mask), (Rect{sel.x - crop_rect.x, sel.y - crop_rect.y, sel.w, sel.h}));
  // The plug-in writes the feathered selection as linear "Y u8" opacities; GIMP keeps the masks of
  // an 8-bit perceptual image in "Y' u8", so the mask holds their sRGB encoding (and composites
  // with the linear values again).
  Pixels feathered = feathered_mask(sel_crop, feather_radius(region->selection));
  for (uint8_t& v : feathered.data) v = srgb_u8(v);
  EXPECT_EQ(differing_values(mask, feathered), 0) << "the mask is not the feathered selection";

  // The layer's own pixels: the CLI's edit of the crop, on the crop's grid.
  const Pixels result = read_picture(dir + "/result" + ext);
  ASSERT_EQ(result.width, crop_rect.w) << gimp;
  ASSERT_EQ(result.height, crop_rect.h);
  ASSERT_EQ(result.channels, 4);
  std::string err;
  const Pixels input =
      crop(before, {crop_rect.x - layer.x, crop_rect.y - layer.y, crop_rect.w, crop_rect.h});
  const Pixels want = m.edit_as_plugin(kQwen21EditSelectionPrompt, input, {}, dir, &err);
  ASSERT_EQ(want.width, crop_rect.w) << err;
  EXPECT_EQ(differing_values(result, want), 0)
      << "channel values of the layer that differ from the CLI's edit of the crop";
}

Pixels read_picture(const std::string& path) {
  Pixels p;
  if (const std::string head = read_file(path).substr(0, 2); head.size() == 2 && head[0] == 'P') {
    const Pnm pnm = read_pnm(path);
    if (pnm.width <= 0 || pnm.channels == 2) return {};
    p = Pixels(pnm.width, pnm.height, pnm.channels);
    p.data = pnm.data;
  } else {
    try {
      const ImageU8 im = read_png(path);
      if (im.channels != 1 && im.channels != 3 && im.channels != 4) return {};
      p = Pixels(im.width, im.height, im.channels);
      p.data = im.pixels;
    } catch (const std::exception&) {
      return {};
    }
  }
  return p.channels == 3 ? opaque_rgba(p) : p;
}

Pixels crop(const Pixels& p, const Rect& r) {
  Pixels out(r.w, r.h, p.channels);
  for (int y = 0; y < r.h; ++y)
    for (int x = 0; x < r.w; ++x) std::copy_n(p.px(r.x + x, r.y + y), p.channels, out.px(x, y));
  return out;
}

int differing_values(const Pixels& a, const Pixels& b) {
  if (a.width != b.width || a.height != b.height || a.channels != b.channels) return -1;
  int n = 0;
  for (size_t i = 0; i < a.data.size(); ++i) n += a.data[i] != b.data[i];
  return n;
}

}  // namespace qwen::plugin::test
