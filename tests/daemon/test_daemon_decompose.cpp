// Decompose (Qwen-Image-Layered, issue #16) through the daemon with the fake engine: N RGBA
// layers per picture in the reference's order, the model list's typed capabilities, refusals that
// name the model, and `qwen-image decompose --daemon`'s conversion (run_via_daemon).
#include <gtest/gtest.h>

#include "cli/daemon_client.h"
#include "harness.h"
#include "qwen_image/client.h"
#include "qwen_image/protocol.h"
#include "server/fake_engine.h"

using namespace qwen;
using namespace qwen::ipc;
using qwen::test::Daemon;
using qwen::test::unique_instance;

namespace {

// A text-to-image stand-in ("gen", capabilities unknown until loaded: the fake loads at start) and
// a Layered one (model_type qwen-image-layered: decompose only).
std::vector<std::string> two_models() {
  return {"--fake-step-ms", "1",
          "--model",        "gen=/nonexistent/gen",
          "--model",        "layered=/nonexistent/layered",
          "--model-type",   "qwen-image-layered"};
}

ImageU8 picture(int w, int h) {
  ImageU8 in(w, h, 4);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = in.row(y) + size_t(x) * 4;
      p[0] = uint8_t(x * 5);
      p[1] = uint8_t(y * 9);
      p[2] = uint8_t(x + y);
      p[3] = uint8_t(128 + (x % 2) * 127);
    }
  return in;
}

JobRequest decompose(const ImageU8& in, int layers) {
  JobRequest r;
  r.pipeline = "decompose";
  r.model = "layered";
  r.prompts = {"a poster"};
  r.steps = 2;
  r.layers = layers;
  r.images.push_back(ImageView{in.width, in.height, PixelFormat::RGBA8, 0, in.pixels.data()});
  return r;
}

RunParams params_of(const JobRequest& r, const ImageU8& in) {
  RunParams p;
  p.pipeline = PipelineKind::Decompose;
  p.prompts = r.prompts;
  p.layers = r.layers;
  p.resolution = r.resolution;
  p.num_images_per_prompt = r.num_images_per_prompt;
  p.images = {in};
  return p;
}

}  // namespace

TEST(DaemonDecompose, ReturnsTheLayersInTheEnginesOrderAsRgba) {
  Daemon d(unique_instance("dec"), two_models());
  Client c = Client::connect(d.instance());
  const ImageU8 in = picture(50, 30);
  for (int layers : {2, 3, 10}) {
    JobRequest r = decompose(in, layers);
    auto out = c.run(r);
    const auto want = server::fake_results(params_of(r, in));
    ASSERT_EQ(out.size(), size_t(layers));
    ASSERT_EQ(want.size(), size_t(layers));
    // The reference's size for 50x30 at 640: calculate_dimensions(640^2, 5/3) = 832x480.
    EXPECT_EQ(out[0].width, 832);
    EXPECT_EQ(out[0].height, 480);
    for (int i = 0; i < layers; ++i) {
      EXPECT_EQ(out[size_t(i)].format, PixelFormat::RGBA8);
      EXPECT_EQ(out[size_t(i)].bytes, want[size_t(i)].pixels) << "layer " << i;
    }
  }
  // Two pictures per prompt: entry-major, each entry's layers in order.
  JobRequest two = decompose(in, 4);
  two.num_images_per_prompt = 2;
  two.resolution = 1024;
  auto out = c.run(two);
  ASSERT_EQ(out.size(), 8u);
  EXPECT_EQ(out[0].width, 1312);  // calculate_dimensions(1024^2, 5/3) = 1312x800
  EXPECT_EQ(out[5].bytes, server::fake_results(params_of(two, in))[5].pixels);
}

TEST(DaemonDecompose, ModelListSaysWhichModelsDecompose) {
  Daemon d(unique_instance("caps"), two_models());
  Client c = Client::connect(d.instance());
  ASSERT_TRUE(qwen::test::wait_until(
      [&] {
        auto s = c.status();
        return s.model_states.size() == 2 &&
               s.model_states[1].find("\tloaded") != std::string::npos;
      },
      10000));
  const DaemonStatus s = c.status();
  EXPECT_EQ(s.protocol_version, int(proto::kProtocolVersion));
  ASSERT_EQ(s.model_caps.size(), 2u);
  EXPECT_EQ(s.models, (std::vector<std::string>{"gen", "layered"}));
  EXPECT_TRUE(s.model_caps[0].known);
  EXPECT_FALSE(s.model_caps[0].can_decompose);
  EXPECT_TRUE(s.model_caps[0].can_generate);
  EXPECT_TRUE(s.model_caps[1].known);
  EXPECT_TRUE(s.model_caps[1].can_decompose);
  EXPECT_TRUE(s.model_caps[1].rgba);
  EXPECT_FALSE(s.model_caps[1].can_generate);
  EXPECT_FALSE(s.model_caps[1].can_edit);
  EXPECT_EQ(s.model_caps[1].family, "qwen-image-layered");
  // The version-2 view of the same list is unchanged: name<TAB>state<TAB>dir.
  EXPECT_EQ(s.model_states[1].substr(0, 8), "layered\t");
  EXPECT_EQ(s.model_states[1].substr(s.model_states[1].rfind('\t') + 1), "/nonexistent/layered");
}

TEST(DaemonDecompose, PipelinesTheModelCannotRunAreRejectedByName) {
  Daemon d(unique_instance("decrej"), two_models());
  Client c = Client::connect(d.instance());
  const ImageU8 in = picture(16, 16);
  JobRequest r = decompose(in, 3);
  r.model = "gen";
  try {
    c.run(r);
    FAIL() << "decompose on a text-to-image model";
  } catch (const ClientError& e) {
    EXPECT_EQ(e.kind, ClientError::Kind::Rejected);
    EXPECT_NE(std::string(e.what()).find("model 'gen'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cannot decompose"), std::string::npos) << e.what();
  }
  JobRequest g;
  g.model = "layered";
  g.prompts = {"x"};
  g.steps = 1;
  try {
    c.run(g);
    FAIL() << "generate on a Layered model";
  } catch (const ClientError& e) {
    EXPECT_EQ(e.kind, ClientError::Kind::Rejected);
    EXPECT_NE(std::string(e.what()).find("only decomposes"), std::string::npos) << e.what();
  }
  // Limits the daemon checks (the client library refuses layers/resolution itself).
  JobRequest rgb = decompose(in, 3);
  rgb.result_format = PixelFormat::RGB8;
  try {
    c.run(rgb);
    FAIL();
  } catch (const ClientError& e) {
    EXPECT_NE(std::string(e.what()).find("RGBA8 or RGBA_F32"), std::string::npos) << e.what();
  }
  JobRequest sized = decompose(in, 3);
  sized.width = 640;
  try {
    c.run(sized);
    FAIL();
  } catch (const ClientError& e) {
    EXPECT_NE(std::string(e.what()).find("no width/height"), std::string::npos) << e.what();
  }
  JobRequest many = decompose(in, 9);
  many.num_images_per_prompt = 2;
  try {
    c.run(many);
    FAIL();
  } catch (const ClientError& e) {
    EXPECT_NE(std::string(e.what()).find("too many result layers"), std::string::npos) << e.what();
  }
  JobRequest bad = decompose(in, 11);
  EXPECT_THROW(c.run(bad), ClientError);
}

TEST(CliDaemon, DecomposeGivesTheInProcessLayers) {
  Daemon d(unique_instance("clidec"), two_models());
  EngineOptions o;
  o.model_type = "qwen-image-layered";
  auto engine = server::make_fake_engine(o, 0);
  ASSERT_TRUE(engine->info().can_decompose);
  RunParams p;
  p.pipeline = PipelineKind::Decompose;
  p.prompts = {"a poster"};
  p.steps = 2;
  p.layers = 5;
  p.resolution = 640;
  p.cfg_normalize = true;
  p.images = {picture(30, 40)};
  auto via = cli::run_via_daemon(p, d.instance(), {}, "layered");
  auto local = engine->run(p);
  ASSERT_EQ(via.size(), 5u);
  for (size_t i = 0; i < via.size(); ++i) {
    EXPECT_EQ(via[i].channels, 4);
    EXPECT_EQ(via[i].width, local[i].width);
    EXPECT_EQ(via[i].pixels, local[i].pixels) << "layer " << i;
  }
}
