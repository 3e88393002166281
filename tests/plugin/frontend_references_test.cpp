// Reference layers (issue #17) and RGBA results (Qwen-Image-2.1, issue #15) in the shared front-end
// code, without GIMP: run_procedure through a recording Host against qwen-imaged.
//  - bad references (no item, not a layer, an indexed image, too many for the model, a model that
//    takes none) are refused with the layer's name before a job runs;
//  - Edit Layer with one reference layer on the tiny Edit-2509 model gives exactly what
//    `qwen-image edit --image target.png --image ref.png` writes for the same seed;
//  - a 2.1 model (the fake engine standing in for a QwenImage21Pipeline folder) gives layers with
//    the result's alpha for Generate, Edit Layer and Edit Selection (the latter still masked).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include "e2e_util.h"
#include "frontend.h"
#include "references.h"
#ifdef QWEN_FRONTEND_TEST_PNG
#include "image/png.h"
#endif

using namespace qwen::plugin;
using namespace qwen::plugin::test;
namespace fs = std::filesystem;

namespace {

// A host with several images: item id -> (image, layer rect, name, pixels); ids below 100.
struct MultiHost : Host {
  struct Item {
    int image = 1;
    Rect rect;
    std::string name;
    bool layer = true;
    Pixels rgba;
  };
  std::map<int, Item> items;
  std::map<int, bool> indexed;  // image -> indexed
  std::optional<Rect> selection;
  std::vector<std::string> events;
  struct Added {
    Rect rect;
    Pixels pixels;
    bool has_mask = false;
    Pixels mask;
    std::string params;
  };
  std::map<int, Added> added;
  int next_id = 100;

  static Pixels pattern(int w, int h, int seed, bool ramp_alpha = false) {
    Pixels p(w, h, 4);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        uint8_t* px = p.px(x, y);
        px[0] = uint8_t(x * 5 + seed * 40), px[1] = uint8_t(y * 7 + seed * 13);
        px[2] = uint8_t((x * y + seed * 29) & 255);
        px[3] = ramp_alpha ? uint8_t(y * 255 / std::max(1, h - 1)) : 255;
      }
    return p;
  }
  void add_item(int id, int image, Rect r, const std::string& name, int seed,
                bool ramp_alpha = false) {
    items[id] = Item{image, r, name, true, pattern(r.w, r.h, seed, ramp_alpha)};
  }

  void progress_init(const std::string&) override {}
  void progress_text(const std::string&) override {}
  void progress_update(double) override {}
  void progress_pulse() override {}
  void message(const std::string& m) override { events.push_back("message " + m); }
  bool is_indexed(int image) override { return indexed[image]; }
  int layer_of(int d) override { return items.count(d) && items[d].layer ? d : -1; }
  Rect canvas(int) override { return {0, 0, 64, 48}; }
  Rect layer_rect(int d) override { return items.at(d).rect; }
  std::optional<Rect> selection_bounds(int) override { return selection; }
  Pixels read_drawable(int d, const Rect& r) override {
    events.push_back("read " + std::to_string(d));
    const Pixels& src = items.at(d).rgba;
    Pixels p(r.w, r.h, 4);
    for (int y = 0; y < r.h; ++y)
      for (int x = 0; x < r.w; ++x) std::copy_n(src.px(r.x + x, r.y + y), 4, p.px(x, y));
    return p;
  }
  Pixels read_selection(int, const Rect& r) override {
    Pixels p(r.w, r.h, 1);
    for (int y = 0; y < r.h; ++y)
      for (int x = 0; x < r.w; ++x)
        p.px(x, y)[0] =
            selection && !intersect(*selection, {r.x + x, r.y + y, 1, 1}).empty() ? 255 : 0;
    return p;
  }
  int add_result_layer(int, int, const std::string&, const Rect& r, const Pixels& pixels,
                       const Pixels* mask) override {
    events.push_back("result-layer");
    Added a{r, pixels, mask != nullptr, mask ? *mask : Pixels(), ""};
    added[next_id] = a;
    return next_id++;
  }
  int add_layer_group(int, int, const std::string&) override { return next_id++; }
  int add_layer_to_group(int, int, const std::string&, const Rect&, const Pixels&) override {
    return next_id++;
  }
  void attach_params(int layer, const std::string& params) override {
    added[layer].params = params;
  }
  void undo_group_start(int) override {}
  void undo_group_end(int) override {}
  int image_of_item(int item) override { return items.count(item) ? items[item].image : -1; }
  std::string item_name(int item) override { return items.at(item).name; }
};

Settings settings_with(const std::vector<int>& refs, const std::string& prompt = "make it red") {
  Settings s;
  g_strlcpy(s.prompt, prompt.c_str(), sizeof s.prompt);
  s.steps = 2;
  s.seed = 5;
  s.true_cfg_scale = 1.0;
  s.num_references = int(refs.size());
  for (size_t i = 0; i < refs.size(); ++i) s.references[i] = refs[i];
  return s;
}

PluginConfig config_for(const std::string& instance) {
  PluginConfig config;
  config.instance = instance;
  config.autostart = false;
  config.limits.min_pixels = 0;  // keep the tests' small layers at their size
  return config;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "(no error)";
}

// A model folder that names only its pipeline class (the fake engine loads nothing).
std::string class_folder(const std::string& dir, const std::string& cls) {
  fs::create_directories(dir);
  std::ofstream(dir + "/model_index.json") << "{\"_class_name\": \"" << cls << "\"}\n";
  return dir;
}

#define EXPECT_HAS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << "'" << (text) << "'"

}  // namespace

TEST(FrontendReferencesInput, BadReferenceLayersAreRefusedByNameBeforeAnythingStarts) {
  MultiHost host;
  host.add_item(1, 1, {8, 6, 48, 32}, "Person", 1);
  host.add_item(2, 2, {0, 0, 20, 10}, "Jacket", 2);
  host.add_item(3, 3, {0, 0, 20, 10}, "Palette", 3);
  host.indexed[3] = true;
  host.items[4] = MultiHost::Item{1, {0, 0, 64, 48}, "Selection Mask", false, {}};
  const PluginConfig config = config_for(unique_name("nobody"));
  auto run = [&](const std::vector<int>& refs) {
    return error_of(
        [&] { run_procedure(host, Proc::EditLayer, 1, 1, settings_with(refs), config); });
  };
  EXPECT_HAS(run({2, 77}), "reference layer 2 (item 77) is not an item of an open image");
  EXPECT_HAS(run({4}), "reference layer 1 ('Selection Mask') is not a layer");
  EXPECT_HAS(run({2, 3}), "reference layer 2 ('Palette') is in an indexed image");
  EXPECT_HAS(run({3}), "Image → Mode → RGB");
  Settings s = settings_with({2});
  s.num_references = 11;
  EXPECT_HAS(error_of([&] { run_procedure(host, Proc::EditLayer, 1, 1, s, config); }),
             "11 reference layers given; at most 10");
  // Nothing was read or added for a refused run (the references are checked first).
  for (const auto& e : host.events) EXPECT_EQ(e.rfind("read 2", 0), std::string::npos) << e;
  EXPECT_TRUE(host.added.empty());
  // Generate takes no references: they are ignored, not read.
  EXPECT_TRUE(read_references(host, Proc::Generate, settings_with({4, 77})).empty());
  // Read in order, whole layers, with the layers' names.
  const auto refs = read_references(host, Proc::EditSelection, settings_with({2, 1}));
  ASSERT_EQ(refs.size(), 2u);
  EXPECT_EQ(refs[0].name, "Jacket");
  EXPECT_EQ(refs[0].rgba.data, host.items[2].rgba.data);
  EXPECT_EQ(refs[1].name, "Person");
  EXPECT_EQ(refs[1].rgba.width, 48);
  EXPECT_EQ(reference_params(refs), "\nreference1=Jacket\nreference2=Person");
}

TEST(FrontendReferencesInput, TheModelsCapabilitiesLimitTheReferences) {
  std::vector<Reference> refs(3);
  refs[0].name = "A", refs[1].name = "B", refs[2].name = "C";
  qwen::ipc::ModelCaps plus;
  plus.known = plus.can_edit = true;
  plus.family = "qwen-image-edit-2509";
  plus.max_references = 3;
  EXPECT_HAS(error_of([&] { check_reference_limit(refs, plus, "edit-2509"); }),
             "3 reference layers and the edited picture make 4 pictures, but 'edit-2509' "
             "(qwen-image-edit-2509) takes at most 3 pictures in all");
  EXPECT_HAS(error_of([&] { check_reference_limit(refs, plus, "edit-2509"); }),
             "Remove 1 reference layer ('C')");
  refs.pop_back();
  EXPECT_EQ(error_of([&] { check_reference_limit(refs, plus, "edit-2509"); }), "(no error)");
  qwen::ipc::ModelCaps edit = plus;
  edit.family = "qwen-image-edit";
  edit.max_references = 1;
  EXPECT_HAS(error_of([&] { check_reference_limit(refs, edit, "edit"); }),
             "'edit' (qwen-image-edit) edits one picture and takes no reference layers");
  qwen::ipc::ModelCaps q21 = plus;
  q21.family = "qwen-image-2.1";
  q21.rgba = true;
  q21.max_references = 10;
  EXPECT_TRUE(is_rgba_editor(q21));
  EXPECT_FALSE(is_rgba_editor(plus));
  // 2.1 takes 10 pictures (a version-4 job carries up to 16).
  refs.resize(9);
  EXPECT_EQ(error_of([&] { check_reference_limit(refs, q21, "2.1"); }), "(no error)");
  refs.resize(10);
  EXPECT_HAS(error_of([&] { check_reference_limit(refs, q21, "2.1"); }), "make 11 pictures");
  // Unknown capabilities (an older daemon): the daemon decides.
  refs.resize(2);
  EXPECT_EQ(error_of([&] { check_reference_limit(refs, {}, "x"); }), "(no error)");
}

class FrontendReferences : public ::testing::Test {
 protected:
  void SetUp() override {
    if (daemon_binary().empty())
      QWEN_E2E_UNAVAILABLE("qwen-imaged is not built (plug-in-only build; set QWEN_TEST_DAEMON)");
  }
};

// Through the fake engine: an Edit-Plus model takes 2 references, a plain Edit model none, and the
// parameters parasite names the reference layers in order.
TEST_F(FrontendReferences, LimitsComeFromTheModelListAndTheParasiteNamesTheReferences) {
  TempDir dir;
  const std::string instance = unique_name("frontend-refs");
  const std::string plus = class_folder(dir.path + "/plus-edit", "QwenImageEditPlusPipeline");
  const std::string edit = class_folder(dir.path + "/plain-edit", "QwenImageEditPipeline");
  Daemon daemon(instance, dir.path + "/daemon.log",
                {"--fake-engine", "--fake-step-ms", "1", "--model", plus, "--model", edit});
  ASSERT_TRUE(daemon.ready(60)) << read_file(dir.path + "/daemon.log");
  MultiHost host;
  host.add_item(1, 1, {8, 6, 48, 32}, "Person", 1);
  host.add_item(2, 2, {0, 0, 20, 10}, "Jacket", 2);
  host.add_item(3, 1, {0, 0, 16, 16}, "Hat", 3);
  host.add_item(5, 2, {0, 0, 16, 16}, "Shoes", 4);
  const PluginConfig config = config_for(instance);

  Settings s = settings_with({2, 3, 5});
  g_strlcpy(s.model, "plus-edit", sizeof s.model);
  EXPECT_HAS(error_of([&] { run_procedure(host, Proc::EditLayer, 1, 1, s, config); }),
             "takes at most 3 pictures in all");
  g_strlcpy(s.model, "plain-edit", sizeof s.model);
  s.num_references = 1;
  EXPECT_HAS(error_of([&] { run_procedure(host, Proc::EditLayer, 1, 1, s, config); }),
             "takes no reference layers");
  EXPECT_TRUE(host.added.empty());

  s = settings_with({2, 3});
  g_strlcpy(s.model, "plus-edit", sizeof s.model);
  const auto ids = run_procedure(host, Proc::EditLayer, 1, 1, s, config);
  ASSERT_EQ(ids.size(), 1u);
  const auto& a = host.added.at(ids[0]);
  EXPECT_EQ(a.rect, (Rect{8, 6, 48, 32}));
  EXPECT_HAS(a.params, "pipeline=edit-auto\nmodel=plus-edit\n");
  EXPECT_HAS(a.params, "\nreference1=Jacket\nreference2=Hat");
  // The fake engine returns the first picture: the edited layer went first.
  EXPECT_EQ(a.pixels.data, host.items[1].rgba.data);

  // Edit Selection with references: Edit-Inpaint takes one picture, so the crop is edited whole
  // with the references and the result layer is limited by the selection mask.
  host.selection = Rect{20, 10, 10, 8};
  s = settings_with({2});
  g_strlcpy(s.model, "plus-edit", sizeof s.model);
  const auto sel_ids = run_procedure(host, Proc::EditSelection, 1, 1, s, config);
  ASSERT_EQ(sel_ids.size(), 1u);
  const auto& b = host.added.at(sel_ids[0]);
  EXPECT_HAS(b.params, "pipeline=edit-auto\n");
  EXPECT_HAS(b.params, "\nreference1=Jacket");
  ASSERT_TRUE(b.has_mask);
  EXPECT_EQ(b.mask.px(0, 0)[0], 0);  // outside the selection
  EXPECT_GT(b.mask.px(25 - b.rect.x, 14 - b.rect.y)[0], 0);
}

// A Qwen-Image-2.1 model (the fake engine on a QwenImage21Pipeline folder): the model list says
// RGBA, and the layers keep the result's alpha.
TEST_F(FrontendReferences, Qwen21ResultsBecomeLayersWithTheirAlpha) {
  TempDir dir;
  const std::string instance = unique_name("frontend-21");
  const std::string q21 = class_folder(dir.path + "/qwen-image-2.1", "QwenImage21Pipeline");
  Daemon daemon(instance, dir.path + "/daemon.log",
                {"--fake-engine", "--fake-step-ms", "1", "--model", q21});
  ASSERT_TRUE(daemon.ready(60)) << read_file(dir.path + "/daemon.log");
  const PluginConfig config = config_for(instance);
  const DaemonInfo info = probe_daemon(config);
  ASSERT_EQ(info.caps.size(), 1u);
  EXPECT_TRUE(info.caps[0].rgba);
  EXPECT_EQ(info.caps[0].max_references, 10);

  MultiHost host;
  host.add_item(1, 1, {0, 0, 64, 32}, "Cut-out", 1, /*ramp_alpha=*/true);
  host.add_item(2, 2, {0, 0, 20, 10}, "Jacket", 2);

  // Generate: the fake 2.1 result's alpha ramps from 0 (left) to 255 (right).
  Settings s = settings_with({});
  const auto gen = run_procedure(host, Proc::Generate, 1, 1, s, config);
  ASSERT_EQ(gen.size(), 1u);
  const auto& g = host.added.at(gen[0]);
  EXPECT_EQ(g.rect, (Rect{0, 0, 64, 48}));
  EXPECT_EQ(g.pixels.channels, 4);
  EXPECT_EQ(g.pixels.px(0, 20)[3], 0);
  EXPECT_EQ(g.pixels.px(63, 20)[3], 255);
  EXPECT_FALSE(g.has_mask);

  // Edit Layer with a reference: the layer went as RGBA (its alpha ramps top to bottom) and the
  // result keeps it.
  s = settings_with({2});
  const auto ed = run_procedure(host, Proc::EditLayer, 1, 1, s, config);
  ASSERT_EQ(ed.size(), 1u);
  const auto& e = host.added.at(ed[0]);
  EXPECT_EQ(e.pixels.data, host.items[1].rgba.data);
  EXPECT_EQ(e.pixels.px(10, 0)[3], 0);
  EXPECT_HAS(e.params, "\nreference1=Jacket");
  // 9 references: 10 pictures in one job (more than a version-3 job's 8 travel in version 4);
  // 10 references are one too many.
  std::vector<int> nine;
  for (int i = 0; i < 9; ++i) {
    host.add_item(10 + i, 2, {0, 0, 8 + i, 8}, "Ref " + std::to_string(i + 1), i);
    nine.push_back(10 + i);
  }
  const auto many = run_procedure(host, Proc::EditLayer, 1, 1, settings_with(nine), config);
  ASSERT_EQ(many.size(), 1u);
  EXPECT_HAS(host.added.at(many[0]).params, "\nreference9=Ref 9");
  nine.push_back(2);
  EXPECT_HAS(
      error_of([&] { run_procedure(host, Proc::EditLayer, 1, 1, settings_with(nine), config); }),
      "10 reference layers and the edited picture make 11 pictures");

  // Edit Selection: an edit of the crop (2.1 has no inpaint), alpha kept, selection mask on top.
  host.selection = Rect{20, 8, 16, 12};
  s = settings_with({});
  const auto es = run_procedure(host, Proc::EditSelection, 1, 1, s, config);
  ASSERT_EQ(es.size(), 1u);
  const auto& m = host.added.at(es[0]);
  EXPECT_HAS(m.params, "pipeline=edit-auto\n");
  ASSERT_TRUE(m.has_mask);
  EXPECT_EQ(m.mask.px(0, 0)[0], 0);
  for (int y = 0; y < m.rect.h; ++y)
    EXPECT_EQ(m.pixels.px(3, y)[3], host.items[1].rgba.px(m.rect.x + 3, m.rect.y + y)[3]) << y;
}

// Edit Layer with one reference layer on the tiny Edit-2509 model (the real engine on the CPU):
// the layer's pixels are what `qwen-image edit --image target.png --image ref.png` writes for the
// same seed and size.
TEST_F(FrontendReferences, TinyEdit2509WithAReferenceIsWhatTheCliWrites) {
#ifndef QWEN_FRONTEND_TEST_PNG
  QWEN_E2E_UNAVAILABLE("built without the daemon's PNG library (plug-in-only build)");
#else
  const std::string cli = QWEN_BINARY_DIR "/daemon/cli/qwen-image";
  if (!fs::exists(cli)) QWEN_E2E_UNAVAILABLE("the qwen-image CLI is not built");
  TempDir dir;
  const std::string instance = unique_name("frontend-refs-tiny");
  Daemon daemon(
      instance, dir.path + "/daemon.log",
      {"--device", "cpu", "--dtype", "float32", "--threads", "1", "--model", tiny_edit_model()});
  if (!daemon.ready(300)) {
    const std::string log = read_file(dir.path + "/daemon.log");
    if (log.find("no inference engine") != std::string::npos)
      QWEN_E2E_UNAVAILABLE("this qwen-imaged has no inference engine");
    FAIL() << log;
  }
  MultiHost host;
  host.add_item(1, 1, {8, 6, 48, 32}, "Person", 1);
  host.add_item(2, 2, {0, 0, 40, 24}, "Jacket", 2);
  const PluginConfig config = config_for(instance);
  const Settings s = settings_with({2}, "put the jacket on the person");
  const auto ids = run_procedure(host, Proc::EditLayer, 1, 1, s, config);
  ASSERT_EQ(ids.size(), 1u);
  const auto& got = host.added.at(ids[0]);
  ASSERT_EQ(got.pixels.width, 48);
  ASSERT_EQ(got.pixels.height, 32);

  auto to_png = [&](const Pixels& rgba, const std::string& path) {
    qwen::ImageU8 im(rgba.width, rgba.height, 3);
    for (size_t i = 0; i < size_t(rgba.width) * rgba.height; ++i)
      std::copy_n(&rgba.data[i * 4], 3, &im.pixels[i * 3]);
    qwen::write_png(path, im);
  };
  to_png(host.items[1].rgba, dir.path + "/target.png");
  to_png(host.items[2].rgba, dir.path + "/ref.png");
  const std::string cmd = cli + " edit --model " + tiny_edit_model() + " --image " + dir.path +
                          "/target.png --image " + dir.path +
                          "/ref.png --prompt 'put the jacket on the person' --steps 2 --seed 5 "
                          "--true-cfg-scale 1 --width 48 --height 32 --device cpu --dtype float32 "
                          "--threads 1 -q --output " +
                          dir.path + "/out.png 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int status = pclose(p);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << cmd << "\n" << out;
  const qwen::ImageU8 want = qwen::read_png(dir.path + "/out.png");
  ASSERT_EQ(want.width, 48);
  ASSERT_EQ(want.height, 32);
  int differ = 0;
  for (size_t i = 0; i < size_t(48 * 32); ++i) {
    for (int c = 0; c < 3; ++c)
      differ += got.pixels.data[i * 4 + size_t(c)] != want.pixels[i * want.channels + size_t(c)];
    EXPECT_EQ(got.pixels.data[i * 4 + 3], 255);
  }
  EXPECT_EQ(differ, 0) << "channel values that differ from the CLI's PNG";
  // The reference mattered: without it the same edit gives another picture.
  const auto alone = run_procedure(host, Proc::EditLayer, 1, 1,
                                   settings_with({}, "put the jacket on the person"), config);
  EXPECT_NE(host.added.at(alone[0]).pixels.data, got.pixels.data);
#endif
}
