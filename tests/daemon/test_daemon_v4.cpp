// Protocol version 4 through an in-process qwen::server::Server with a recording engine: the
// Qwen-Image-2.1 options and up to 10 references reach the engine, engine limits are Rejected at
// submission, the job's phases (model loading first), the LoRAs of the lora_dir in the status and
// unresolvable LoRAs Rejected at submission.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "harness.h"
#include "qwen_image/client.h"
#include "qwen_image/protocol.h"
#include "server/lora_list.h"
#include "server/server.h"

using namespace qwen;
using namespace qwen::ipc;
using qwen::test::unique_instance;
namespace fs = std::filesystem;

namespace {

// Records every job's RunParams; returns one 16x8 RGB image per prompt x image, reporting each
// step (30 ms each, then 100 ms of "decoding"). With `load_ms`, the factory reports three components loading, load_ms apart, through
// EngineOptions::on_load as the real engines do.
struct Recorder {
  std::mutex mu;
  std::vector<RunParams> runs;
  int loads = 0;
};

class RecordingEngine : public Engine {
 public:
  explicit RecordingEngine(std::shared_ptr<Recorder> rec) : rec_(std::move(rec)) {
    info_.model_dir = "(recording)";
    info_.device = "cpu";
    info_.dtype = "float32";
    info_.can_edit = true;
    info_.default_pipeline = PipelineKind::EditPlus;
  }
  const ModelInfo& info() const override { return info_; }
  std::vector<ImageU8> run(const RunParams& p, const ProgressFn& progress) override {
    {
      std::lock_guard<std::mutex> lk(rec_->mu);
      rec_->runs.push_back(p);
    }
    const int steps = p.steps > 0 ? p.steps : 50;  // 0 (protocol version 5): the model's default
    for (int s = 1; s <= steps; ++s) {
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
      ProgressInfo i;
      i.step = s;
      i.total = steps;
      if (progress && !progress(i)) throw CancelledError();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // "decoding"
    std::vector<ImageU8> out;
    for (size_t k = 0; k < p.prompts.size() * size_t(p.num_images_per_prompt); ++k)
      out.emplace_back(16, 8, 3, uint8_t(k));
    return out;
  }

 private:
  std::shared_ptr<Recorder> rec_;
  ModelInfo info_;
};

class InProcessDaemon {
 public:
  explicit InProcessDaemon(server::DaemonConfig cfg, int load_ms = 0)
      : rec_(std::make_shared<Recorder>()) {
    cfg.instance = unique_instance("v4");
    cfg.models = {server::ModelSpec{"rec", "/nonexistent/rec", {}, {}, {}, {}}};
    instance_ = cfg.instance;
    auto rec = rec_;
    server_ = std::make_unique<server::Server>(
        cfg, [rec, load_ms](const EngineOptions& o) -> std::unique_ptr<Engine> {
          int index = 0;
          for (const char* c : {"transformer", "vae", "text_encoder"}) {
            if (load_ms <= 0) break;
            if (o.on_load) o.on_load(c, ++index, 3);
            std::this_thread::sleep_for(std::chrono::milliseconds(load_ms));
          }
          std::lock_guard<std::mutex> lk(rec->mu);
          ++rec->loads;
          return std::make_unique<RecordingEngine>(rec);
        });
    const std::string err = server_->start();
    EXPECT_EQ(err, "");
    thread_ = std::thread([this] { server_->serve(); });
  }
  ~InProcessDaemon() {
    server_->request_stop();
    thread_.join();
  }
  const std::string& instance() const { return instance_; }
  std::vector<RunParams> runs() {
    std::lock_guard<std::mutex> lk(rec_->mu);
    return rec_->runs;
  }

 private:
  std::shared_ptr<Recorder> rec_;
  std::string instance_;
  std::unique_ptr<server::Server> server_;
  std::thread thread_;
};

server::DaemonConfig lazy_config() {
  server::DaemonConfig cfg;
  cfg.lazy = true;
  cfg.preview_every = 0;
  return cfg;
}

JobRequest small_generate() {
  JobRequest r;
  r.prompts = {"a glass cup"};
  r.width = 16;
  r.height = 16;
  r.steps = 2;
  return r;
}

std::string rejection(Client& c, const JobRequest& r) {
  try {
    c.run(r);
  } catch (const ClientError& e) {
    return (e.kind == ClientError::Kind::Rejected ? "Rejected: " : "other: ") +
           std::string(e.what());
  }
  return "ran";
}

}  // namespace

// Piece 2: kv_cache and output_resolution travel to the engine (0 keeps the engine's default).
TEST(DaemonV4, KvCacheAndOutputResolutionReachTheEngine) {
  InProcessDaemon d(lazy_config());
  Client c = Client::connect(d.instance());
  JobRequest r = small_generate();
  c.run(r);
  r.kv_cache = false;
  r.output_resolution = 512;
  c.run(r);
  const auto runs = d.runs();
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_TRUE(runs[0].kv_cache);
  EXPECT_EQ(runs[0].output_resolution, RunParams{}.output_resolution);
  EXPECT_FALSE(runs[1].kv_cache);
  EXPECT_EQ(runs[1].output_resolution, 512);
}

// Piece 1: ten references (more than the version-3 header's 8 descriptors) reach the engine in
// order, each with its own pixels.
TEST(DaemonV4, TenReferencesReachTheEngine) {
  InProcessDaemon d(lazy_config());
  Client c = Client::connect(d.instance());
  JobRequest r = small_generate();
  r.pipeline = "edit-plus";
  r.width = r.height = 0;
  std::vector<std::vector<uint8_t>> pixels;
  for (int i = 0; i < kMaxEditReferences; ++i)
    pixels.emplace_back(size_t(12 + i) * 10 * 3, uint8_t(10 * i + 5));
  for (int i = 0; i < kMaxEditReferences; ++i)
    r.images.push_back(ImageView{12 + i, 10, PixelFormat::RGB8, 0, pixels[size_t(i)].data()});
  c.run(r);
  const auto runs = d.runs();
  ASSERT_EQ(runs.size(), 1u);
  ASSERT_EQ(runs[0].images.size(), size_t(kMaxEditReferences));
  for (int i = 0; i < kMaxEditReferences; ++i) {
    const ImageU8& im = runs[0].images[size_t(i)];
    EXPECT_EQ(im.width, 12 + i);
    EXPECT_EQ(im.height, 10);
    EXPECT_EQ(im.pixels.front(), uint8_t(10 * i + 5)) << "reference " << i + 1;
    EXPECT_EQ(im.pixels.back(), uint8_t(10 * i + 5)) << "reference " << i + 1;
  }
  // Eleven: refused by the pipeline's limit, naming it.
  std::vector<uint8_t> extra(12 * 10 * 3, 1);
  r.images.push_back(ImageView{12, 10, PixelFormat::RGB8, 0, extra.data()});
  EXPECT_NE(rejection(c, r).find("Rejected: qwen-imaged rejected the job: pipeline edit-plus "
                                 "takes 1..10 input image(s), got 11"),
            std::string::npos)
      << rejection(c, r);
}

// Piece 3: a value the engine refuses is Rejected at submission, naming the engine's range; the
// engine never sees it.
TEST(DaemonV4, MaxSequenceLength2000IsRejectedAtSubmission) {
  InProcessDaemon d(lazy_config());
  Client c = Client::connect(d.instance());
  JobRequest r = small_generate();
  r.max_sequence_length = 2000;
  EXPECT_EQ(rejection(c, r),
            "Rejected: qwen-imaged rejected the job: max_sequence_length must be 1..1024, got "
            "2000");
  r.max_sequence_length = 1024;
  c.run(r);
  EXPECT_EQ(d.runs().size(), 1u);
}

// Piece 4: a job on a model that is not loaded yet reports the load (each component, with its
// share) before encoding and denoising, and decoding after the last step.
TEST(DaemonV4, PhasesReportTheModelLoadBeforeDenoising) {
  InProcessDaemon d(lazy_config(), /*load_ms=*/150);
  Client c = Client::connect(d.instance());
  std::vector<JobProgress> seen;
  JobRequest r = small_generate();
  r.steps = 3;
  c.run(r, [&](const JobProgress& p) {
    seen.push_back(p);
    return true;
  });
  auto first = [&](JobPhase ph) {
    for (size_t i = 0; i < seen.size(); ++i)
      if (seen[i].phase == ph) return int(i);
    return -1;
  };
  std::string trace;
  for (const auto& p : seen)
    trace += std::string(to_string(p.phase)) + " [" + p.detail + "] " + std::to_string(p.step) +
             "/" + std::to_string(p.total) + "; ";
  const int loading = first(JobPhase::LoadingModel), denoising = first(JobPhase::Denoising);
  ASSERT_GE(loading, 0) << trace;
  ASSERT_GE(denoising, 0) << trace;
  EXPECT_LT(loading, denoising) << trace;
  EXPECT_GE(first(JobPhase::Decoding), denoising) << trace;
  bool transformer = false, vae = false;
  for (const auto& p : seen) {
    transformer |= p.detail == "loading transformer (1/3)" && p.fraction == 0.0f;
    vae |= p.detail == "loading vae (2/3)" && std::abs(p.fraction - 1.0f / 3.0f) < 1e-6f;
  }
  EXPECT_TRUE(transformer) << trace;
  EXPECT_TRUE(vae) << trace;
  // The model is loaded now: the next job does not report loading.
  seen.clear();
  c.run(r, [&](const JobProgress& p) {
    seen.push_back(p);
    return true;
  });
  EXPECT_EQ(first(JobPhase::LoadingModel), -1);
  EXPECT_GE(first(JobPhase::Denoising), 0);
  EXPECT_EQ(std::string(to_string(JobPhase::LoadingModel)), "loading model");
}

namespace {
// A minimal safetensors file: one tensor, optional metadata.
void write_safetensors(const fs::path& p, const std::string& metadata_json) {
  std::string header = "{";
  if (!metadata_json.empty()) header += "\"__metadata__\":" + metadata_json + ",";
  header += "\"a.lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[0,4]}}";
  std::ofstream f(p, std::ios::binary);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) f.put(char((n >> (8 * i)) & 0xff));
  f << header;
  f.write("\0\0\0\0", 4);
}
}  // namespace

// Piece 6: the status lists the lora_dir's LoRAs (Lightning by name or by metadata), and a job
// naming a LoRA that is not there is Rejected at submission, naming it.
TEST(DaemonV4, StatusListsTheLorasAndUnknownLorasAreRejected) {
  const fs::path dir = fs::temp_directory_path() / unique_instance("loras");
  fs::create_directories(dir);
  write_safetensors(dir / "style.safetensors", "");
  write_safetensors(dir / "Qwen-Image-Lightning-8steps-V1.0.safetensors", "");
  write_safetensors(dir / "fast.safetensors", "{\"ss_output_name\":\"qwen-LIGHTNING-distill\"}");
  std::ofstream(dir / "notes.txt") << "not a LoRA";
  server::DaemonConfig cfg = lazy_config();
  cfg.lora_dirs = {dir.string()};
  {
    InProcessDaemon d(cfg);
    Client c = Client::connect(d.instance());
    const DaemonStatus st = c.status();
    EXPECT_EQ(st.protocol_version, int(ipc::proto::kProtocolVersion));
    ASSERT_EQ(st.loras.size(), 3u);
    EXPECT_EQ(st.loras_left_out, 0);
    EXPECT_EQ(st.loras[0].name, "Qwen-Image-Lightning-8steps-V1.0");
    EXPECT_TRUE(st.loras[0].lightning);
    EXPECT_EQ(st.loras[0].lightning_steps, 8);
    EXPECT_EQ(st.loras[1].name, "fast");
    EXPECT_TRUE(st.loras[1].lightning);  // from the metadata
    EXPECT_EQ(st.loras[2].name, "style");
    EXPECT_FALSE(st.loras[2].lightning);
    // The model list before it is unchanged.
    ASSERT_EQ(st.models.size(), 1u);
    EXPECT_EQ(st.models[0], "rec");

    JobRequest r = small_generate();
    r.loras = {{"style", 0.5f}, {"missing", 1.0f}};
    const std::string why = rejection(c, r);
    EXPECT_EQ(why.rfind("Rejected: ", 0), 0u) << why;
    EXPECT_NE(why.find("LoRA 'missing': not found"), std::string::npos) << why;
    EXPECT_TRUE(d.runs().empty()) << "the job must not start";
    r.loras = {{"style", 0.5f}};
    c.run(r);
    ASSERT_EQ(d.runs().size(), 1u);
    ASSERT_EQ(d.runs()[0].loras.size(), 1u);
    EXPECT_EQ(d.runs()[0].loras[0].path, (dir / "style.safetensors").string());
  }
  fs::remove_all(dir);
}

// Protocol version 5: steps 0, true_cfg_scale -1 and no shift reach the engine as "the model's
// default" (steps 0, CFG and shift unset), for the engine's one rule to resolve (QwenEngine::run);
// explicit values arrive as sent. A configured max_steps also bounds a default the engine picks:
// the job fails at its first step, naming both.
TEST(DaemonV5, ModelDefaultsReachTheEngineUnresolved) {
  server::DaemonConfig cfg = lazy_config();
  cfg.limits.max_steps = 30;
  InProcessDaemon d(cfg);
  Client c = Client::connect(d.instance());
  JobRequest r = small_generate();
  r.steps = kModelDefaultSteps;
  r.true_cfg_scale = kModelDefaultTrueCfgScale;
  try {
    c.run(r);
    ADD_FAILURE() << "a default of 50 steps ran under max_steps 30";
  } catch (const ClientError& e) {
    EXPECT_EQ(e.kind, ClientError::Kind::JobFailed) << e.what();
    EXPECT_NE(std::string(e.what()).find("default of 50 steps is more than this daemon's "
                                         "max_steps (30)"),
              std::string::npos)
        << e.what();
  }
  r.steps = 20;
  EXPECT_EQ(c.run(r).size(), 1u);
  r.steps = 7;
  r.true_cfg_scale = 2.5f;
  r.shift = 3.0f;
  r.lightning = true;
  EXPECT_EQ(c.run(r).size(), 1u);
  const auto runs = d.runs();
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[0].steps, 0);
  EXPECT_FALSE(runs[0].true_cfg_scale.has_value());
  EXPECT_FALSE(runs[0].shift.has_value());
  EXPECT_FALSE(runs[0].lightning);
  EXPECT_EQ(runs[1].steps, 20);
  EXPECT_FALSE(runs[1].true_cfg_scale.has_value());
  EXPECT_EQ(runs[2].steps, 7);
  ASSERT_TRUE(runs[2].true_cfg_scale.has_value());
  EXPECT_EQ(*runs[2].true_cfg_scale, 2.5f);
  ASSERT_TRUE(runs[2].shift.has_value());
  EXPECT_EQ(*runs[2].shift, 3.0);
  EXPECT_TRUE(runs[2].lightning);
}
