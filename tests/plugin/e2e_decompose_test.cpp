// End-to-end, GIMP 2.10: Decompose into Layers (issue #16) inside gimp-console-2.10 with the
// daemon's fake engine standing in for a Qwen-Image-Layered model (the tiny Layered fixture's
// model_index.json tells the daemon it decomposes). The fake returns band layers at the
// reference's size (server/fake_engine.h): layer i of N holds band i of the picture, transparent
// elsewhere, so the group's composite is the picture and each layer shows where it was stacked.
#include <gtest/gtest.h>

#include <cmath>

#include "e2e_util.h"
#include "geometry.h"
#include "qwen_image/client.h"

using namespace qwen::plugin;
using namespace qwen::plugin::test;

namespace {

std::string test_config() {
  return "min_pixels = 0\nmax_pixels = 16384\nstart_timeout = 60\nautostart = false\n";
}

std::vector<std::string> layered_args() {
  return {"--fake-engine", "--fake-step-ms",    "2", "--model", tiny_model(),
          "--model",       tiny_layered_model()};
}

Rect rect_of(const TreeItem& t) { return Rect{t.x, t.y, t.w, t.h}; }

// Pixels of `a` and `b` (same size) that differ inside `r`, and the mean absolute difference
// there.
struct Diff {
  int differing = 0, total = 0;
  double mean_abs = 0;
};
Diff compare_rect(const Pnm& a, const Pnm& b, const Rect& r) {
  Diff d;
  double sum = 0;
  for (int y = r.y; y < r.bottom(); ++y)
    for (int x = r.x; x < r.right(); ++x) {
      ++d.total;
      bool diff = false;
      for (int c = 0; c < a.channels; ++c) {
        const int v = std::abs(int(a.px(x, y)[c]) - int(b.px(x, y)[c]));
        sum += v;
        diff |= v != 0;
      }
      d.differing += diff;
    }
  d.mean_abs = d.total ? sum / (double(d.total) * a.channels) : 0;
  return d;
}

class PluginDecomposeE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    if (plugin_binary().empty()) QWEN_E2E_UNAVAILABLE("the GIMP plug-in is not built");
    if (daemon_binary().empty())
      QWEN_E2E_UNAVAILABLE("qwen-imaged is not built (plug-in-only build)");
  }
};

}  // namespace

// A 640x640 layer (offset, partly off the canvas) at resolution 640 is decomposed at its own size:
// the group's composite is the source exactly, the bottom layer is the reference's first layer.
TEST_F(PluginDecomposeE2E, GroupOfRgbaLayersOverTheSourceComposesToIt) {
  GimpEnv env(test_config());
  Daemon daemon(env, layered_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 600 600 640 640 -20 10)) (img (car r)) (src (cadr r)))"
      " (qw-save-layer img src " +
      q(env.file("src-before.pnm")) +
      ")"
      " (let* ((g (car (plug-in-qwen-image-decompose RUN-NONINTERACTIVE img src \"a poster\" \"\""
      "   2 4.0 7 4 640 0 \"\")))"
      "        (kids (qw-children g)) (all (cons src (cons g kids))))"
      "  (qw-mark " +
      q(env.file("params.txt")) +
      "   (caddr (car (gimp-item-get-parasite g \"qwen-image-params\"))))"
      "  (qw-write-tree img " +
      q(env.file("tree.txt")) +
      ")"
      "  (qw-save-flat-showing img all (list src) " +
      q(env.file("src-only.pnm")) +
      ")"
      "  (qw-save-flat-showing img all all " +
      q(env.file("all.pnm")) +
      ")"
      "  (qw-save-flat-showing img all (cons g kids) " +
      q(env.file("group-only.pnm")) +
      ")"
      "  (qw-save-flat-showing img all (list g (list-ref kids 3)) " +
      q(env.file("bottom-only.pnm")) +
      ")"
      "  (qw-save-flat-showing img all (list g (list-ref kids 0)) " +
      q(env.file("top-only.pnm")) +
      "))"
      " (qw-save-layer img src " +
      q(env.file("src-after.pnm")) + "))");
  const auto tree = read_tree(env.file("tree.txt"));
  ASSERT_EQ(tree.size(), 6u) << out << read_file(env.file("daemon.log"));
  // A new group above the source, holding 4 RGBA layers exactly over the source, top first.
  EXPECT_EQ(tree[0].depth, 0);
  EXPECT_TRUE(tree[0].group);
  EXPECT_EQ(tree[0].name, "Decomposed: a poster");
  const Rect src{-20, 10, 640, 640};
  for (int i = 1; i <= 4; ++i) {
    EXPECT_EQ(tree[size_t(i)].depth, 1);
    EXPECT_FALSE(tree[size_t(i)].group);
    EXPECT_TRUE(tree[size_t(i)].alpha) << tree[size_t(i)].name;
    EXPECT_EQ(rect_of(tree[size_t(i)]), src) << tree[size_t(i)].name;
    EXPECT_EQ(tree[size_t(i)].name, "Layer " + std::to_string(5 - i) + "/4 a poster");
  }
  EXPECT_EQ(tree[5].name, "base");
  EXPECT_EQ(tree[5].depth, 0);
  EXPECT_EQ(rect_of(tree[5]), src);
  const std::string params = read_file(env.file("params.txt"));
  EXPECT_NE(params.find("pipeline=decompose\n"), std::string::npos) << params;
  EXPECT_NE(params.find("layers=4\n"), std::string::npos) << params;
  EXPECT_NE(params.find("resolution=640\n"), std::string::npos) << params;
  EXPECT_NE(params.find("seed=7\n"), std::string::npos) << params;
  EXPECT_NE(params.find("model=qwen-image-layered-tiny\n"), std::string::npos) << params;

  // The source is untouched; the group alone composes to exactly what the source shows.
  Pnm before = read_pnm(env.file("src-before.pnm")), after = read_pnm(env.file("src-after.pnm"));
  ASSERT_EQ(before.width, 640);
  EXPECT_EQ(before.data, after.data);
  Pnm src_only = read_pnm(env.file("src-only.pnm")), group = read_pnm(env.file("group-only.pnm"));
  Pnm all = read_pnm(env.file("all.pnm"));
  ASSERT_EQ(src_only.width, 600);
  ASSERT_EQ(group.width, 600);
  const Rect canvas{0, 0, 600, 600};
  EXPECT_EQ(compare_rect(src_only, group, canvas).differing, 0);
  EXPECT_EQ(compare_rect(src_only, all, canvas).differing, 0);
  // Stacking order: the bottom child is the engine's first layer (band 0: the source's first 160
  // rows = canvas rows 10..169), the top child its last (band 3: canvas rows 490..599).
  Pnm bottom = read_pnm(env.file("bottom-only.pnm")), top = read_pnm(env.file("top-only.pnm"));
  ASSERT_EQ(bottom.width, 600);
  ASSERT_EQ(top.width, 600);
  const Rect band0{0, 10, 600, 160}, band3{0, 490, 600, 110};
  EXPECT_EQ(compare_rect(src_only, bottom, band0).differing, 0);
  EXPECT_EQ(compare_rect(src_only, bottom, band3).differing, band3.w * band3.h);
  EXPECT_EQ(compare_rect(src_only, top, band3).differing, 0);
  EXPECT_EQ(compare_rect(src_only, top, band0).differing, band0.w * band0.h);
}

// The selection's bounds on a gray, offset layer: the layers come back resampled onto that
// rectangle's exact pixel grid (the model works at 1024^2 here); decomposing a resulting layer
// again nests a new group above it inside the first group.
TEST_F(PluginDecomposeE2E, SelectionBoundsGrayAndRecursiveDecomposition) {
  GimpEnv env(test_config());
  Daemon daemon(env, layered_args());
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  std::string out = env.run_console(
      "(let* ((r (qw-make-image GRAY 96 64 80 40 8 12)) (img (car r)) (src (cadr r)))"
      " (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 20 16 40 30)"
      " (let* ((g (car (plug-in-qwen-image-decompose RUN-NONINTERACTIVE img src \"card\" \"\""
      "   1 1.0 3 3 1024 1 \"qwen-image-layered-tiny\")))"
      "        (kids (qw-children g)) (all (cons src (cons g kids))))"
      "  (qw-save-flat-showing img all (list src) " +
      q(env.file("src-only.pnm")) +
      ")"
      "  (qw-save-flat-showing img all (cons g kids) " +
      q(env.file("group-only.pnm")) +
      ")"
      "  (gimp-selection-none img)"
      "  (plug-in-qwen-image-decompose RUN-NONINTERACTIVE img (list-ref kids 2) \"again\" \"\""
      "   1 1.0 5 2 640 0 \"\"))"
      " (qw-write-tree img " +
      q(env.file("tree.txt")) + "))");
  const auto tree = read_tree(env.file("tree.txt"));
  ASSERT_EQ(tree.size(), 8u) << out << read_file(env.file("daemon.log"));
  const Rect region{20, 16, 40, 30};
  const std::vector<std::pair<int, std::string>> want = {
      {0, "Decomposed: card"}, {1, "Layer 3/3 card"},
      {1, "Layer 2/3 card"},   {1, "Decomposed: again"},
      {2, "Layer 2/2 again"},  {2, "Layer 1/2 again"},
      {1, "Layer 1/3 card"},   {0, "base"}};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(tree[i].depth, want[i].first) << i;
    EXPECT_EQ(tree[i].name, want[i].second) << i;
    if (i < 7) {
      EXPECT_EQ(rect_of(tree[i]), region) << tree[i].name;
    }
    if (i < 7 && !tree[i].group) {
      EXPECT_TRUE(tree[i].alpha) << tree[i].name;
    }
  }
  EXPECT_EQ(rect_of(tree[7]), (Rect{8, 12, 80, 40}));
  // Resampled from the model's 1024^2-area layers, the group still shows the selected part of the
  // source (band edges blend a little), and nothing outside it.
  Pnm src_only = read_pnm(env.file("src-only.pnm")), group = read_pnm(env.file("group-only.pnm"));
  ASSERT_EQ(src_only.width, 96) << out;
  ASSERT_EQ(group.width, 96);
  EXPECT_EQ(group.channels, 1);  // still a grayscale image
  const Diff inside = compare_rect(src_only, group, region);
  EXPECT_LT(inside.mean_abs, 3.0) << inside.differing << " of " << inside.total;
  EXPECT_GT(compare_rect(src_only, group, Rect{8, 12, 12, 40}).differing, 0);  // left of it
}

// No model that decomposes: the message says what to load.
TEST_F(PluginDecomposeE2E, WithoutALayeredModelTheErrorSaysWhatToLoad) {
  GimpEnv env(test_config());
  Daemon daemon(env, {"--fake-engine", "--fake-step-ms", "2", "--model", tiny_model()});
  ASSERT_TRUE(daemon.ready(60)) << read_file(env.file("daemon.log"));
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (src (cadr r)))"
      " (plug-in-qwen-image-decompose RUN-NONINTERACTIVE img src \"x\" \"\" 1 1.0 1 4 640 0 \"\")"
      " (qw-write-tree img " +
      q(env.file("tree.txt")) + "))");
  EXPECT_NE(out.find("needs a Qwen-Image-Layered model"), std::string::npos) << out;
  EXPECT_NE(out.find("qwen-image-tiny"), std::string::npos) << out;
  // A blank prompt is refused before anything starts.
  std::string blank = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 64 48 0 0)) (img (car r)) (src (cadr r)))"
      " (plug-in-qwen-image-decompose RUN-NONINTERACTIVE img src \" \" \"\" 1 1.0 1 4 640 0 "
      "\"\"))");
  EXPECT_NE(blank.find("needs a prompt that describes the whole picture"), std::string::npos)
      << blank;
}

// The real tiny Qwen-Image-Layered model (CPU): the group's layers are exactly the layers the
// pipeline returns for the same picture, seed and settings (asked for directly through the
// client library, as `qwen-image decompose --daemon` does), resampled onto the layer's grid; and
// GIMP's composite of the group is the "over" composite of those layers.
TEST_F(PluginDecomposeE2E, TinyLayeredModelGroupIsWhatThePipelineReturned) {
  GimpEnv env(test_config());
  Daemon daemon(env, {"--device", "cpu", "--model", tiny_layered_model()});
  if (!daemon.ready(300)) {
    std::string log = read_file(env.file("daemon.log"));
    if (log.find("no inference engine") != std::string::npos)
      QWEN_E2E_UNAVAILABLE("this qwen-imaged has no inference engine yet");
    FAIL() << "the daemon did not come up with the tiny Layered model:\n" << log;
  }
  std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 48 32 8 6)) (img (car r)) (src (cadr r)))"
      " (qw-dump-pixels src " +
      q(env.file("src.txt")) +
      ")"
      " (let* ((g (car (plug-in-qwen-image-decompose RUN-NONINTERACTIVE img src \"a red square\""
      "   \"\" 2 1.0 5 2 640 0 \"\")))"
      "        (kids (qw-children g)) (all (cons src (cons g kids))))"
      "  (qw-dump-pixels (list-ref kids 1) " +
      q(env.file("layer1.txt")) +
      ")"
      "  (qw-dump-pixels (list-ref kids 0) " +
      q(env.file("layer2.txt")) +
      ")"
      "  (qw-save-flat-showing img all (cons g kids) " +
      q(env.file("group-only.pnm")) + ")))");
  const Pixels src = read_dump(env.file("src.txt"));
  const Pixels l1 = read_dump(env.file("layer1.txt")), l2 = read_dump(env.file("layer2.txt"));
  ASSERT_EQ(src.width, 48) << out << read_file(env.file("daemon.log"));
  ASSERT_EQ(l1.width, 48) << out << read_file(env.file("daemon.log"));
  ASSERT_EQ(l2.width, 48) << out;

  // The same job straight to the daemon.
  qwen::ipc::JobRequest req;
  req.pipeline = "decompose";
  req.prompts = {"a red square"};
  req.steps = 2;
  req.true_cfg_scale = 1.0f;
  req.seed = 5;
  req.layers = 2;
  req.resolution = 640;
  req.result_format = qwen::ipc::PixelFormat::RGBA8;
  req.images = {qwen::ipc::ImageView{48, 32, qwen::ipc::PixelFormat::RGBA8, 0, src.data.data()}};
  auto client = qwen::ipc::Client::connect(env.instance);
  const auto layers = client.run(req);
  ASSERT_EQ(layers.size(), 2u);
  std::vector<Pixels> want;
  for (const auto& img : layers) {
    EXPECT_EQ(img.width, 768);  // calculate_dimensions(640^2, 1.5)
    EXPECT_EQ(img.height, 512);
    Pixels p(img.width, img.height, 4);
    p.data = img.bytes;
    want.push_back(resize_rgba(p, 48, 32));
  }
  EXPECT_EQ(l1.data, want[0].data) << "bottom layer";
  EXPECT_EQ(l2.data, want[1].data) << "top layer";

  // GIMP's composite of the group over the background (220 180 60) is the sRGB "over" composite.
  const Pnm group = read_pnm(env.file("group-only.pnm"));
  ASSERT_EQ(group.width, 64);
  int worst = 0;
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 48; ++x) {
      double c[3] = {220, 180, 60};
      for (const Pixels& l : want) {
        const uint8_t* p = l.px(x, y);
        const double a = p[3] / 255.0;
        for (int k = 0; k < 3; ++k) c[k] = p[k] * a + c[k] * (1 - a);
      }
      for (int k = 0; k < 3; ++k)
        worst = std::max(worst, std::abs(int(std::lround(c[k])) - int(group.px(8 + x, 6 + y)[k])));
    }
  EXPECT_LE(worst, 2);
}
