// Jobs through the daemon (fake engine): results, formats, progress, cancel, rejection, status.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>

#include "harness.h"
#include "qwen_image/client.h"
#include "server/fake_engine.h"

using namespace qwen;
using namespace qwen::ipc;
using qwen::test::Daemon;
using qwen::test::unique_instance;

namespace {

// What the fake engine produces for a generate request, as 8-bit RGB.
std::vector<ImageU8> expected_generate(const JobRequest& r) {
  RunParams p;
  p.prompts = r.prompts;
  p.width = r.width;
  p.height = r.height;
  p.seed = r.seed;
  p.steps = r.steps;
  p.num_images_per_prompt = r.num_images_per_prompt;
  return server::fake_results(p);
}

JobRequest generate(int64_t seed, int steps = 3) {
  JobRequest r;
  r.prompts = {"a lighthouse at dusk"};
  r.width = 40;
  r.height = 24;
  r.seed = seed;
  r.steps = steps;
  return r;
}

void expect_rgb_equal(const Image& got, const ImageU8& want) {
  ASSERT_EQ(got.width, want.width);
  ASSERT_EQ(got.height, want.height);
  const int c = channels(got.format);
  const bool fl = bytes_per_channel(got.format) == 4;
  for (size_t i = 0; i < size_t(want.width) * want.height; ++i)
    for (int k = 0; k < c; ++k) {
      const float v = fl ? reinterpret_cast<const float*>(got.bytes.data())[i * c + k]
                         : got.bytes[i * c + k] / 255.0f;
      const float w = k < 3 ? want.pixels[i * 3 + k] / 255.0f : 1.0f;
      ASSERT_NEAR(v, w, 1e-6) << "pixel " << i << " channel " << k;
    }
}

}  // namespace

TEST(Daemon, GenerateGivesTheEngineResultInEveryFormat) {
  Daemon d(unique_instance("gen"));
  Client c = Client::connect(d.instance());
  for (PixelFormat f :
       {PixelFormat::RGBA8, PixelFormat::RGB8, PixelFormat::RGBA_F32, PixelFormat::RGB_F32}) {
    JobRequest r = generate(11);
    r.result_format = f;
    r.prompts = {"one", "two"};
    r.num_images_per_prompt = 2;
    auto out = c.run(r);
    auto want = expected_generate(r);
    ASSERT_EQ(out.size(), 4u);
    for (size_t i = 0; i < out.size(); ++i) {
      EXPECT_EQ(out[i].format, f);
      EXPECT_EQ(out[i].bytes.size(), size_t(40 * 24) * channels(f) * bytes_per_channel(f));
      expect_rgb_equal(out[i], want[i]);
    }
  }
}

TEST(Daemon, StridedInputsRoundTripInAnyFormat) {
  Daemon d(unique_instance("img"));
  Client c = Client::connect(d.instance());
  const int w = 33, h = 17;
  // RGBA float with a padded stride.
  const size_t stride = size_t(w) * 16 + 48;
  std::vector<uint8_t> buf(stride * h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      float* px = reinterpret_cast<float*>(buf.data() + stride * y) + x * 4;
      px[0] = float((x * 7) % 256) / 255.0f;
      px[1] = float((y * 13) % 256) / 255.0f;
      px[2] = float((x + y) % 256) / 255.0f;
      px[3] = 0.5f;
    }
  std::vector<uint8_t> mask(size_t(w) * h, 255);
  for (const char* pipeline : {"img2img", "inpaint", "edit"}) {
    JobRequest r;
    r.pipeline = pipeline;
    r.prompts = {"keep it"};
    r.steps = 2;
    r.images.push_back(ImageView{w, h, PixelFormat::RGBA_F32, stride, buf.data()});
    if (std::string(pipeline) == "inpaint")
      r.mask = ImageView{w, h, PixelFormat::GRAY8, 0, mask.data()};
    r.result_format = PixelFormat::RGB8;
    auto out = c.run(r);
    ASSERT_EQ(out.size(), 1u) << pipeline;
    ASSERT_EQ(out[0].width, w);
    ASSERT_EQ(out[0].height, h);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        const uint8_t* px = out[0].bytes.data() + (size_t(y) * w + x) * 3;
        ASSERT_EQ(px[0], (x * 7) % 256);
        ASSERT_EQ(px[1], (y * 13) % 256);
        ASSERT_EQ(px[2], (x + y) % 256);
      }
  }
}

TEST(Daemon, ProgressAndPreviewsArriveWhileTheJobRuns) {
  Daemon d(unique_instance("prog"), {"--preview-every", "1", "--fake-step-ms", "30"});
  Client c = Client::connect(d.instance());
  std::vector<int> steps;
  int previews = 0;
  auto out = c.run(generate(3, 8), [&](const JobProgress& p) {
    // A queued job (protocol version 4 reports the queue too) has no steps yet.
    EXPECT_EQ(p.total, p.phase == JobPhase::Queued ? 0 : 8);
    steps.push_back(p.step);
    if (p.preview) {
      ++previews;
      EXPECT_EQ(p.preview->format, PixelFormat::RGB8);
      EXPECT_LE(p.preview->width, 256);
      EXPECT_EQ(p.preview->bytes.size(), size_t(p.preview->width) * p.preview->height * 3);
    }
    return true;
  });
  EXPECT_EQ(out.size(), 1u);
  ASSERT_FALSE(steps.empty());
  EXPECT_TRUE(std::is_sorted(steps.begin(), steps.end()));
  EXPECT_GE(steps.size(), 4u);
  EXPECT_GE(previews, 1);
}

TEST(Daemon, CancelFromProgressAndTheNextJobRunsAtOnce) {
  Daemon d(unique_instance("cancel"), {"--fake-step-ms", "50"});
  Client c = Client::connect(d.instance());
  try {
    c.run(generate(1, 1000), [](const JobProgress& p) { return p.step < 3; });
    FAIL() << "not cancelled";
  } catch (const ClientError& e) {
    EXPECT_EQ(e.kind, ClientError::Kind::Cancelled);
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto out = c.run(generate(2, 2));
  EXPECT_EQ(out.size(), 1u);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
}

TEST(Daemon, BadRequestsAreRejectedWithSpecificMessages) {
  Daemon d(unique_instance("rej"));
  Client c = Client::connect(d.instance());
  auto expect_reject = [&](JobRequest r, const std::string& text) {
    try {
      c.run(r);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const ClientError& e) {
      EXPECT_EQ(e.kind, ClientError::Kind::Rejected) << e.what();
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  JobRequest r = generate(1);
  r.model = "no-such-model";
  expect_reject(r, "unknown model 'no-such-model'; this daemon serves: fake");
  r = generate(1);
  r.pipeline = "upscale";
  expect_reject(r, "unknown pipeline 'upscale'");
  r = generate(1);
  r.prompts = {"\xff\xfe"};
  expect_reject(r, "not valid UTF-8");
  r = generate(1);
  r.width = 100000;
  expect_reject(r, "out of range");
  r = generate(1);
  r.pipeline = "inpaint";
  expect_reject(r, "takes 1 input image");
  // The daemon is still fine.
  EXPECT_EQ(c.run(generate(1)).size(), 1u);
}

TEST(Daemon, EngineFailuresAreReportedAsJobFailed) {
  Daemon d(unique_instance("fail"));
  Client c = Client::connect(d.instance());
  JobRequest r = generate(1);
  r.prompts = {"fail"};
  try {
    c.run(r);
    FAIL();
  } catch (const ClientError& e) {
    EXPECT_EQ(e.kind, ClientError::Kind::JobFailed);
    EXPECT_NE(std::string(e.what()).find("failure requested"), std::string::npos) << e.what();
  }
}

TEST(Daemon, StatusDescribesTheDaemon) {
  Daemon d(unique_instance("status"), {"--model", "tiny=/nonexistent/model", "--lazy"});
  Client c = Client::connect(d.instance());
  DaemonStatus s = c.status();
  EXPECT_EQ(s.pid, d.pid());
  EXPECT_EQ(s.version, QWEN_IMAGE_VERSION);
  EXPECT_EQ(s.instance, d.instance());
  ASSERT_EQ(s.models.size(), 1u);
  EXPECT_EQ(s.models[0], "tiny");
  EXPECT_NE(s.model_states[0].find("configured"), std::string::npos);
  EXPECT_FALSE(s.busy);
  EXPECT_EQ(s.queued_jobs, 0);
  EXPECT_GT(s.memory_bytes, 0);
  EXPECT_LT(s.heartbeat_age_s, 1.0);
}

TEST(Daemon, SigtermAbortsTheJobAndRemovesEverything) {
  Daemon d(unique_instance("term"), {"--fake-step-ms", "20"});
  Client c = Client::connect(d.instance());
  bool signalled = false;
  try {
    c.run(generate(1, 1000), [&](const JobProgress& p) {
      if (p.step >= 2 && !signalled) {
        d.signal(SIGTERM);
        signalled = true;
      }
      return true;
    });
    FAIL();
  } catch (const ClientError& e) {
    EXPECT_NE(std::string(e.what()).find("shutting down"), std::string::npos) << e.what();
  }
  EXPECT_EQ(d.wait_exit(5000), 0);
  EXPECT_TRUE(qwen::test::segments_of(d.instance()).empty());
}

TEST(Daemon, ASecondDaemonForTheSameInstanceIsRefused) {
  Daemon d(unique_instance("dup"));
  std::string out;
  const int rc = qwen::test::run_daemon_binary(
      {"--fake-engine", "--no-config", "--instance", d.instance()}, &out, 10000);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("another qwen-imaged already serves instance"), std::string::npos) << out;
  // The first one still serves.
  EXPECT_EQ(Client::connect(d.instance()).run(generate(5)).size(), 1u);
}

TEST(Daemon, BadCommandLinesGetClearErrors) {
  std::string out;
  EXPECT_EQ(qwen::test::run_daemon_binary({"--no-config"}, &out, 5000), 2);
  EXPECT_NE(out.find("no model to serve"), std::string::npos) << out;
  EXPECT_EQ(qwen::test::run_daemon_binary({"--fake-engine", "--instance", "a/b"}, &out, 5000), 2);
  EXPECT_NE(out.find("bad instance name"), std::string::npos) << out;
  EXPECT_EQ(qwen::test::run_daemon_binary({"--frobnicate"}, &out, 5000), 2);
  EXPECT_NE(out.find("unknown option"), std::string::npos) << out;
  EXPECT_EQ(qwen::test::run_daemon_binary({"--model", "x", "--no-config"}, &out, 5000), 2);
  EXPECT_NE(out.find("no inference engine"), std::string::npos) << out;
}

TEST(Daemon, InstancesAreIsolated) {
  Daemon a(unique_instance("isoA"));
  Daemon b(unique_instance("isoB"));
  EXPECT_EQ(Client::connect(a.instance()).status().pid, a.pid());
  EXPECT_EQ(Client::connect(b.instance()).status().pid, b.pid());
}

// max_resident_models 1: using a second model unloads the least recently used one; using the
// first again swaps them back. Jobs keep giving the right results throughout.
TEST(Daemon, MaxResidentModelsUnloadsTheLeastRecentlyUsed) {
  Daemon d(unique_instance("lru"), {"--model", "a=/fake/a", "--model", "b=/fake/b", "--lazy",
                                    "--max-resident-models", "1"});
  Client c = Client::connect(d.instance());
  auto state_of = [&](const std::string& name) {
    const DaemonStatus s = c.status();
    for (size_t i = 0; i < s.models.size(); ++i)
      if (s.models[i] == name) {  // "name<TAB>state<TAB>folder"
        const std::string& st = s.model_states[i];
        const size_t a = st.find('\t'), b = st.find('\t', a + 1);
        return st.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
      }
    return std::string("absent");
  };
  // The status block is republished with the heartbeat: wait (up to 3 s) for the expected state.
  auto settled = [&](const std::string& name, const std::string& want) {
    std::string st;
    for (int i = 0; i < 150 && (st = state_of(name)) != want; ++i) usleep(20000);
    return st;
  };
  auto run_on = [&](const char* model) {
    JobRequest r = generate(5);
    r.model = model;
    auto out = c.run(r);
    ASSERT_EQ(out.size(), 1u);
    expect_rgb_equal(out[0], expected_generate(r)[0]);
  };
  EXPECT_EQ(settled("a", "configured"), "configured");
  EXPECT_EQ(settled("b", "configured"), "configured");
  run_on("a");
  EXPECT_EQ(settled("a", "loaded"), "loaded");
  EXPECT_EQ(settled("b", "configured"), "configured");
  run_on("b");
  EXPECT_EQ(settled("a", "unloaded"), "unloaded");
  EXPECT_EQ(settled("b", "loaded"), "loaded");
  run_on("a");
  EXPECT_EQ(settled("a", "loaded"), "loaded");
  EXPECT_EQ(settled("b", "unloaded"), "unloaded");
}
