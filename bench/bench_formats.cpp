// bench_formats: the per-step cost of each weight format (issue #12) on transformer blocks of the
// real Qwen-Image shapes (3072 wide, 24 heads x 128, MLP 12288; the 20.4B model has 60 such
// blocks). The transformer is built with --layers real-size blocks (default 2) and random weights;
// for each format every Linear weight of the transformer blocks is replaced by a weight of that
// format (models::QuantizedWeight, exactly what the loader keeps for a file of that format, kept
// quantised in memory and dequantised per layer call):
//   dense       the plain parameters in the compute dtype (a bf16 file on a bf16 device)
//   fp8         float8_e4m3fn, no scale (ComfyUI plain fp8)
//   fp8_scaled  float8_e4m3fn times a per-tensor scale (legacy scaled fp8 / comfy_quant)
//   Q8_0, Q4_0, Q4_K, Q5_K, Q6_K   GGUF blocks
// fp8 values are random normals cast to fp8; GGUF blocks are random bytes with small finite
// float16 scale fields (the dequantisation cost does not depend on the values). img_in, txt_in,
// the timestep embedder, norm_out and proj_out stay dense in every format, as in city96's files.
//
//   bench_formats --device cuda --dtype bfloat16                        (1024x1024, 2 blocks)
//   bench_formats --device cpu --layers 1 --width 256 --height 256 --txt-len 32 --no-cfg
//                 --steps 1 --threads 2
//   bench_formats --device cpu --heads 2 --layers 1 --width 32 --height 32 ...   (dry runs only)
//
// Prints per format: seconds per step of the --layers-block model, seconds per block (that / the
// number of blocks: the unquantised layers outside the blocks are counted in it, so it is an
// upper bound), the weight bytes of one block, and the 60-block estimates (s/step = s/block x 60,
// weights = block bytes x 60); one "RESULT format=..." line each for scripts (bench/gpu/check.sh).
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "io/gguf.h"
#include "models/linear.h"
#include "models/quant.h"
#include "models/transformer.h"
#include "pipelines/latents.h"
#include "pipelines/scheduler.h"

namespace {

using Clock = std::chrono::steady_clock;
using qwen::io::GgmlType;
using qwen::models::QuantizedWeight;

struct Args {
  std::string device = "cpu";
  std::string dtype;
  std::string formats = "dense,fp8,fp8_scaled,Q8_0,Q4_K";
  int width = 1024, height = 1024;
  int txt_len = 128;
  int steps = 3, warmup = 1;
  int layers = 2;
  int heads = 0;  // 0: the real 24
  bool cfg = true;
  int threads = 0;
};

void usage() {
  std::fprintf(stderr,
               "usage: bench_formats [--device cpu|cuda] [--dtype float32|bfloat16]\n"
               "         [--formats dense,fp8,fp8_scaled,Q8_0,Q4_0,Q4_K,Q5_K,Q6_K]\n"
               "         [--layers L] [--width W] [--height H] [--txt-len T] [--no-cfg]\n"
               "         [--steps N] [--warmup N] [--threads T] [--heads H]\n"
               "  real-size blocks (3072 wide, 24 heads x 128); default 2 blocks, 1024x1024,\n"
               "  128 text tokens, true CFG, the formats dense,fp8,fp8_scaled,Q8_0,Q4_K.\n"
               "  --heads H: H x 128 wide blocks instead (not the real size: for dry runs).\n");
}

bool parse(int argc, char** argv, Args& a) {
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--no-cfg") {
      a.cfg = false;
      continue;
    }
    if (i + 1 >= argc) return false;
    const std::string v = argv[++i];
    if (k == "--device")
      a.device = v;
    else if (k == "--dtype")
      a.dtype = v;
    else if (k == "--formats")
      a.formats = v;
    else if (k == "--width")
      a.width = std::atoi(v.c_str());
    else if (k == "--height")
      a.height = std::atoi(v.c_str());
    else if (k == "--txt-len")
      a.txt_len = std::atoi(v.c_str());
    else if (k == "--steps")
      a.steps = std::atoi(v.c_str());
    else if (k == "--warmup")
      a.warmup = std::atoi(v.c_str());
    else if (k == "--layers")
      a.layers = std::atoi(v.c_str());
    else if (k == "--heads")
      a.heads = std::atoi(v.c_str());
    else if (k == "--threads")
      a.threads = std::atoi(v.c_str());
    else
      return false;
  }
  return a.width >= 16 && a.height >= 16 && a.txt_len >= 1 && a.steps >= 1 && a.warmup >= 0 &&
         a.layers >= 1 && (a.dtype.empty() || a.dtype == "float32" || a.dtype == "bfloat16");
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');)
    if (!x.empty()) out.push_back(x);
  return out;
}

// Byte offsets of the float16 scale fields in one block (gguf-py quants.py layouts; as
// tests/io/gen_quant_cases.py F16_FIELDS).
std::vector<int> f16_fields(GgmlType t) {
  switch (t) {
    case GgmlType::Q8_0:
    case GgmlType::Q4_0:
      return {0};
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
      return {0, 2};
    case GgmlType::Q6_K:
      return {208};
    default:
      return {};
  }
}

bool ggml_of(const std::string& name, GgmlType* t) {
  for (GgmlType c :
       {GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K})
    if (name == qwen::io::ggml_type_name(c)) {
      *t = c;
      return true;
    }
  return false;
}

// A weight of logical shape [out, in] in format `format` on `device` (random content).
QuantizedWeight make_weight(const std::string& format, int64_t out, int64_t in,
                            torch::Device device) {
  if (format == "fp8" || format == "fp8_scaled") {
    auto w = (torch::randn({out, in}, torch::TensorOptions().device(device)) * 100)
                 .clamp(-448, 448)
                 .to(torch::kFloat8_e4m3fn);
    if (format == "fp8") return QuantizedWeight::fp8(w);
    return QuantizedWeight::fp8(w, torch::full({}, 2e-4f, torch::TensorOptions().device(device)));
  }
  GgmlType t{};
  if (!ggml_of(format, &t)) {
    std::fprintf(stderr, "unknown format %s\n", format.c_str());
    std::exit(2);
  }
  const auto& tr = qwen::io::ggml_traits(t);
  if (in % tr.block_size) {
    std::fprintf(stderr, "%s: rows of %lld values are not whole blocks of %u\n", format.c_str(),
                 (long long)in, tr.block_size);
    std::exit(2);
  }
  const int64_t nblocks = out * in / tr.block_size;
  auto bytes = torch::randint(0, 256, {nblocks, (int64_t)tr.type_size}, torch::kUInt8);
  // float16 0.000977 (0x1400): finite, small.
  for (int off : f16_fields(t)) {
    bytes.select(1, off).fill_(0x00);
    bytes.select(1, off + 1).fill_(0x14);
  }
  return QuantizedWeight::ggml(bytes.reshape({-1}), t, {out, in}).to(device);
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!parse(argc, argv, a)) {
    usage();
    return 2;
  }
  const auto target = qwen::bench::bench_target(a.device, a.dtype, a.threads);
  if (!target) return 1;
  const torch::Device device = target->device;
  const torch::Dtype dtype = target->dtype;
  const char* dtype_name = target->dtype_name();
  qwen::models::TransformerConfig cfg;  // the released configuration, --layers blocks
  const int64_t real_layers = cfg.num_layers;
  cfg.num_layers = a.layers;
  if (a.heads > 0) cfg.num_attention_heads = a.heads;

  torch::NoGradGuard ng;
  auto model = qwen::bench::random_transformer(cfg, device, dtype);

  // The transformer-block Linears and their shapes [out, in].
  struct Layer {
    std::string name;
    qwen::models::LinearImpl* linear;
    int64_t out, in;
  };
  std::vector<Layer> layers;
  int64_t block_dense_bytes = 0;  // one block's parameters that stay dense in every format
  for (const auto& m : model->named_modules()) {
    if (m.key().rfind("transformer_blocks.0.", 0) == 0)
      for (const auto& p : m.value()->named_parameters(false))
        if (!dynamic_cast<qwen::models::LinearImpl*>(m.value().get()) || p.key() != "weight")
          block_dense_bytes += p.value().numel() * p.value().element_size();
    auto* lin = dynamic_cast<qwen::models::LinearImpl*>(m.value().get());
    if (lin && m.key().rfind("transformer_blocks.", 0) == 0)
      layers.push_back({m.key(), lin, lin->weight.size(0), lin->weight.size(1)});
  }

  const int64_t h = a.height / 16, w = a.width / 16, s_img = h * w;
  const int64_t s_neg = std::max(1, a.txt_len / 4);
  auto opts = torch::TensorOptions().dtype(dtype).device(device);
  auto gen = qwen::pipelines::make_generator(0);
  const auto latents0 = qwen::pipelines::randn(gen, {1, s_img, 64}, dtype, device);
  auto txt = torch::randn({1, a.txt_len, cfg.joint_attention_dim}, opts);
  auto neg = torch::randn({1, s_neg, cfg.joint_attention_dim}, opts);
  std::vector<qwen::models::ImageShape> shapes{{1, h, w}};

  std::printf("config: %lld blocks of %lld wide (%lld heads x %lld%s), %s %s\n",
              (long long)cfg.num_layers, (long long)cfg.inner_dim(),
              (long long)cfg.num_attention_heads, (long long)cfg.attention_head_dim,
              a.heads > 0 ? ", NOT the real size" : ", the real size", device.str().c_str(),
              dtype_name);
  std::printf("image %dx%d (%lld tokens), text %d tokens%s; %zu block Linears\n", a.width, a.height,
              (long long)s_img, a.txt_len, a.cfg ? " + negative (true CFG)" : "", layers.size());
  std::printf("%-11s %12s %12s %16s %14s %14s %s\n", "format", "s/step", "s/block", "block weights",
              "60-block s/step", "60-block GiB", "finite");
  double dense_step = 0;
  for (const auto& format : split(a.formats)) {
    // Swap the block weights to this format (the previous format's are released). set_quantized
    // has no undo, so "dense" (the model's own parameters) must come first.
    int64_t qbytes = 0;
    if (format == "dense") {
      for (auto& l : layers) {
        if (l.linear->quantized()) {
          std::fprintf(stderr, "bench_formats: put dense first in --formats\n");
          return 2;
        }
        if (l.name.rfind("transformer_blocks.0.", 0) == 0)
          qbytes += l.linear->weight.numel() * l.linear->weight.element_size();
      }
    } else {
      for (auto& l : layers) {
        auto q = make_weight(format, l.out, l.in, device);
        if (l.name.rfind("transformer_blocks.0.", 0) == 0) qbytes += q.storage_bytes();
        l.linear->set_quantized(std::move(q));
      }
    }
    const int64_t block_bytes = qbytes + block_dense_bytes;

    qwen::pipelines::FlowMatchEulerScheduler sched(qwen::pipelines::SchedulerConfig::qwen_image());
    sched.set_timesteps(a.warmup + a.steps,
                        qwen::pipelines::calculate_shift(s_img, sched.config()));
    auto ts = torch::tensor(sched.timesteps()).to(device);
    auto latents = latents0.clone();
    double timed = 0;
    for (int i = 0; i < a.warmup + a.steps; ++i) {
      if (device.is_cuda()) torch::cuda::synchronize();
      const auto s0 = Clock::now();
      auto t = ts[i].expand({1}).to(dtype) / 1000;
      qwen::models::TimestepModulation modulation;
      auto v = model->forward(latents, txt, {}, t, shapes, {}, &modulation);
      if (a.cfg) {
        auto vn = model->forward(latents, neg, {}, t, shapes, {}, &modulation);
        v = qwen::pipelines::true_cfg(v, vn, 4.0);
      }
      latents = sched.step(v, latents);
      if (device.is_cuda()) torch::cuda::synchronize();
      if (i >= a.warmup) timed += std::chrono::duration<double>(Clock::now() - s0).count();
    }
    const bool finite = torch::isfinite(latents).all().item<bool>();
    const double per_step = timed / a.steps, per_block = per_step / cfg.num_layers;
    if (format == "dense") dense_step = per_step;
    const double gib = 1024.0 * 1024 * 1024;
    std::printf("%-11s %12.4f %12.4f %13.1f MB %14.2f %14.2f %s\n", format.c_str(), per_step,
                per_block, block_bytes / 1e6, per_block * real_layers,
                block_bytes * double(real_layers) / gib, finite ? "yes" : "no");
    std::printf(
        "RESULT format=%s device=%s dtype=%s layers=%lld tokens=%lld s_per_step=%.4f "
        "s_per_block=%.4f block_weight_bytes=%lld est60_s_per_step=%.3f est60_weight_gib=%.2f "
        "vs_dense=%.2f finite=%s\n",
        format.c_str(), device.str().c_str(), dtype_name, (long long)cfg.num_layers,
        (long long)s_img, per_step, per_block, (long long)block_bytes, per_block * real_layers,
        block_bytes * double(real_layers) / gib, dense_step > 0 ? per_step / dense_step : -1.0,
        finite ? "yes" : "no");
    std::fflush(stdout);
  }
  return 0;
}
