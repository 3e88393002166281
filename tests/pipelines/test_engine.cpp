// Engine end to end on the tiny model: prompt text -> PNG-exact images, plus parameter and model
// folder validation.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "common/fixtures.h"
#include "common/st_writer.h"
#include "image/png.h"
#include "pipelines/engine.h"
#include "pipelines/engine_impl.h"

namespace fs = std::filesystem;
using qwen::test::fixture_path;

namespace {

qwen::Engine& tiny_engine() {
  static std::unique_ptr<qwen::Engine> engine = [] {
    qwen::EngineOptions o;
    o.model_dir = qwen::test::tiny_model_dir();
    o.device = "cpu";
    o.threads = 2;
    return qwen::Engine::open(o);
  }();
  return *engine;
}

int max_level_diff(const qwen::ImageU8& a, const qwen::ImageU8& b) {
  EXPECT_EQ(a.width, b.width);
  EXPECT_EQ(a.height, b.height);
  EXPECT_EQ(a.channels, b.channels);
  if (a.pixels.size() != b.pixels.size()) return 256;
  int d = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i)
    d = std::max(d, std::abs(int(a.pixels[i]) - int(b.pixels[i])));
  return d;
}

}  // namespace

TEST(Engine, InfoDescribesTheModel) {
  const auto& info = tiny_engine().info();
  EXPECT_EQ(info.pipeline_class, "QwenImagePipeline");
  EXPECT_EQ(info.device, "cpu");
  EXPECT_EQ(info.dtype, "float32");
  EXPECT_EQ(info.default_pipeline, qwen::PipelineKind::Generate);
  EXPECT_GT(info.parameters, 0);
  EXPECT_EQ(info.bytes, info.parameters * 4);
}

TEST(Engine, GenerateNoCfgMatchesReferencePng) {
  qwen::RunParams p;
  p.prompts = {"A red bicycle leaning against a blue wall, watercolor"};
  p.true_cfg_scale = 1.0f;
  p.height = 64;
  p.width = 96;
  p.steps = 4;
  p.seed = 42;
  int last = 0;
  auto images = tiny_engine().run(p, [&](const qwen::ProgressInfo& i) {
    EXPECT_EQ(i.total, 4);
    last = i.step;
    return true;
  });
  EXPECT_EQ(last, 4);
  ASSERT_EQ(images.size(), 1u);
  auto ref = qwen::read_png(fixture_path("cases/pipeline_t2i_cfg1/output.png"));
  EXPECT_LE(max_level_diff(images[0], ref), 1);
}

TEST(Engine, GenerateCfgBatchMatchesReferencePng) {
  qwen::RunParams p;
  p.prompts = {"Sunset over the mountains, oil painting", "夕阳下的长城，油画风格，细节丰富"};
  p.negative_prompts = {"blurry, low quality", "模糊"};
  p.true_cfg_scale = 4.0f;
  p.height = 96;
  p.width = 64;
  p.steps = 3;
  p.seed = 7;
  auto images = tiny_engine().run(p);
  ASSERT_EQ(images.size(), 2u);
  auto ref = qwen::read_png(fixture_path("cases/pipeline_t2i_cfg4/output.png"));
  EXPECT_LE(max_level_diff(images[0], ref), 1);
}

TEST(Engine, Img2ImgAndInpaintMatchReferencePng) {
  qwen::RunParams p;
  p.pipeline = qwen::PipelineKind::Img2Img;
  p.prompts = {"Turn it into a pencil drawing"};
  p.negative_prompts = {" "};
  p.true_cfg_scale = 4.0f;
  p.height = 64;
  p.width = 80;
  p.strength = 0.7f;
  p.steps = 5;
  p.seed = 3;
  p.images = {qwen::read_png(fixture_path("cases/pipeline_img2img/image_0.png"))};
  auto out = tiny_engine().run(p);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_LE(
      max_level_diff(out[0], qwen::read_png(fixture_path("cases/pipeline_img2img/output.png"))), 1);

  qwen::RunParams q;
  q.pipeline = qwen::PipelineKind::Inpaint;
  q.prompts = {"一只橘猫坐在草地上"};
  q.true_cfg_scale = 1.0f;
  q.height = 64;
  q.width = 96;
  q.strength = 0.9f;
  q.steps = 4;
  q.seed = 11;
  q.images = {qwen::read_png(fixture_path("cases/pipeline_inpaint/image_0.png"))};
  q.mask = qwen::read_png(fixture_path("cases/pipeline_inpaint/mask.png"));
  auto out2 = tiny_engine().run(q);
  ASSERT_EQ(out2.size(), 1u);
  EXPECT_LE(
      max_level_diff(out2[0], qwen::read_png(fixture_path("cases/pipeline_inpaint/output.png"))),
      1);
  q.mask.reset();
  EXPECT_THROW(tiny_engine().run(q), qwen::EngineError);
}

TEST(Engine, ImagesPerPromptAndCancel) {
  qwen::RunParams p;
  p.prompts = {"a cat"};
  p.num_images_per_prompt = 2;
  p.width = p.height = 32;
  p.steps = 2;
  auto images = tiny_engine().run(p);
  ASSERT_EQ(images.size(), 2u);
  EXPECT_EQ(images[0].width, 32);
  EXPECT_NE(images[0].pixels, images[1].pixels);  // different noise rows
  EXPECT_THROW(tiny_engine().run(p, [](const qwen::ProgressInfo&) { return false; }),
               qwen::CancelledError);
}

TEST(Engine, RejectsBadParameters) {
  auto bad = [](auto mutate) {
    qwen::RunParams p;
    p.prompts = {"x"};
    p.width = p.height = 32;
    p.steps = 1;
    mutate(p);
    try {
      tiny_engine().run(p);
    } catch (const qwen::EngineError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(bad([](auto& p) { p.prompts.clear(); }).find("prompt"), std::string::npos);
  EXPECT_NE(bad([](auto& p) { p.width = -5; }).find("width"), std::string::npos);
  EXPECT_NE(bad([](auto& p) { p.height = 100000; }).find("height"), std::string::npos);
  // steps 0 is the model's default (50 for the 20B family); below that is refused.
  EXPECT_NE(bad([](auto& p) { p.steps = -1; }).find("steps"), std::string::npos);
  EXPECT_NE(bad([](auto& p) { p.true_cfg_scale = -1.0f; }).find("CFG"), std::string::npos);
  EXPECT_NE(bad([](auto& p) { p.num_images_per_prompt = 0; }).find("images"), std::string::npos);
  EXPECT_NE(bad([](auto& p) {
              p.negative_prompts = {"a", "b"};
            }).find("negative"),
            std::string::npos);
  EXPECT_NE(bad([](auto& p) { p.pipeline = qwen::PipelineKind::Img2Img; }).find("image"),
            std::string::npos);
  // A text-to-image model has no vision tower: edits are refused with a reason.
  EXPECT_NE(bad([](auto& p) { p.pipeline = qwen::PipelineKind::Edit; }).find("cannot edit"),
            std::string::npos);
}

TEST(Engine, RejectsBrokenModelFolders) {
  auto open = [](const std::string& dir, const std::string& device = "cpu") {
    qwen::EngineOptions o;
    o.model_dir = dir;
    o.device = device;
    try {
      qwen::Engine::open(o);
    } catch (const qwen::EngineError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(open("/nonexistent/model").find("does not exist"), std::string::npos);
  // TempDir (POSIX removal): std::filesystem::remove_all binds to libtorch's incompatible copy.
  const qwen::test::TempDir dir;
  const fs::path tmp = dir.path();
  EXPECT_NE(open(tmp.string()).find("model_index.json"), std::string::npos);
  fs::copy_file(fs::path(qwen::test::tiny_model_dir()) / "model_index.json",
                tmp / "model_index.json");
  // model_index.json lists components whose folders are missing: named (the first, in order).
  EXPECT_NE(open(tmp.string()).find("component folder 'scheduler'"), std::string::npos);
  for (const char* part : {"transformer", "vae", "text_encoder", "scheduler", "tokenizer"})
    fs::copy(fs::path(qwen::test::tiny_model_dir()) / part, tmp / part,
             fs::copy_options::recursive);
  EXPECT_NE(open(tmp.string(), "tpu").find("unknown device"), std::string::npos);
  // A truncated transformer checkpoint names the component.
  fs::resize_file(tmp / "transformer" / "diffusion_pytorch_model.safetensors", 1000);
  EXPECT_NE(open(tmp.string()).find("transformer"), std::string::npos);
}

TEST(Engine, DeviceAndDtypeStrings) {
  using namespace qwen::pipelines;
  EXPECT_EQ(resolve_device("cpu"), torch::Device(torch::kCPU));
  EXPECT_THROW(resolve_device("gpu"), qwen::EngineError);
  EXPECT_EQ(resolve_dtype("", torch::kCPU), torch::kFloat32);
  EXPECT_EQ(resolve_dtype("bfloat16", torch::kCPU), torch::kBFloat16);
  EXPECT_THROW(resolve_dtype("int8", torch::kCPU), qwen::EngineError);
  EXPECT_EQ(qwen::pipeline_from_string("edit-plus"), qwen::PipelineKind::EditPlus);
  EXPECT_FALSE(qwen::pipeline_from_string("nope").has_value());
  if (!torch::cuda::is_available()) {
    EXPECT_THROW(resolve_device("cuda"), qwen::EngineError);
  }
}
