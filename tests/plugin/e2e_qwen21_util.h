// The Qwen-Image-2.1 end-to-end cases' common steps (issue #15), one home for GIMP 2.10
// (e2e_qwen21_test.cpp) and GIMP 3 (tests/plugin_gimp3/e2e_gimp3_test.cpp): a fresh random tiny
// 2.1 model folder, and the `qwen-image` CLI's picture for the job the plug-in sends, with the
// plug-in's geometry (plugin/common/jobs.cpp: sizes in multiples of 32, resize_rgba onto the
// model's grid and back) done on the CLI's side. Needs the daemon's PNG library (full builds:
// QWEN_E2E_TEST_PNG).
#pragma once

#include <string>
#include <vector>

#include "e2e_util.h"
#include "geometry.h"

namespace qwen::plugin::test {

// The plug-in config of these cases: no upscaling, at most 16384 pixels (128x128) per job.
inline constexpr const char* kQwen21Config =
    "min_pixels = 0\nmax_pixels = 16384\nstart_timeout = 60\nautostart = false\n";
// The job every case runs (the dialogs' steps / true CFG / seed): 2 steps, CFG 1 (off), seed 5.
inline constexpr int kQwen21Steps = 2;
inline constexpr int kQwen21Seed = 5;

// Why these cases cannot run here ("" when they can): the CLI or the reference venv is missing.
std::string qwen21_unavailable();

// A fresh random tiny 2.1 model folder (tests/reference/gen_qwen21_pipeline.py OUT --seed S
// --parts model: ~90 MB in ~10 s, so made by each case rather than committed), removed with this
// object; and the CLI's pictures on it (CPU, float32, 1 thread).
struct TinyQwen21 {
  explicit TinyQwen21(int seed);
  TempDir dir;
  std::string model;  // the model folder; "" when the generator failed (`log` says why)
  std::string log;    // the generator's command and output
  // qwen-imaged's arguments serving it on the CPU in float32.
  std::vector<std::string> daemon_args() const;
  // What the plug-in's Generate gives over a width x height region: `qwen-image generate` at the
  // model size (model_size_for, multiples of 32, kQwen21Config's limits), resized back (RGBA).
  // Files go into `work`; {} with `*err` on failure.
  Pixels generate_as_plugin(const std::string& prompt, int width, int height,
                            const std::string& work, std::string* err) const;
  // What the plug-in's Edit Layer / Edit Selection gives for `input` (RGBA: the layer, or the
  // selection's crop) and the reference layers `refs` (RGBA, sent at their own size): `input`
  // resized onto the model's grid, `qwen-image edit --image input --image ref...` there, and its
  // RGBA result resized back onto `input`'s grid. {} with `*err` on failure.
  Pixels edit_as_plugin(const std::string& prompt, const Pixels& input,
                        const std::vector<Pixels>& refs, const std::string& work,
                        std::string* err) const;
};

// The three cases, the same under GIMP 2.10 and 3: each test builds the image in Script-Fu as
// described, runs the procedure, saves what is checked with qw-save-drawable into
// `dir`/<name>`ext` (ext ".png" under 2.10, ".pam" under 3; masks and the selection ".pgm") and
// the layer list with qw-write-layers into `dir`/layers.txt; these check the files against the
// CLI (`gimp` = GIMP's output, for the messages).
//
// Generate on a 64x64 RGB image (prompt kQwen21GeneratePrompt): "result" = the new layer (with
// alpha) over (0, 0, 64, 64), exactly the CLI's RGBA picture, not all opaque.
inline constexpr const char* kQwen21GeneratePrompt = "a red apple on a transparent background";
void expect_qwen21_generate(const TinyQwen21& m, const std::string& dir, const std::string& ext,
                            const std::string& gimp);
// Edit Layer on a 96x72 RGB image whose layer "base" is 77x53 at (9, 11) (not multiples of 32:
// the model works at 64x64), given an alpha channel and cleared over image (20, 20, 15, 10); the
// reference layer is another image's 40x24 layer, inverted, with an alpha channel and its left 10
// columns cleared. "target" = the layer and "ref" = the reference before the call, "result" = the
// new layer: over exactly (9, 11, 77, 53), no mask, exactly edit_as_plugin(target, {ref}).
inline constexpr const char* kQwen21EditLayerPrompt = "put the hat from picture 2 on the cat";
void expect_qwen21_edit_layer(const TinyQwen21& m, const std::string& dir, const std::string& ext,
                              const std::string& gimp);
// Edit Selection on a 150x110 RGB image whose layer "base" is 140x100 at (5, 4), with an ellipse
// selection (61, 41) 37x25 made without antialiasing. The plug-in edits the selection's crop
// with context (plugin/core edit_region: the bounds grown by 32 px within the layer = (29, 9)
// 101x89, at 96x96 on the model) whole, as 2.1 has no inpainting, and masks the result layer
// with the selection feathered inwards (feathered_mask, feather_radius = 2). "src-before" /
// "src-after" = the layer, "selection" = the image's selection channel (150x110), "flat-before"
// / "flat-after" (.pnm) = the flattened image, before and after; "result" = the new layer without
// its mask, "mask" = its mask. Checked: the new layer covers the crop with a mask that is 0
// wherever the selection is (its non-zero pixels span exactly the selection's bounds) and
// follows the feathered selection; the source layer is untouched and the image is unchanged
// outside the selection; the layer's pixels are exactly edit_as_plugin(the crop, {}).
inline constexpr const char* kQwen21EditSelectionPrompt = "turn it into a red apple";
void expect_qwen21_edit_selection(const TinyQwen21& m, const std::string& dir,
                                  const std::string& ext, const std::string& gimp);

// A picture the GIMP helpers saved (qw-save-drawable): PNG (GIMP 2.10) or PNM / PAM (GIMP 3).
// RGB comes back as RGBA with alpha 255 (as the plug-in reads drawables), gray (a mask, the
// selection) as 1 channel, RGBA as it is; {} when unreadable.
Pixels read_picture(const std::string& path);

// `p` over `r` (coordinates inside `p`).
Pixels crop(const Pixels& p, const Rect& r);

// The channel values that differ between `a` and `b`; -1 when their sizes or channels differ.
int differing_values(const Pixels& a, const Pixels& b);

}  // namespace qwen::plugin::test
