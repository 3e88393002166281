// End-to-end, reference layers (issue #17) under gimp-console-2.10: Edit Layer with a reference
// layer from another open image, on the tiny Edit-2509 model (CPU). The new layer is exactly the
// picture the daemon returns for the edited layer followed by the reference (the same job sent
// straight through the client library), resampled onto the layer's grid, and its parameters
// parasite names the reference. With
// FrontendReferences.TinyEdit2509WithAReferenceIsWhatTheCliWrites (the plug-in's picture =
// `qwen-image edit --image target --image ref`), the layer is the CLI's.
#include <gtest/gtest.h>

#include "e2e_util.h"
#include "geometry.h"
#include "qwen_image/client.h"

using namespace qwen::plugin;
using namespace qwen::plugin::test;

namespace {

Pixels rgb_of(const Pixels& rgba) {
  Pixels p(rgba.width, rgba.height, 3);
  for (size_t i = 0; i < size_t(rgba.width) * rgba.height; ++i)
    std::copy_n(&rgba.data[i * 4], 3, &p.data[i * 3]);
  return p;
}

class PluginReferencesE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    if (plugin_binary().empty()) QWEN_E2E_UNAVAILABLE("the GIMP plug-in is not built");
    if (daemon_binary().empty())
      QWEN_E2E_UNAVAILABLE("qwen-imaged is not built (plug-in-only build)");
  }
};

}  // namespace

TEST_F(PluginReferencesE2E, EditLayerWithAReferenceLayerFromAnotherImage) {
  GimpEnv env("min_pixels = 0\nmax_pixels = 16384\nstart_timeout = 60\nautostart = false\n");
  Daemon daemon(env, {"--device", "cpu", "--dtype", "float32", "--threads", "1", "--model",
                      tiny_edit_model()});
  if (!daemon.ready(300)) {
    const std::string log = read_file(env.file("daemon.log"));
    if (log.find("no inference engine") != std::string::npos)
      QWEN_E2E_UNAVAILABLE("this qwen-imaged has no inference engine");
    FAIL() << "the daemon did not come up with the tiny edit model:\n" << log;
  }
  // plug-in-qwen-image-edit-layer2: prompt negative steps cfg seed model loras lightning, then the
  // reference layers as a count and an INT32ARRAY.
  const std::string out = env.run_console(
      "(let* ((r (qw-make-image RGB 64 48 48 32 8 6)) (img (car r)) (l (cadr r))"
      "       (r2 (qw-make-image RGB 40 24 40 24 0 0)) (ref (cadr r2)))"
      " (gimp-item-set-name ref \"Jacket\")"
      " (gimp-drawable-invert ref FALSE)"
      " (qw-dump-pixels l " +
      q(env.file("target.txt")) + ") (qw-dump-pixels ref " + q(env.file("ref.txt")) +
      ")"
      " (let ((nl (car (plug-in-qwen-image-edit-layer2 RUN-NONINTERACTIVE img l"
      "   \"put the jacket on the person\" \"\" 2 1.0 5 \"\" \"\" 0 1 (vector ref)))))"
      "  (qw-dump-pixels nl " +
      q(env.file("result.txt")) + ")  (qw-mark " + q(env.file("params.txt")) +
      "   (caddr (car (gimp-item-get-parasite nl \"qwen-image-params\"))))"
      "  (qw-write-layers img " +
      q(env.file("layers.txt")) + ")))");
  const Pixels target = read_dump(env.file("target.txt")), ref = read_dump(env.file("ref.txt"));
  const Pixels result = read_dump(env.file("result.txt"));
  ASSERT_EQ(target.width, 48) << out;
  ASSERT_EQ(ref.width, 40) << out;
  ASSERT_EQ(result.width, 48) << out << read_file(env.file("daemon.log"));
  ASSERT_EQ(result.height, 32);
  const auto layers = read_layers(env.file("layers.txt"));
  ASSERT_EQ(layers.size(), 2u);
  EXPECT_EQ((Rect{layers[0].x, layers[0].y, layers[0].w, layers[0].h}), (Rect{8, 6, 48, 32}));
  const std::string params = read_file(env.file("params.txt"));
  EXPECT_NE(params.find("pipeline=edit-auto\n"), std::string::npos) << params;
  EXPECT_NE(params.find("\nreference1=Jacket"), std::string::npos) << params;

  // The same job straight to the daemon: the layer at the model size (48x32 here), then the
  // reference at its own size, Edit-Plus through edit-auto.
  const Pixels t3 = rgb_of(target), r3 = rgb_of(ref);
  qwen::ipc::JobRequest req;
  req.pipeline = "edit-auto";
  req.prompts = {"put the jacket on the person"};
  req.width = 48;
  req.height = 32;
  req.steps = 2;
  req.true_cfg_scale = 1.0f;
  req.seed = 5;
  req.exact_geometry = false;
  req.result_format = qwen::ipc::PixelFormat::RGB8;
  req.images = {qwen::ipc::ImageView{48, 32, qwen::ipc::PixelFormat::RGB8, 0, t3.data.data()},
                qwen::ipc::ImageView{40, 24, qwen::ipc::PixelFormat::RGB8, 0, r3.data.data()}};
  auto client = qwen::ipc::Client::connect(env.instance);
  const auto images = client.run(req);
  ASSERT_EQ(images.size(), 1u);
  ASSERT_EQ(images[0].width, 48);
  ASSERT_EQ(images[0].height, 32);
  int differ = 0;
  for (size_t i = 0; i < size_t(48 * 32); ++i)
    for (size_t c = 0; c < 3; ++c) differ += result.data[i * 4 + c] != images[0].bytes[i * 3 + c];
  EXPECT_EQ(differ, 0) << "channel values of the layer that differ from the daemon's picture";

  // The reference mattered: the edit without it is another picture.
  req.images.pop_back();
  const auto alone = client.run(req);
  ASSERT_EQ(alone.size(), 1u);
  EXPECT_NE(alone[0].bytes, images[0].bytes);
}
