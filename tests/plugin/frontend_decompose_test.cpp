// Decompose into Layers (issue #16) in the shared front-end code, without GIMP: run_decompose
// against the fake daemon through a recording Host. Checks what GIMP cannot tell a headless
// script: the whole run is one undo group (everything added between one start and one end), the
// group goes above the source in the source's parent, the layers go into it bottom first, each
// exactly on the region's pixel grid with the engine's layer resampled onto it.
#include <gtest/gtest.h>

#include "e2e_util.h"
#include "frontend.h"

using namespace qwen::plugin;
using namespace qwen::plugin::test;

namespace {

struct RecordingHost : Host {
  std::vector<std::string> events;
  Rect layer{5, 7, 40, 30};
  std::optional<Rect> selection;
  std::vector<Pixels> added;
  std::vector<Rect> rects;
  int next_id = 100;
  double last_fraction = 0;

  void progress_init(const std::string&) override {}
  void progress_text(const std::string&) override {}
  void progress_update(double f) override { last_fraction = f; }
  void progress_pulse() override {}
  void message(const std::string& m) override { events.push_back("message " + m); }
  bool is_indexed(int) override { return false; }
  int layer_of(int drawable) override { return drawable; }
  Rect canvas(int) override { return {0, 0, 64, 48}; }
  Rect layer_rect(int) override { return layer; }
  std::optional<Rect> selection_bounds(int) override { return selection; }
  Pixels read_drawable(int, const Rect& r) override {
    Pixels p(r.w, r.h, 4);
    for (int y = 0; y < r.h; ++y)
      for (int x = 0; x < r.w; ++x) {
        uint8_t* px = p.px(x, y);
        px[0] = uint8_t((r.x + x) * 6), px[1] = uint8_t((r.y + y) * 8), px[2] = 90, px[3] = 255;
      }
    return p;
  }
  Pixels read_selection(int, const Rect& r) override { return Pixels(r.w, r.h, 1, 255); }
  int add_result_layer(int, int, const std::string&, const Rect&, const Pixels&,
                       const Pixels*) override {
    events.push_back("result-layer");
    return next_id++;
  }
  int add_layer_group(int, int anchor, const std::string& name) override {
    events.push_back("group above " + std::to_string(anchor) + ": " + name);
    return next_id++;
  }
  int add_layer_to_group(int, int group, const std::string& name, const Rect& r,
                         const Pixels& rgba) override {
    events.push_back("layer in " + std::to_string(group) + ": " + name);
    added.push_back(rgba);
    rects.push_back(r);
    return next_id++;
  }
  void attach_params(int layer, const std::string&) override {
    events.push_back("params " + std::to_string(layer));
  }
  void undo_group_start(int) override { events.push_back("undo-start"); }
  void undo_group_end(int) override { events.push_back("undo-end"); }
};

class FrontendDecompose : public ::testing::Test {
 protected:
  void SetUp() override {
    if (daemon_binary().empty())
      QWEN_E2E_UNAVAILABLE("qwen-imaged is not built (plug-in-only build; set QWEN_TEST_DAEMON)");
  }
};

}  // namespace

TEST_F(FrontendDecompose, OneUndoGroupHoldsTheGroupAndItsLayersBottomFirst) {
  TempDir dir;
  const std::string instance = unique_name("frontend-dec");
  Daemon daemon(instance, dir.path + "/daemon.log",
                {"--fake-engine", "--fake-step-ms", "1", "--model", tiny_model(), "--model",
                 tiny_layered_model()});
  ASSERT_TRUE(daemon.ready(60)) << read_file(dir.path + "/daemon.log");
  PluginConfig config;
  config.instance = instance;
  config.autostart = false;
  Settings s;
  g_strlcpy(s.prompt, "a poster", sizeof s.prompt);
  s.steps = 2;
  s.seed = 3;
  s.layers = 3;
  RecordingHost host;
  host.selection = Rect{10, 10, 100, 12};  // its bounds on the layer: (10, 10, 35, 12)
  const auto ids = run_decompose(host, 1, 42, s, config);
  ASSERT_EQ(ids.size(), 4u);
  const std::vector<std::string> want = {
      "undo-start",
      "group above 42: Decomposed: a poster",
      "layer in " + std::to_string(ids[0]) + ": Layer 1/3 a poster",
      "layer in " + std::to_string(ids[0]) + ": Layer 2/3 a poster",
      "layer in " + std::to_string(ids[0]) + ": Layer 3/3 a poster",
      "params " + std::to_string(ids[0]),
      "undo-end"};
  EXPECT_EQ(host.events, want);
  EXPECT_EQ(host.last_fraction, 1.0);
  const Rect region{10, 10, 35, 12};
  ASSERT_EQ(host.added.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(host.rects[i], region);
    EXPECT_EQ(host.added[i].width, 35);
    EXPECT_EQ(host.added[i].height, 12);
    EXPECT_EQ(host.added[i].channels, 4);
  }
  // Layer 1 (the engine's first, band 0 = the top rows) is opaque at the top and transparent at
  // the bottom; layer 3 the other way round.
  EXPECT_EQ(host.added[0].px(17, 0)[3], 255);
  EXPECT_EQ(host.added[0].px(17, 11)[3], 0);
  EXPECT_EQ(host.added[2].px(17, 0)[3], 0);
  EXPECT_EQ(host.added[2].px(17, 11)[3], 255);
}

TEST(FrontendDecomposeInput, SelectionOutsideTheLayerIsRefusedBeforeAnythingStarts) {
  RecordingHost host;
  host.selection = Rect{50, 40, 5, 5};
  Settings s;
  g_strlcpy(s.prompt, "a poster", sizeof s.prompt);
  PluginConfig config;
  config.instance = unique_name("nobody");
  config.autostart = false;
  try {
    run_decompose(host, 1, 42, s, config);
    FAIL();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("selection does not touch the active layer"),
              std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(host.events.empty());
  // The engine does not caption: a blank prompt is refused first.
  g_strlcpy(s.prompt, " \t", sizeof s.prompt);
  host.selection.reset();
  try {
    run_decompose(host, 1, 42, s, config);
    FAIL();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("needs a prompt"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(host.events.empty());
}
