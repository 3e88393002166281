// Expand Canvas with Prompt (issue #17) in the shared front-end code, without GIMP: the geometry,
// the model choice, the model's input, and run_expand against the fake daemon through a Host that
// keeps a canvas and layers like GIMP does (resize_canvas moves the layers, nothing else). Checks
// what a headless GIMP cannot show: the resize and the fill layer are one undo group, nothing is
// touched before the job succeeded, and a failure after the resize restores the canvas.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "e2e_util.h"
#include "expand.h"

using namespace qwen::plugin;
using namespace qwen::plugin::test;

namespace {

// A 64x48 canvas with layer 42 (40x30 at (5, 7)) whose pixels encode their own coordinates.
struct CanvasHost : Host {
  std::vector<std::string> events;
  Rect canvas_rect{0, 0, 64, 48};
  Rect layer{5, 7, 40, 30};
  bool indexed = false;
  bool fail_add = false;
  Pixels added, added_mask;
  Rect added_rect;
  int next_id = 100;

  static uint8_t value(int x, int y, int c) {
    return c == 3 ? 255 : uint8_t(c == 0 ? x * 5 + 3 : c == 1 ? y * 7 + 1 : 90 + x + y);
  }
  void progress_init(const std::string&) override {}
  void progress_text(const std::string&) override {}
  void progress_update(double) override {}
  void progress_pulse() override {}
  void message(const std::string& m) override { events.push_back("message " + m); }
  bool is_indexed(int) override { return indexed; }
  int layer_of(int drawable) override { return drawable; }
  Rect canvas(int) override { return canvas_rect; }
  Rect layer_rect(int) override { return layer; }
  std::optional<Rect> selection_bounds(int) override { return std::nullopt; }
  Pixels read_drawable(int, const Rect& r) override {
    events.push_back("read " + std::to_string(r.x) + "," + std::to_string(r.y) + " " +
                     std::to_string(r.w) + "x" + std::to_string(r.h));
    Pixels p(r.w, r.h, 4);  // transparent outside the layer, like GEGL_ABYSS_NONE
    for (int y = 0; y < r.h; ++y)
      for (int x = 0; x < r.w; ++x) {
        const int lx = r.x + x, ly = r.y + y;
        if (lx < 0 || ly < 0 || lx >= layer.w || ly >= layer.h) continue;
        for (int c = 0; c < 4; ++c) p.px(x, y)[c] = value(lx, ly, c);
      }
    return p;
  }
  Pixels read_selection(int, const Rect& r) override { return Pixels(r.w, r.h, 1, 0); }
  int add_result_layer(int, int anchor, const std::string& name, const Rect& r,
                       const Pixels& pixels, const Pixels* mask) override {
    if (fail_add) throw UserError("Qwen-Image: GIMP could not insert the result layer.");
    events.push_back("layer above " + std::to_string(anchor) + ": " + name);
    added = pixels;
    added_rect = r;
    if (mask) added_mask = *mask;
    return next_id++;
  }
  int add_layer_group(int, int, const std::string&) override { return next_id++; }
  int add_layer_to_group(int, int, const std::string&, const Rect&, const Pixels&) override {
    return next_id++;
  }
  void attach_params(int layer_id, const std::string& params) override {
    events.push_back("params " + std::to_string(layer_id));
    last_params = params;
  }
  void undo_group_start(int) override { events.push_back("undo-start"); }
  void undo_group_end(int) override { events.push_back("undo-end"); }
  void resize_canvas(int, int w, int h, int dx, int dy) override {
    events.push_back("resize " + std::to_string(w) + "x" + std::to_string(h) + " " +
                     std::to_string(dx) + "," + std::to_string(dy));
    canvas_rect = Rect{0, 0, w, h};
    layer.x += dx;
    layer.y += dy;
  }
  std::string last_params;
};

Settings expand_settings(const char* prompt, int l, int t, int r, int b) {
  Settings s;
  g_strlcpy(s.prompt, prompt, sizeof s.prompt);
  s.steps = 2;
  s.seed = 5;
  s.expand_left = l, s.expand_top = t, s.expand_right = r, s.expand_bottom = b;
  return s;
}

PluginConfig config_for(const std::string& instance) {
  PluginConfig config;
  config.instance = instance;
  config.autostart = false;
  config.limits.min_pixels = 0;  // the model works at the region's own size (multiples of 16)
  config.limits.max_pixels = 1 << 20;
  return config;
}

qwen::ipc::ModelCaps caps(bool generate, bool edit, bool decompose, bool rgba) {
  qwen::ipc::ModelCaps c;
  c.known = true;
  c.family = rgba && edit ? "qwen-image-2.1" : decompose ? "qwen-image-layered" : "qwen-image";
  c.can_generate = generate, c.can_edit = edit, c.can_decompose = decompose, c.rgba = rgba;
  return c;
}

qwen::ipc::DaemonStatus status_of(std::vector<std::pair<std::string, qwen::ipc::ModelCaps>> m) {
  qwen::ipc::DaemonStatus st;
  for (auto& [name, c] : m) {
    st.models.push_back(name);
    st.model_caps.push_back(c);
    st.model_states.push_back(name + "\tloaded\t/models/" + name);
  }
  return st;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(ExpandGeometry, NewAreaBoundsAndContext) {
  // Right only: the strip right of the old canvas, with a quarter of its larger side as context.
  auto g = expand_geometry({64, 48}, 0, 0, 32, 0);
  EXPECT_EQ(g.canvas, (Rect{0, 0, 96, 48}));
  EXPECT_EQ(g.old_canvas, (Rect{0, 0, 64, 48}));
  EXPECT_EQ(g.fill, (Rect{64, 0, 32, 48}));
  EXPECT_EQ(g.region, (Rect{32, 0, 64, 48}));  // 32 px context (the minimum)
  // Left and top: an L whose bounds are the whole new canvas.
  g = expand_geometry({64, 48}, 16, 8, 0, 0);
  EXPECT_EQ(g.canvas, (Rect{0, 0, 80, 56}));
  EXPECT_EQ(g.old_canvas, (Rect{16, 8, 64, 48}));
  EXPECT_EQ(g.fill, (Rect{0, 0, 80, 56}));
  EXPECT_EQ(g.region, g.canvas);
  // Bottom of a large picture: context a quarter of the strip's width, clipped to the canvas.
  g = expand_geometry({4000, 3000}, 0, 0, 0, 200);
  EXPECT_EQ(g.fill, (Rect{0, 3000, 4000, 200}));
  EXPECT_EQ(g.region, (Rect{0, 2000, 4000, 1200}));
}

TEST(ExpandMargins, BadMarginsAreNamed) {
  Settings s = expand_settings("x", 0, 0, 0, 0);
  EXPECT_NE(validate_margins(s).find("all four margins are 0"), std::string::npos);
  s.expand_top = -1;
  EXPECT_NE(validate_margins(s).find("the top margin is -1 px"), std::string::npos)
      << validate_margins(s);
  s.expand_top = 4097;
  EXPECT_NE(validate_margins(s).find("between 0 and 4096"), std::string::npos);
  s.expand_top = 4096;
  EXPECT_EQ(validate_margins(s), "");
}

TEST(ExpandModel, PipelineFollowsTheModelsCapabilities) {
  const auto t2i = caps(true, false, false, false), edit = caps(true, true, false, false);
  const auto layered = caps(false, false, true, true), q21 = caps(true, true, false, true);
  auto st = status_of({{"layered", layered}, {"qwen-image", t2i}, {"edit", edit}, {"q21", q21}});
  // The default: the first model that can (not the Layered default).
  auto m = choose_expand_model(st, "");
  EXPECT_EQ(m.name, "qwen-image");
  EXPECT_EQ(m.pipeline, "inpaint");
  EXPECT_FALSE(m.rgba);
  m = choose_expand_model(st, "edit");
  EXPECT_EQ(m.pipeline, "edit-inpaint");
  m = choose_expand_model(st, "q21");  // no mask pipeline: an edit, RGBA
  EXPECT_EQ(m.pipeline, "edit");
  EXPECT_TRUE(m.rgba);
  EXPECT_NE(error_of([&] { choose_expand_model(st, "layered"); }).find("cannot expand a canvas"),
            std::string::npos);
  // Only a Layered model: the error lists what the daemon serves and what to load.
  const std::string e = error_of([&] { choose_expand_model(status_of({{"lay", layered}}), ""); });
  EXPECT_NE(e.find("serves only lay"), std::string::npos) << e;
  EXPECT_NE(e.find("daemon.conf"), std::string::npos) << e;
  // Unknown capabilities (an older daemon): the name guess of old.
  auto old = status_of({{"Qwen-Image-Edit-2509", {}}});
  EXPECT_EQ(choose_expand_model(old, "").pipeline, "edit-inpaint");
  // A name the daemon does not list goes to the daemon, which says so.
  EXPECT_EQ(choose_expand_model(st, "other").pipeline, "inpaint");
}

TEST(ExpandInput, EdgeStretchedOutsideTransparentForRgba) {
  Pixels layer(6, 4, 4, 0);
  for (int y = 1; y < 3; ++y)
    for (int x = 2; x < 5; ++x) {
      uint8_t* p = layer.px(x, y);
      p[0] = uint8_t(10 * x), p[1] = uint8_t(20 * y), p[2] = 7, p[3] = 255;
    }
  layer.px(2, 1)[3] = 0;  // a transparent pixel inside: white for the RGB models
  const Rect inside{2, 1, 3, 2};
  const Pixels rgb = expand_input(layer, inside, false);
  ASSERT_EQ(rgb.channels, 3);
  EXPECT_EQ(rgb.px(3, 2)[0], 30);  // inside: the layer
  EXPECT_EQ(rgb.px(2, 1)[0], 255);
  EXPECT_EQ(rgb.px(5, 3)[0], 40);  // outside: the nearest inside pixel, (4, 2)
  EXPECT_EQ(rgb.px(5, 3)[1], 40);
  EXPECT_EQ(rgb.px(0, 0)[0], 255);  // nearest is (2, 1), white
  const Pixels rgba = expand_input(layer, inside, true);
  ASSERT_EQ(rgba.channels, 4);
  EXPECT_EQ(rgba.px(5, 3)[0], 40);
  EXPECT_EQ(rgba.px(5, 3)[3], 0);  // the new area is transparent
  EXPECT_EQ(rgba.px(3, 2)[3], 255);
  const Pixels mask = new_area_mask({6, 4}, inside);
  EXPECT_EQ(*mask.px(2, 1), 0);
  EXPECT_EQ(*mask.px(4, 2), 0);
  EXPECT_EQ(*mask.px(5, 2), 255);
  EXPECT_EQ(*mask.px(2, 0), 255);
}

TEST(ExpandRefusals, NothingChangesOrStartsBeforeTheInputIsValid) {
  PluginConfig config = config_for(unique_name("nobody"));
  CanvasHost host;
  EXPECT_NE(error_of([&] {
              run_expand(host, 1, 42, expand_settings("sky", 0, 0, 0, 0), config);
            }).find("all four margins are 0"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              run_expand(host, 1, 42, expand_settings("sky", 0, 0, 5000, 0), config);
            }).find("the right margin is 5000 px"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              run_expand(host, 1, 42, expand_settings(" ", 0, 0, 8, 0), config);
            }).find("the prompt is empty"),
            std::string::npos);
  host.indexed = true;
  EXPECT_NE(error_of([&] {
              run_expand(host, 1, 42, expand_settings("sky", 0, 0, 8, 0), config);
            }).find("indexed"),
            std::string::npos);
  EXPECT_TRUE(host.events.empty());
  EXPECT_EQ(host.canvas_rect, (Rect{0, 0, 64, 48}));
}

class FrontendExpand : public ::testing::Test {
 protected:
  void SetUp() override {
    if (daemon_binary().empty())
      QWEN_E2E_UNAVAILABLE("qwen-imaged is not built (plug-in-only build; set QWEN_TEST_DAEMON)");
    dir = std::make_unique<TempDir>();
    instance = unique_name("frontend-exp");
    daemon = std::make_unique<Daemon>(
        instance, dir->path + "/daemon.log",
        std::vector<std::string>{"--fake-engine", "--fake-step-ms", "1", "--model", tiny_model()});
    ASSERT_TRUE(daemon->ready(60)) << read_file(dir->path + "/daemon.log");
  }
  std::unique_ptr<TempDir> dir;
  std::string instance;
  std::unique_ptr<Daemon> daemon;
};

// Left 16, top 8, bottom 8 on a 64x48 canvas whose layer (40x30 at (5, 7)) leaves the old
// canvas' edges white: one undo group resizes the canvas (the layer moves by (16, 8)) and adds the
// fill over the new area's bounds, masked to the new area. The fake engine returns its input, so
// the fill is exactly the picture the model was given: the old canvas' edge stretched outwards.
TEST_F(FrontendExpand, OneUndoGroupResizesAndAddsTheMaskedFill) {
  CanvasHost host;
  const auto ids =
      run_expand(host, 1, 42, expand_settings("a wide meadow", 16, 8, 0, 8), config_for(instance));
  ASSERT_EQ(ids.size(), 1u);
  const std::vector<std::string> want = {"read 0,0 40x30",  // the layer (inside the old canvas)
                                         "undo-start",
                                         "resize 80x64 16,8",
                                         "layer above 42: Expanded: a wide meadow",
                                         "params " + std::to_string(ids[0]),
                                         "undo-end"};
  EXPECT_EQ(host.events, want);
  EXPECT_EQ(host.canvas_rect, (Rect{0, 0, 80, 64}));
  EXPECT_EQ(host.layer, (Rect{21, 15, 40, 30}));
  ASSERT_EQ(host.added_rect, (Rect{0, 0, 80, 64}));
  ASSERT_EQ(host.added.width, 80);
  ASSERT_EQ(host.added_mask.width, 80);
  ASSERT_EQ(host.added_mask.channels, 1);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 80; ++x) {
      const bool old = x >= 16 && x < 80 && y >= 8 && y < 56;
      ASSERT_EQ(*host.added_mask.px(x, y), old ? 0 : 255) << x << "," << y;
      if (old) continue;
      // The nearest old-canvas pixel: on the layer's pixels or white around them.
      const int ox = std::clamp(x, 16, 79) - 16, oy = std::clamp(y, 8, 55) - 8;
      const int lx = ox - 5, ly = oy - 7;
      const bool on_layer = lx >= 0 && ly >= 0 && lx < 40 && ly < 30;
      for (int c = 0; c < 3; ++c)
        ASSERT_EQ(host.added.px(x, y)[c], on_layer ? CanvasHost::value(lx, ly, c) : 255)
            << x << "," << y << " channel " << c;
      ASSERT_EQ(host.added.px(x, y)[3], 255);
    }
  EXPECT_NE(host.last_params.find("\nexpand=16,8,0,8\n"), std::string::npos) << host.last_params;
  EXPECT_NE(host.last_params.find("\nstrength=1.0"), std::string::npos) << host.last_params;
  EXPECT_NE(host.last_params.find("\nseed=5\n"), std::string::npos) << host.last_params;
}

// A job that fails changes nothing: no undo group, no resize.
TEST_F(FrontendExpand, FailingJobLeavesTheImageAsItWas) {
  CanvasHost host;
  const std::string e = error_of(
      [&] { run_expand(host, 1, 42, expand_settings("fail", 0, 0, 32, 0), config_for(instance)); });
  EXPECT_NE(e.find("failure requested by the prompt"), std::string::npos) << e;
  // Only the layer's part inside the region (x 32..63 of the old canvas) is read.
  const std::vector<std::string> want = {"read 27,0 13x30"};
  EXPECT_EQ(host.events, want);
  EXPECT_EQ(host.canvas_rect, (Rect{0, 0, 64, 48}));
  EXPECT_EQ(host.layer, (Rect{5, 7, 40, 30}));
}

// Adding the fill fails after the resize: the resize is reverted (old size, old layer offsets)
// inside the same undo group, and the error reaches the user.
TEST_F(FrontendExpand, FailureAfterTheResizeRestoresTheCanvas) {
  CanvasHost host;
  host.fail_add = true;
  const std::string e = error_of(
      [&] { run_expand(host, 1, 42, expand_settings("sky", 4, 8, 12, 16), config_for(instance)); });
  EXPECT_NE(e.find("could not insert the result layer"), std::string::npos) << e;
  const std::vector<std::string> want = {"read 0,0 40x30", "undo-start", "resize 80x72 4,8",
                                         "resize 64x48 -4,-8", "undo-end"};
  EXPECT_EQ(host.events, want);
  EXPECT_EQ(host.canvas_rect, (Rect{0, 0, 64, 48}));
  EXPECT_EQ(host.layer, (Rect{5, 7, 40, 30}));
}

// A Qwen-Image-2.1 model (the fake engine on a QwenImage21Pipeline folder: RGBA results that keep
// the input's alpha) has no mask pipeline: the picture goes to an edit as RGBA with the new area
// transparent, and the result is kept, alpha included, in the new area only.
TEST(FrontendExpand21, EditOfThePictureWithTheNewAreaTransparent) {
  if (daemon_binary().empty())
    QWEN_E2E_UNAVAILABLE("qwen-imaged is not built (plug-in-only build; set QWEN_TEST_DAEMON)");
  TempDir dir;
  const std::string q21 = dir.path + "/qwen-image-2.1";
  std::filesystem::create_directories(q21);
  std::ofstream(q21 + "/model_index.json") << "{\"_class_name\": \"QwenImage21Pipeline\"}\n";
  const std::string instance = unique_name("frontend-exp21");
  Daemon daemon(instance, dir.path + "/daemon.log",
                {"--fake-engine", "--fake-step-ms", "1", "--model", q21});
  ASSERT_TRUE(daemon.ready(60)) << read_file(dir.path + "/daemon.log");
  CanvasHost host;
  const auto ids =
      run_expand(host, 1, 42, expand_settings("a beach", 0, 0, 32, 0), config_for(instance));
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_NE(host.last_params.find("pipeline=edit\n"), std::string::npos) << host.last_params;
  EXPECT_EQ(host.canvas_rect, (Rect{0, 0, 96, 48}));
  ASSERT_EQ(host.added_rect, (Rect{64, 0, 32, 48}));
  ASSERT_EQ(host.added.width, 32);
  for (int y = 0; y < 48; ++y)
    for (int x = 0; x < 32; ++x) {
      ASSERT_EQ(*host.added_mask.px(x, y), 255);
      // The stand-in kept the input's alpha: transparent where the picture had nothing.
      ASSERT_EQ(host.added.px(x, y)[3], 0) << x << "," << y;
    }
}
