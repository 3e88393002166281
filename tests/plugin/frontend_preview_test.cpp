// Progress and the live preview layer (issue #17) in the shared front-end code, without GIMP:
// the progress text of each daemon phase, the preview's owner tags, the preview pixels, and the
// preview layer's life through a recording Host (nothing before the first preview, one layer
// for all variants, removed before the results' single undo group, on success and on failure,
// stale previews of dead plug-ins removed at the next run), also against the fake daemon.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <thread>

#include "e2e_util.h"
#include "frontend.h"
#include "preview.h"

using namespace qwen::plugin;
using namespace qwen::plugin::test;
namespace ipc = qwen::ipc;

namespace {

struct PreviewHost : Host {
  std::vector<std::string> events;
  std::vector<std::string> texts;
  std::map<int, Pixels> previews;  // live preview layers
  std::map<int, Rect> preview_rects;
  std::vector<std::pair<int, std::string>> tagged;  // what preview_layers() reports
  bool supports_preview = true;
  bool layer_deleted_by_user = false;
  int pulses = 0;
  int next_id = 100;

  void progress_init(const std::string& t) override { texts.push_back(t); }
  void progress_text(const std::string& t) override { texts.push_back(t); }
  void progress_update(double) override {}
  void progress_pulse() override { ++pulses; }
  void message(const std::string&) override {}
  bool is_indexed(int) override { return false; }
  int layer_of(int drawable) override { return drawable; }
  Rect canvas(int) override { return {0, 0, 64, 48}; }
  Rect layer_rect(int) override { return {0, 0, 64, 48}; }
  std::optional<Rect> selection_bounds(int) override { return std::nullopt; }
  Pixels read_drawable(int drawable, const Rect& r) override {
    if (auto it = previews.find(drawable); it != previews.end()) return it->second;
    return Pixels(r.w, r.h, 4, 128);
  }
  Pixels read_selection(int, const Rect& r) override { return Pixels(r.w, r.h, 1, 255); }
  int add_result_layer(int, int, const std::string& name, const Rect&, const Pixels&,
                       const Pixels*) override {
    events.push_back("result " + name);
    return next_id++;
  }
  int add_layer_group(int, int, const std::string&) override { return next_id++; }
  int add_layer_to_group(int, int, const std::string&, const Rect&, const Pixels&) override {
    return next_id++;
  }
  void attach_params(int, const std::string&) override {}
  void undo_group_start(int) override { events.push_back("undo-start"); }
  void undo_group_end(int) override { events.push_back("undo-end"); }

  int add_preview_layer(int image, int anchor, const std::string& name, const Rect& r,
                        const Pixels& rgba, const std::string& owner) override {
    if (!supports_preview) return -1;
    const int id = next_id++;
    events.push_back("preview-add image " + std::to_string(image) + " above " +
                     std::to_string(anchor) + " " + name + " owner " + owner);
    previews[id] = rgba;
    preview_rects[id] = r;
    return id;
  }
  bool update_preview_layer(int layer, const Pixels& rgba) override {
    if (layer_deleted_by_user || !previews.count(layer)) return false;
    events.push_back("preview-update");
    previews[layer] = rgba;
    return true;
  }
  void remove_preview_layer(int layer) override {
    events.push_back("preview-remove " + std::to_string(layer));
    previews.erase(layer);
  }
  std::vector<std::pair<int, std::string>> preview_layers() override { return tagged; }
};

ipc::Image solid_preview(int w, int h, uint8_t v) {
  return ipc::Image{w, h, ipc::PixelFormat::RGB8, std::vector<uint8_t>(size_t(w) * h * 3, v)};
}

size_t count_prefix(const std::vector<std::string>& v, const std::string& prefix) {
  return size_t(std::count_if(v.begin(), v.end(),
                              [&](const std::string& s) { return s.rfind(prefix, 0) == 0; }));
}

// The tag of a process that has exited (its pid may be reused later, by then with another start).
std::string dead_owner_tag() {
  int fds[2];
  if (pipe(fds) != 0) return "";
  const pid_t pid = fork();
  if (pid == 0) {
    const std::string tag = preview_owner_tag();
    [[maybe_unused]] ssize_t n = write(fds[1], tag.data(), tag.size());
    _exit(0);
  }
  close(fds[1]);
  char buf[128] = {};
  const ssize_t n = read(fds[0], buf, sizeof buf - 1);
  close(fds[0]);
  waitpid(pid, nullptr, 0);
  return n > 0 ? std::string(buf, size_t(n)) : "";
}

}  // namespace

TEST(FrontendProgress, EachPhaseHasItsText) {
  ipc::JobProgress p;
  p.phase = ipc::JobPhase::Queued;
  p.queue_position = 3;  // two jobs wait before it
  EXPECT_EQ(progress_view(p), (ProgressView{"Qwen-Image: queued behind 2 waiting jobs", -1}));
  p.queue_position = 2;
  EXPECT_EQ(progress_view(p).text, "Qwen-Image: queued behind 1 waiting job");
  p.queue_position = 1;
  EXPECT_EQ(progress_view(p).text, "Qwen-Image: queued, next in line");
  p = {};
  p.phase = ipc::JobPhase::LoadingModel;
  p.fraction = 0.4f;
  p.detail = "loading transformer (2/3)";
  const ProgressView loading = progress_view(p);
  EXPECT_EQ(loading.text, "Qwen-Image: loading the model… 40 % (loading transformer (2/3))");
  EXPECT_NEAR(loading.fraction, 0.4, 1e-6);
  p.fraction = -1;
  p.detail.clear();
  EXPECT_EQ(progress_view(p), (ProgressView{"Qwen-Image: loading the model…", -1}));
  p = {};
  p.phase = ipc::JobPhase::EncodingPrompt;
  EXPECT_EQ(progress_view(p), (ProgressView{"Qwen-Image: encoding the prompt…", -1}));
  p = {};
  p.step = 3;
  p.total = 12;
  EXPECT_EQ(progress_view(p, "2 of 3"), (ProgressView{"Qwen-Image: step 3 of 12 (2 of 3)", 0.25}));
  // A version-3 daemon: step 0 while the model loads.
  p.step = 0;
  EXPECT_EQ(progress_view(p),
            (ProgressView{"Qwen-Image: waiting for the daemon (loading the model?)", -1}));
  p.total = 0;
  EXPECT_EQ(progress_view(p).fraction, -1);
  p = {};
  p.phase = ipc::JobPhase::Decoding;
  EXPECT_EQ(progress_view(p).text, "Qwen-Image: decoding the image…");
}

TEST(FrontendPreview, OwnerTagsTellLiveFromDeadPlugins) {
  const std::string mine = preview_owner_tag();
  EXPECT_EQ(mine.rfind("pid=" + std::to_string(getpid()) + " start=", 0), 0u) << mine;
  EXPECT_TRUE(preview_owner_alive(mine));
  const std::string dead = dead_owner_tag();
  ASSERT_FALSE(dead.empty());
  EXPECT_NE(dead, mine);
  EXPECT_FALSE(preview_owner_alive(dead)) << dead;
  // Our pid with another start time: a reused pid, not the owner.
  EXPECT_FALSE(preview_owner_alive("pid=" + std::to_string(getpid()) + " start=1"));
  EXPECT_FALSE(preview_owner_alive(""));
  EXPECT_FALSE(preview_owner_alive("garbage"));
  EXPECT_FALSE(preview_owner_alive("pid=-3 start=1"));
}

TEST(FrontendPreview, PixelsAreScaledToTheResultWithItsAlpha) {
  ipc::Image small{2, 1, ipc::PixelFormat::RGB8, {10, 20, 30, 10, 20, 30}};
  Pixels opaque = preview_pixels(small, {5, 3}, nullptr);
  ASSERT_EQ(opaque.width, 5);
  ASSERT_EQ(opaque.height, 3);
  ASSERT_EQ(opaque.channels, 4);
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 5; ++x) {
      const uint8_t* p = opaque.px(x, y);
      EXPECT_EQ((std::vector<int>{p[0], p[1], p[2], p[3]}), (std::vector<int>{10, 20, 30, 255}));
    }
  Pixels mask(5, 3, 1, 0);
  mask.px(4, 2)[0] = 77;
  Pixels masked = preview_pixels(small, {5, 3}, &mask);
  EXPECT_EQ(masked.px(0, 0)[3], 0);
  EXPECT_EQ(masked.px(4, 2)[3], 77);
  Pixels rgba(5, 3, 4, 9);  // the edited layer's alpha (4th channel)
  EXPECT_EQ(preview_pixels(small, {5, 3}, &rgba).px(1, 1)[3], 9);
  Pixels wrong_size(4, 3, 1, 0);  // ignored: opaque
  EXPECT_EQ(preview_pixels(small, {5, 3}, &wrong_size).px(1, 1)[3], 255);
}

TEST(FrontendPreview, LayerLivesFromTheFirstPreviewToRemove) {
  PreviewHost host;
  PluginConfig config;
  const std::string dead = dead_owner_tag();
  host.tagged = {{7, dead}, {8, preview_owner_tag()}, {9, "not a tag"}};
  {
    Pixels alpha(6, 4, 1, 200);
    LivePreview preview(host, config, 1, 42, Rect{3, 2, 6, 4}, &alpha);
    // Stale previews (dead owner, malformed tag) are removed first; a running one stays.
    EXPECT_EQ(host.events, (std::vector<std::string>{"preview-remove 7", "preview-remove 9"}));
    host.events.clear();
    EXPECT_EQ(preview.layer(), -1);  // nothing in the image before the first preview
    preview.show(solid_preview(3, 2, 50), 2, 10);
    ASSERT_GE(preview.layer(), 0);
    const int id = preview.layer();
    EXPECT_EQ(host.events, (std::vector<std::string>{"preview-add image 1 above 42 " +
                                                     std::string(kPreviewLayerName) + " owner " +
                                                     preview_owner_tag()}));
    EXPECT_EQ(host.preview_rects[id], (Rect{3, 2, 6, 4}));
    const Pixels& shown = host.previews[id];
    ASSERT_EQ(shown.width, 6);
    ASSERT_EQ(shown.height, 4);
    EXPECT_EQ(shown.px(5, 3)[0], 50);
    EXPECT_EQ(shown.px(5, 3)[3], 200);
    preview.show(solid_preview(3, 2, 60), 4, 10);
    EXPECT_EQ(host.previews[id].px(0, 0)[1], 60);
    EXPECT_EQ(preview.updates(), 2);
    preview.remove();
    preview.remove();  // idempotent
    EXPECT_EQ(host.events.back(), "preview-remove " + std::to_string(id));
    EXPECT_EQ(count_prefix(host.events, "preview-remove"), 1u);
    EXPECT_TRUE(host.previews.empty());
  }
  // The destructor removes a preview still shown (an error or the daemon's cancel).
  host.events.clear();
  host.tagged.clear();
  {
    LivePreview preview(host, config, 1, 42, Rect{0, 0, 4, 4}, nullptr);
    preview.show(solid_preview(2, 2, 1), 1, 2);
  }
  EXPECT_EQ(count_prefix(host.events, "preview-add"), 1u);
  EXPECT_EQ(count_prefix(host.events, "preview-remove"), 1u);
  EXPECT_TRUE(host.previews.empty());
}

TEST(FrontendPreview, UserDeletedLayerOrNoPreviewSupportStopsPreviewing) {
  PluginConfig config;
  {
    PreviewHost host;
    LivePreview preview(host, config, 1, 42, Rect{0, 0, 4, 4}, nullptr);
    preview.show(solid_preview(2, 2, 1), 1, 4);
    host.layer_deleted_by_user = true;
    host.previews.clear();
    preview.show(solid_preview(2, 2, 2), 2, 4);
    preview.show(solid_preview(2, 2, 3), 3, 4);
    EXPECT_EQ(preview.layer(), -1);
    EXPECT_EQ(count_prefix(host.events, "preview-add"), 1u);  // not re-created
    preview.remove();
    EXPECT_EQ(count_prefix(host.events, "preview-remove"), 0u);
  }
  {
    PreviewHost host;
    host.supports_preview = false;
    LivePreview preview(host, config, 1, 42, Rect{0, 0, 4, 4}, nullptr);
    preview.show(solid_preview(2, 2, 1), 1, 4);
    preview.show(solid_preview(2, 2, 1), 2, 4);
    EXPECT_EQ(preview.layer(), -1);
    EXPECT_TRUE(host.events.empty());
  }
  {
    PreviewHost host;
    config.preview = false;  // `preview = false` in qwen-image.conf
    host.tagged = {{7, "garbage"}};
    LivePreview preview(host, config, 1, 42, Rect{0, 0, 4, 4}, nullptr);
    preview.show(solid_preview(2, 2, 1), 1, 4);
    EXPECT_TRUE(host.events.empty());
  }
}

class FrontendPreviewJob : public ::testing::Test {
 protected:
  void SetUp() override {
    if (daemon_binary().empty())
      QWEN_E2E_UNAVAILABLE("qwen-imaged is not built (plug-in-only build; set QWEN_TEST_DAEMON)");
  }
};

// Against the fake daemon (a preview every published step, 40 ms per step): the preview layer is
// added, updated and removed outside the one undo group that adds the results, once for all
// variants; on a failed job it is removed and nothing is added.
TEST_F(FrontendPreviewJob, PreviewComesAndGoesOutsideTheResultsUndoGroup) {
  TempDir dir;
  const std::string instance = unique_name("frontend-preview");
  Daemon daemon(
      instance, dir.path + "/daemon.log",
      {"--fake-engine", "--fake-step-ms", "40", "--preview-every", "1", "--model", tiny_model()});
  ASSERT_TRUE(daemon.ready(60)) << read_file(dir.path + "/daemon.log");
  PluginConfig config;
  config.instance = instance;
  config.autostart = false;
  config.limits.min_pixels = 0;
  config.limits.max_pixels = 16384;
  Settings s;
  g_strlcpy(s.prompt, "a lighthouse", sizeof s.prompt);
  s.steps = 12;  // previews at steps 2, 4, ..., 12 of each variant
  s.seed = 3;
  s.variants = 2;
  PreviewHost host;
  const auto layers = run_procedure(host, Proc::Generate, 1, 42, s, config);
  ASSERT_EQ(layers.size(), 2u);
  const auto& ev = host.events;
  // One preview layer for both variants, updated, removed, then the one undo group.
  ASSERT_EQ(count_prefix(ev, "preview-add"), 1u) << ::testing::PrintToString(ev);
  EXPECT_EQ(ev.front().rfind("preview-add image 1 above 42 ", 0), 0u);
  EXPECT_GE(count_prefix(ev, "preview-update"), 1u) << ::testing::PrintToString(ev);
  const auto remove = std::find_if(
      ev.begin(), ev.end(), [](const std::string& e) { return e.rfind("preview-remove", 0) == 0; });
  ASSERT_NE(remove, ev.end());
  EXPECT_EQ(std::vector<std::string>(remove + 1, ev.end()),
            (std::vector<std::string>{"undo-start", "result a lighthouse #1",
                                      "result a lighthouse #2", "undo-end"}));
  EXPECT_EQ(count_prefix(ev, "preview-remove"), 1u);
  EXPECT_TRUE(host.previews.empty());
  // The bar said which step of which variant.
  EXPECT_TRUE(std::any_of(host.texts.begin(), host.texts.end(), [](const std::string& t) {
    return t.rfind("Qwen-Image: step ", 0) == 0 && t.size() > 15 &&
           t.compare(t.size() - 15, 15, " of 12 (2 of 2)") == 0;
  })) << ::testing::PrintToString(host.texts);
}

// A job that ends in an error after previews were shown (the daemon stops mid-job): the preview
// layer goes, and nothing is added.
TEST_F(FrontendPreviewJob, PreviewIsRemovedWhenTheJobFails) {
  TempDir dir;
  const std::string instance = unique_name("frontend-preview-fail");
  Daemon daemon(
      instance, dir.path + "/daemon.log",
      {"--fake-engine", "--fake-step-ms", "40", "--preview-every", "1", "--model", tiny_model()});
  ASSERT_TRUE(daemon.ready(60)) << read_file(dir.path + "/daemon.log");
  PluginConfig config;
  config.instance = instance;
  config.autostart = false;
  config.limits.min_pixels = 0;
  config.limits.max_pixels = 16384;
  Settings s;
  g_strlcpy(s.prompt, "slow", sizeof s.prompt);
  s.steps = 500;  // 20 s
  s.seed = 1;
  struct Host2 : PreviewHost {
    std::atomic<bool> shown{false};
    int add_preview_layer(int image, int anchor, const std::string& name, const Rect& r,
                          const Pixels& rgba, const std::string& owner) override {
      const int id = PreviewHost::add_preview_layer(image, anchor, name, r, rgba, owner);
      shown = true;
      return id;
    }
  } host;
  std::string error;
  std::thread job([&] {
    try {
      run_procedure(host, Proc::Generate, 1, 42, s, config);
    } catch (const UserError& e) {
      error = e.what();
    }
  });
  for (int i = 0; i < 300 && !host.shown; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const bool shown = host.shown;
  daemon.child.stop();  // SIGTERM: the daemon cancels the job and exits
  job.join();
  ASSERT_TRUE(shown) << read_file(dir.path + "/daemon.log");
  EXPECT_FALSE(error.empty());
  EXPECT_EQ(count_prefix(host.events, "preview-add"), 1u);
  EXPECT_EQ(count_prefix(host.events, "preview-remove"), 1u);
  EXPECT_EQ(count_prefix(host.events, "undo-start"), 0u);
  EXPECT_EQ(count_prefix(host.events, "result"), 0u);
  EXPECT_TRUE(host.previews.empty());
}

// Behind another client's job, the bar says the run is queued, then counts the steps (the
// daemon's phases, protocol version 4).
TEST_F(FrontendPreviewJob, ProgressSaysQueuedBehindOtherJobs) {
  TempDir dir;
  const std::string instance = unique_name("frontend-preview-queue");
  Daemon daemon(instance, dir.path + "/daemon.log",
                {"--fake-engine", "--fake-step-ms", "40", "--model", tiny_model()});
  ASSERT_TRUE(daemon.ready(60)) << read_file(dir.path + "/daemon.log");
  // Two other clients' jobs: one runs, one waits.
  auto busy_jobs = [&] {
    auto st = ipc::Client::connect(instance, 3000).status();
    return (st.busy ? 1 : 0) + st.queued_jobs;
  };
  std::vector<std::thread> others;
  for (int i = 0; i < 2; ++i) {
    others.emplace_back([&, i] {
      auto client = ipc::Client::connect(instance, 3000);
      ipc::JobRequest req;
      req.prompts = {"other " + std::to_string(i)};
      req.steps = 40;  // 1.6 s each
      req.width = req.height = 32;
      client.run(req);
    });
    for (int k = 0; k < 100 && busy_jobs() < i + 1; ++k)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const int ahead = busy_jobs();
  PluginConfig config;
  config.instance = instance;
  config.autostart = false;
  config.limits.min_pixels = 0;
  config.limits.max_pixels = 16384;
  Settings s;
  g_strlcpy(s.prompt, "mine", sizeof s.prompt);
  s.steps = 4;
  s.seed = 1;
  PreviewHost host;
  EXPECT_EQ(run_procedure(host, Proc::Generate, 1, 42, s, config).size(), 1u);
  for (auto& t : others) t.join();
  ASSERT_EQ(ahead, 2);
  const auto& t = host.texts;
  const auto behind = std::find(t.begin(), t.end(), "Qwen-Image: queued behind 1 waiting job");
  ASSERT_NE(behind, t.end()) << ::testing::PrintToString(t);
  const auto next = std::find(behind, t.end(), "Qwen-Image: queued, next in line");
  ASSERT_NE(next, t.end()) << ::testing::PrintToString(t);
  EXPECT_NE(std::find_if(next, t.end(),
                         [](const std::string& x) { return x.rfind("Qwen-Image: step ", 0) == 0; }),
            t.end())
      << ::testing::PrintToString(t);
}

// The first job of a lazy daemon loads its model (the real tiny edit model, CPU): the bar says so
// while it loads, then counts the steps.
TEST_F(FrontendPreviewJob, ProgressSaysTheModelIsLoading) {
  TempDir dir;
  const std::string instance = unique_name("frontend-preview-load");
  Daemon daemon(instance, dir.path + "/daemon.log",
                {"--device", "cpu", "--lazy", "--model", tiny_edit_model()});
  if (!daemon.ready(300)) {
    const std::string log = read_file(dir.path + "/daemon.log");
    if (log.find("no inference engine") != std::string::npos)
      QWEN_E2E_UNAVAILABLE("this qwen-imaged has no inference engine");
    FAIL() << log;
  }
  PluginConfig config;
  config.instance = instance;
  config.autostart = false;
  config.limits.min_pixels = 0;
  config.limits.max_pixels = 4096;
  Settings s;
  g_strlcpy(s.prompt, "make it red", sizeof s.prompt);
  s.steps = 2;
  s.seed = 1;
  PreviewHost host;
  EXPECT_EQ(run_procedure(host, Proc::EditLayer, 1, 42, s, config).size(), 1u);
  const auto& t = host.texts;
  const auto loading = std::find_if(t.begin(), t.end(), [](const std::string& x) {
    return x.rfind("Qwen-Image: loading the model…", 0) == 0;
  });
  ASSERT_NE(loading, t.end()) << ::testing::PrintToString(t);
  EXPECT_NE(std::find_if(loading, t.end(),
                         [](const std::string& x) { return x.rfind("Qwen-Image: step ", 0) == 0; }),
            t.end())
      << ::testing::PrintToString(t);
}
