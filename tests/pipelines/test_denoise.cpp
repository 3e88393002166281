// The denoising loop's GPU-minded economies, checked on the CPU: the timestep modulation is
// computed once per step and shared by the CFG passes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/fixtures.h"
#include "common/tiny_transformer.h"
#include "pipelines/latents.h"
#include "pipelines/pipeline_t2i.h"

using namespace qwen::pipelines;
using qwen::test::fixture_path;

namespace {

TextCondition condition(const std::map<std::string, torch::Tensor>& t, const std::string& name) {
  TextCondition c;
  c.embeds = t.at(name);
  if (auto it = t.find(name + "_mask"); it != t.end()) c.mask = it->second;
  return c;
}

}  // namespace

TEST(Denoise, ModulationOncePerStepWithCfg) {
  auto t = qwen::test::load_tensors(fixture_path("cases/pipeline_t2i_cfg4/tensors.safetensors"));
  auto tr = qwen::test::load_transformer(qwen::test::tiny_model_dir());
  LatentJob job;
  job.height = 96;
  job.width = 64;
  job.steps = 3;
  job.true_cfg_scale = 4.0;
  job.batch = 2;
  for (bool cfg : {true, false}) {
    SCOPED_TRACE(cfg ? "cfg" : "no cfg");
    auto gen = make_generator(7);
    DenoiseTrace trace;
    const int64_t before = tr->modulation_computations();
    t2i_latents(*tr, SchedulerConfig::qwen_image(), job, condition(t, "prompt_embeds"),
                cfg ? condition(t, "negative_prompt_embeds") : TextCondition{}, gen,
                torch::kFloat32, torch::kCPU, {}, &trace);
    EXPECT_EQ(trace.noise_preds.size(), size_t(cfg ? 6 : 3));  // transformer calls
    EXPECT_EQ(tr->modulation_computations() - before, 3);      // one per step
  }
}
