// bench_fixtures: the tiny fixture pipelines (tests/fixtures/qwen-tiny) on a chosen device and
// precision, checked against the committed goldens or against the CPU. The GPU check
// (bench/gpu/check.sh) runs it twice on CUDA:
//
//   bench_fixtures --device cuda --dtype float32 --against golden    (TF32 off: the same numbers
//                                                                      as the CPU tests, tolerances
//                                                                      of tests/pipelines)
//   bench_fixtures --device cuda --dtype bfloat16 --against cpu      (CUDA bf16 vs CPU bf16, both
//                                                                      measured against the float32
//                                                                      goldens)
//
// Two levels, mirroring tests/pipelines:
//  * loop: the t2i denoising loop on the stored prompt embeddings (test_t2i_loop.cpp): every
//    transformer prediction and the latents after every step, as floats;
//  * engine: prompt text -> PNG through qwen::Engine (test_engine.cpp, test_edit.cpp): the image,
//    as 8-bit levels.
// float32 passes when it is within the tests' tolerances of the goldens (loop 5e-4 absolute,
// images 1 level). bfloat16 passes when the device is about as close to the float32 goldens as the
// CPU in bfloat16 is: relative error of the final latents <= 2 x the CPU's + 1e-2, mean image error
// <= 2 x the CPU's + 1 level; the device-vs-CPU difference is printed as well. Exit code 1 when a
// case fails, 2 on bad arguments.
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "image/png.h"
#include "io/safetensors.h"
#include "models/transformer.h"
#include "models/weights.h"
#include "pipelines/engine.h"
#include "pipelines/latents.h"
#include "pipelines/pipeline_t2i.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string device = "cpu";
  std::string dtype = "float32";
  std::string against = "golden";  // golden | cpu
  std::string fixtures = QWEN_FIXTURES_DIR;
  std::string only;  // comma-separated case names; empty = all
  int threads = 0;
  double loop_tol = 5e-4;  // tests/pipelines/test_t2i_loop.cpp
  int image_tol = 1;       // tests/pipelines/test_engine.cpp
};

void usage() {
  std::fprintf(stderr,
               "usage: bench_fixtures [--device cpu|cuda] [--dtype float32|bfloat16]\n"
               "         [--against golden|cpu] [--fixtures DIR] [--cases a,b,...] [--threads N]\n"
               "         [--loop-tol X] [--image-tol N]\n"
               "  golden: float32 results within the tests' tolerances of the fixtures' goldens;\n"
               "  cpu: the same precision on the CPU as the baseline (both vs the goldens).\n");
}

bool parse(int argc, char** argv, Args& a) {
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) return false;
    const std::string v = argv[++i];
    if (k == "--device")
      a.device = v;
    else if (k == "--dtype")
      a.dtype = v;
    else if (k == "--against")
      a.against = v;
    else if (k == "--fixtures")
      a.fixtures = v;
    else if (k == "--cases")
      a.only = v;
    else if (k == "--threads")
      a.threads = std::atoi(v.c_str());
    else if (k == "--loop-tol")
      a.loop_tol = std::atof(v.c_str());
    else if (k == "--image-tol")
      a.image_tol = std::atoi(v.c_str());
    else
      return false;
  }
  return (a.dtype == "float32" || a.dtype == "bfloat16") &&
         (a.against == "golden" || a.against == "cpu") && a.loop_tol > 0 && a.image_tol >= 0;
}

bool selected(const Args& a, const std::string& name) {
  if (a.only.empty()) return true;
  std::stringstream ss(a.only);
  for (std::string item; std::getline(ss, item, ',');)
    if (item == name) return true;
  return false;
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double rel_err(const torch::Tensor& x, const torch::Tensor& ref) {
  auto a = x.to(torch::kCPU, torch::kDouble), b = ref.to(torch::kCPU, torch::kDouble);
  return ((a - b).norm() / b.norm().clamp_min(1e-30)).item<double>();
}

double max_abs(const torch::Tensor& x, const torch::Tensor& ref) {
  return (x.to(torch::kCPU, torch::kDouble) - ref.to(torch::kCPU, torch::kDouble))
      .abs()
      .max()
      .item<double>();
}

struct LevelDiff {
  int max = 256;  // 256: the sizes differ
  double mean = 256;
};

LevelDiff level_diff(const qwen::ImageU8& a, const qwen::ImageU8& b) {
  LevelDiff d;
  if (a.width != b.width || a.height != b.height || a.pixels.size() != b.pixels.size() ||
      a.pixels.empty())
    return d;
  d.max = 0;
  double sum = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) {
    const int e = std::abs(int(a.pixels[i]) - int(b.pixels[i]));
    d.max = std::max(d.max, e);
    sum += e;
  }
  d.mean = sum / double(a.pixels.size());
  return d;
}

// ---- loop level: the t2i denoising loop on the stored prompt embeddings -------------------------

std::map<std::string, torch::Tensor> load_tensors(const std::string& path) {
  const auto store = qwen::io::TensorStore::open(path);
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, ref] : store.all()) {
    const auto d = ref.info->dtype;
    const bool is_float = d == qwen::io::DType::F64 || d == qwen::io::DType::F32 ||
                          d == qwen::io::DType::F16 || d == qwen::io::DType::BF16;
    out[name] = qwen::models::to_tensor(ref, is_float ? torch::kFloat32 : torch::kInt64).clone();
  }
  return out;
}

struct LoopCase {
  std::string name;
  qwen::pipelines::LatentJob job;
  int64_t seed;
  bool cfg;
};

struct LoopRun {
  torch::Tensor latents;  // final packed latents, CPU float32
  qwen::pipelines::DenoiseTrace trace;
  double seconds = 0;
};

LoopRun run_loop(const Args& a, const LoopCase& k, const std::map<std::string, torch::Tensor>& t,
                 const torch::Device& device, torch::Dtype dtype) {
  using namespace qwen;
  const std::string model_dir = a.fixtures + "/models/qwen-image-tiny";
  // As the engine loads it (pipelines/engine.cpp): config, then the weights in dtype on device.
  auto cfg = models::TransformerConfig::from_json_file(model_dir + "/transformer/config.json");
  models::QwenImageTransformer2DModel transformer(cfg);
  models::load_module(*transformer, io::TensorStore::open(model_dir + "/transformer"),
                      "transformer", dtype, device);
  transformer->eval();
  auto condition = [&](const std::string& name) {
    pipelines::TextCondition c;
    c.embeds = t.at(name).to(device, dtype);
    if (auto it = t.find(name + "_mask"); it != t.end()) c.mask = it->second.to(device);
    return c;
  };
  pipelines::TextCondition uncond;
  if (k.cfg) uncond = condition("negative_prompt_embeds");
  auto gen = pipelines::make_generator(k.seed);
  LoopRun r;
  torch::NoGradGuard ng;
  const auto t0 = Clock::now();
  auto latents = pipelines::t2i_latents(
      *transformer,
      pipelines::SchedulerConfig::from_json_file(model_dir + "/scheduler/scheduler_config.json"),
      k.job, condition("prompt_embeds"), uncond, gen, dtype, device, {}, &r.trace);
  r.latents = latents.to(torch::kCPU, torch::kFloat32);
  r.seconds = seconds_since(t0);
  return r;
}

bool loop_checks(const Args& a, const torch::Device& device, torch::Dtype dtype) {
  qwen::pipelines::LatentJob cfg1;
  cfg1.height = 64;
  cfg1.width = 96;
  cfg1.steps = 4;
  cfg1.true_cfg_scale = 1.0;
  qwen::pipelines::LatentJob cfg4;
  cfg4.height = 96;
  cfg4.width = 64;
  cfg4.steps = 3;
  cfg4.true_cfg_scale = 4.0;
  cfg4.batch = 2;
  const LoopCase cases[] = {{"pipeline_t2i_cfg1", cfg1, 42, false},
                            {"pipeline_t2i_cfg4", cfg4, 7, true}};
  bool ok = true;
  for (const auto& k : cases) {
    const std::string name = "loop:" + k.name;
    if (!selected(a, name) && !selected(a, k.name)) continue;
    bool pass = false;
    std::string detail;
    try {
      auto t = load_tensors(a.fixtures + "/cases/" + k.name + "/tensors.safetensors");
      auto run = run_loop(a, k, t, device, dtype);
      const auto golden_latents = t.at("step_latents").select(0, k.job.steps - 1);
      const bool finite = torch::isfinite(run.latents).all().item<bool>();
      char buf[512];
      if (a.against == "golden") {
        const double d_pred =
            max_abs(torch::stack(run.trace.noise_preds), t.at("transformer_noise_pred"));
        const double d_lat = max_abs(torch::stack(run.trace.step_latents), t.at("step_latents"));
        pass = finite && d_pred <= a.loop_tol && d_lat <= a.loop_tol;
        std::snprintf(buf, sizeof(buf),
                      "max_abs_noise_pred=%.3g max_abs_step_latents=%.3g tol=%.3g rel_final=%.3g "
                      "time_s=%.3f",
                      d_pred, d_lat, a.loop_tol, rel_err(run.latents, golden_latents), run.seconds);
      } else {
        auto base = run_loop(a, k, t, torch::kCPU, dtype);
        const double e_dev = rel_err(run.latents, golden_latents);
        const double e_cpu = rel_err(base.latents, golden_latents);
        const double d = rel_err(run.latents, base.latents);
        pass = finite && e_dev <= 2 * e_cpu + 1e-2;
        std::snprintf(buf, sizeof(buf),
                      "rel_vs_golden=%.3g cpu_rel_vs_golden=%.3g rel_vs_cpu=%.3g "
                      "bound=%.3g time_s=%.3f cpu_time_s=%.3f",
                      e_dev, e_cpu, d, 2 * e_cpu + 1e-2, run.seconds, base.seconds);
      }
      detail = buf;
      if (!finite) detail += " non-finite";
    } catch (const std::exception& e) {
      detail = std::string("error: ") + e.what();
      for (auto& c : detail)
        if (c == '\n') c = ' ';
    }
    std::printf("RESULT check=loop case=%s pass=%s %s\n", k.name.c_str(), pass ? "yes" : "no",
                detail.c_str());
    std::fflush(stdout);
    ok = ok && pass;
  }
  return ok;
}

// ---- engine level: prompt text -> PNG ----------------------------------------------------------

struct EngineCase {
  std::string name;  // the fixture case: cases/<name>/output.png
  bool edit_model;
  std::function<qwen::RunParams(const std::string& case_dir)> params;
};

std::vector<EngineCase> engine_cases() {
  using qwen::PipelineKind;
  using qwen::RunParams;
  std::vector<EngineCase> c;
  // tests/pipelines/test_engine.cpp
  c.push_back({"pipeline_t2i_cfg1", false, [](const std::string&) {
                 RunParams p;
                 p.prompts = {"A red bicycle leaning against a blue wall, watercolor"};
                 p.true_cfg_scale = 1.0f;
                 p.height = 64;
                 p.width = 96;
                 p.steps = 4;
                 p.seed = 42;
                 return p;
               }});
  c.push_back({"pipeline_t2i_cfg4", false, [](const std::string&) {
                 RunParams p;
                 p.prompts = {"Sunset over the mountains, oil painting",
                              "夕阳下的长城，油画风格，细节丰富"};
                 p.negative_prompts = {"blurry, low quality", "模糊"};
                 p.true_cfg_scale = 4.0f;
                 p.height = 96;
                 p.width = 64;
                 p.steps = 3;
                 p.seed = 7;
                 return p;
               }});
  c.push_back({"pipeline_img2img", false, [](const std::string& dir) {
                 RunParams p;
                 p.pipeline = PipelineKind::Img2Img;
                 p.prompts = {"Turn it into a pencil drawing"};
                 p.negative_prompts = {" "};
                 p.true_cfg_scale = 4.0f;
                 p.height = 64;
                 p.width = 80;
                 p.strength = 0.7f;
                 p.steps = 5;
                 p.seed = 3;
                 p.images = {qwen::read_png(dir + "/image_0.png")};
                 return p;
               }});
  c.push_back({"pipeline_inpaint", false, [](const std::string& dir) {
                 RunParams p;
                 p.pipeline = PipelineKind::Inpaint;
                 p.prompts = {"一只橘猫坐在草地上"};
                 p.true_cfg_scale = 1.0f;
                 p.height = 64;
                 p.width = 96;
                 p.strength = 0.9f;
                 p.steps = 4;
                 p.seed = 11;
                 p.images = {qwen::read_png(dir + "/image_0.png")};
                 p.mask = qwen::read_png(dir + "/mask.png");
                 return p;
               }});
  // tests/pipelines/test_edit.cpp
  c.push_back({"pipeline_edit", true, [](const std::string& dir) {
                 RunParams p;
                 p.pipeline = PipelineKind::Edit;
                 p.prompts = {"Make the sky purple"};
                 p.negative_prompts = {" "};
                 p.true_cfg_scale = 4.0f;
                 p.height = 64;
                 p.width = 64;
                 p.steps = 2;
                 p.seed = 5;
                 p.images = {qwen::read_png(dir + "/image_0.png")};
                 return p;
               }});
  c.push_back(
      {"pipeline_edit_plus", true, [](const std::string& dir) {
         RunParams p;
         p.pipeline = PipelineKind::EditPlus;
         p.prompts = {"Put the object from picture 1 on the table in picture 2，保持光照一致"};
         p.negative_prompts = {" "};
         p.true_cfg_scale = 4.0f;
         p.height = 48;
         p.width = 80;
         p.steps = 2;
         p.seed = 9;
         p.images = {qwen::read_png(dir + "/image_0.png"), qwen::read_png(dir + "/image_1.png")};
         return p;
       }});
  return c;
}

struct Engines {
  std::unique_ptr<qwen::Engine> t2i, edit;
  double load_s = 0;
};

Engines open_engines(const Args& a, const std::string& device) {
  Engines e;
  const auto t0 = Clock::now();
  for (bool edit : {false, true}) {
    qwen::EngineOptions o;
    o.model_dir =
        a.fixtures + (edit ? "/models/qwen-image-edit-2509-tiny" : "/models/qwen-image-tiny");
    o.device = device;
    o.dtype = a.dtype;
    o.threads = a.threads;
    (edit ? e.edit : e.t2i) = qwen::Engine::open(o);
  }
  e.load_s = seconds_since(t0);
  return e;
}

bool engine_checks(const Args& a) {
  bool ok = true;
  std::unique_ptr<Engines> dev, cpu;
  for (const auto& k : engine_cases()) {
    if (!selected(a, "engine:" + k.name) && !selected(a, k.name)) continue;
    bool pass = false;
    std::string detail;
    try {
      if (!dev) {
        dev = std::make_unique<Engines>(open_engines(a, a.device));
        std::printf("engine: tiny models opened on %s in %.2f s\n", a.device.c_str(), dev->load_s);
      }
      const std::string dir = a.fixtures + "/cases/" + k.name;
      const auto golden = qwen::read_png(dir + "/output.png");
      const auto params = k.params(dir);
      const auto t0 = Clock::now();
      const auto out = (k.edit_model ? dev->edit : dev->t2i)->run(params);
      const double secs = seconds_since(t0);
      if (out.empty()) throw std::runtime_error("the engine returned no image");
      const auto e_dev = level_diff(out[0], golden);
      char buf[512];
      if (a.against == "golden") {
        pass = e_dev.max <= a.image_tol;
        std::snprintf(buf, sizeof(buf), "max_level_diff=%d mean_level_diff=%.4f tol=%d time_s=%.3f",
                      e_dev.max, e_dev.mean, a.image_tol, secs);
      } else {
        if (!cpu) cpu = std::make_unique<Engines>(open_engines(a, "cpu"));
        const auto t1 = Clock::now();
        const auto base = (k.edit_model ? cpu->edit : cpu->t2i)->run(params);
        const double cpu_secs = seconds_since(t1);
        const auto e_cpu = level_diff(base.at(0), golden);
        const auto d = level_diff(out[0], base.at(0));
        const double bound = 2 * e_cpu.mean + 1;
        pass = e_dev.max < 256 && e_dev.mean <= bound;
        std::snprintf(buf, sizeof(buf),
                      "mean_vs_golden=%.4f max_vs_golden=%d cpu_mean_vs_golden=%.4f "
                      "cpu_max_vs_golden=%d mean_vs_cpu=%.4f max_vs_cpu=%d bound=%.4f time_s=%.3f "
                      "cpu_time_s=%.3f",
                      e_dev.mean, e_dev.max, e_cpu.mean, e_cpu.max, d.mean, d.max, bound, secs,
                      cpu_secs);
      }
      detail = buf;
    } catch (const std::exception& e) {
      detail = std::string("error: ") + e.what();
      for (auto& c : detail)
        if (c == '\n') c = ' ';
    }
    std::printf("RESULT check=engine case=%s pass=%s %s\n", k.name.c_str(), pass ? "yes" : "no",
                detail.c_str());
    std::fflush(stdout);
    ok = ok && pass;
  }
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!parse(argc, argv, a)) {
    usage();
    return 2;
  }
  qwen::set_torch_threads(a.threads);
  const torch::Device device(a.device);
  if (device.is_cuda() && !torch::cuda::is_available()) {
    std::fprintf(stderr, "bench_fixtures: --device %s but CUDA is not available\n",
                 a.device.c_str());
    return 1;
  }
  // The float32 goldens need IEEE float32 on the GPU: no TF32 in cuBLAS matmuls or cuDNN
  // convolutions (PyTorch lets cuDNN use TF32 by default), "highest" matmul precision.
  auto& ctx = at::globalContext();
  ctx.setAllowTF32CuBLAS(false);
  ctx.setAllowTF32CuDNN(false);
  ctx.setFloat32MatmulPrecision("highest");
  std::printf("bench_fixtures: %s %s against %s; TF32 cuBLAS %s, cuDNN %s; fixtures %s\n",
              a.device.c_str(), a.dtype.c_str(), a.against.c_str(),
              ctx.allowTF32CuBLAS() ? "on" : "off", ctx.allowTF32CuDNN() ? "on" : "off",
              a.fixtures.c_str());
  const torch::Dtype dtype = a.dtype == "bfloat16" ? torch::kBFloat16 : torch::kFloat32;
  const auto t0 = Clock::now();
  qwen::bench::reset_device_peak(device);
  const bool loop_ok = loop_checks(a, device, dtype);
  const bool engine_ok = engine_checks(a);
  if (auto peak = qwen::bench::device_peak(device))
    std::printf("peak device memory: %.3f GiB allocated, %.3f GiB reserved\n", peak->allocated_gib,
                peak->reserved_gib);
  std::printf("peak host memory (RSS): %.2f GiB\n", qwen::bench::host_peak_gib());
  std::printf("bench_fixtures: %s in %.1f s\n", loop_ok && engine_ok ? "PASS" : "FAIL",
              seconds_since(t0));
  return loop_ok && engine_ok ? 0 : 1;
}
