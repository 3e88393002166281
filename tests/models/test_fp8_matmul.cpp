// fp8 tensor-core matmul (issues #13/#15): models/quant.h fp8_linear / quantized_linear with
// fp8_matmul, models/linear.h LinearImpl::set_fp8_matmul and models/fp8_matmul.h (mode, decision,
// walker), on the CPU (at::_scaled_mm has a CPU kernel; "on" forces the path there).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "models/fp8_matmul.h"
#include "models/linear.h"
#include "models/quant.h"
#include "models/transformer21.h"

namespace {

using qwen::models::Fp8MatmulMode;
using qwen::models::QuantizedWeight;

// W ~ N(0, 0.05) [n, k] stored as e4m3 with a per-tensor scale amax / 448 (what ComfyUI's scaled
// fp8 files and quantise-on-load hold).
QuantizedWeight random_fp8(int64_t n, int64_t k, bool with_scale = true) {
  auto w = torch::randn({n, k}) * 0.05;
  if (!with_scale) return QuantizedWeight::fp8(w.to(torch::kFloat8_e4m3fn));
  auto scale = (w.abs().max() / 448.0).reshape({});
  return QuantizedWeight::fp8((w / scale).to(torch::kFloat8_e4m3fn), scale);
}

bool bit_equal(const torch::Tensor& a, const torch::Tensor& b) {
  return a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() && torch::equal(a, b);
}

// The bound on |fp8_linear - x W^T| where W is the dequantised weight (exact in float32): only x is
// rounded. e4m3 keeps 3 mantissa bits, so a normal value x/s rounds with relative error <= 2^-4,
// and a subnormal one (|x/s| < 2^-6, spacing 2^-9) with absolute error <= 2^-10; back in x's
// units the error of x[m, k] is <= 2^-4 |x[m, k]| + 2^-10 s_m, s_m = amax_k |x[m, k]| / 448. Summed
// against W: |err[m, n]| <= 2^-4 (|x| |W|^T)[m, n] + 2^-10 s_m sum_k |W[n, k]|, plus float32
// accumulation (K * 2^-24 relative to |x| |W|^T, covered by the 1e-5 term for K <= 160).
torch::Tensor fp8_bound(const torch::Tensor& x2, const torch::Tensor& w) {
  const auto ax = x2.abs().to(torch::kFloat32), aw = w.abs().to(torch::kFloat32);
  const auto s = ax.amax({1}, true) / 448.0;
  const auto mag = at::matmul(ax, aw.t());
  return mag * (std::pow(2.0, -4) + 1e-5) + s * aw.sum(1).reshape({1, -1}) * std::pow(2.0, -10);
}

TEST(Fp8Matmul, MatchesTheDequantisedProductWithinTheActivationRounding) {
  torch::manual_seed(1);
  torch::NoGradGuard ng;
  const auto w = random_fp8(48, 64);
  const auto bias = torch::randn({48});
  // 3-D input as the models pass it; rows of very different magnitudes (per-token scales).
  auto x = torch::randn({2, 5, 64}) * torch::tensor({1e-3, 1.0, 30.0, 0.2, 5.0}).reshape({1, 5, 1});
  ASSERT_TRUE(qwen::models::fp8_matmul_applies(x, w));
  const int64_t before = qwen::models::fp8_matmul_count();
  const auto got = qwen::models::quantized_linear(x, w, bias, /*fp8_matmul=*/true);
  EXPECT_EQ(qwen::models::fp8_matmul_count(), before + 1);
  const auto deq = w.dequantize(torch::kFloat32);
  const auto ref = at::linear(x, deq, bias);
  ASSERT_EQ(got.sizes(), ref.sizes());
  EXPECT_EQ(got.scalar_type(), torch::kFloat32);
  const auto err = (got - ref).abs().reshape({-1, 48});
  const auto bound = fp8_bound(x.reshape({-1, 64}), deq);
  EXPECT_TRUE((err <= bound).all().item<bool>())
      << "max err " << err.max().item<double>() << ", worst ratio "
      << (err / bound).max().item<double>();
  // The path is really another computation: not the dequantised product bit for bit...
  EXPECT_FALSE(bit_equal(got, qwen::models::quantized_linear(x, w, bias, false)));
  // ...and the error is of the size the rounding predicts (not 0, not far below the bound).
  EXPECT_GT((err / bound).max().item<double>(), 0.01);
  // A row of zeros stays zero (the scale is clamped away from 0, no NaN).
  auto z = torch::zeros({3, 64});
  EXPECT_TRUE(torch::equal(qwen::models::fp8_linear(z, w), torch::zeros({3, 48})));
}

TEST(Fp8Matmul, WeightWithoutScaleAndBfloat16Input) {
  torch::manual_seed(2);
  torch::NoGradGuard ng;
  const auto w = random_fp8(32, 32, /*with_scale=*/false);
  auto x = torch::randn({7, 32});
  const auto deq = w.dequantize(torch::kFloat32);
  auto got = qwen::models::fp8_linear(x, w);
  EXPECT_TRUE(((got - at::linear(x, deq)).abs() <= fp8_bound(x, deq)).all().item<bool>());
  // bfloat16 (the CUDA compute dtype): the output is bfloat16, within the bound plus its rounding
  // (2^-8 relative) of a bfloat16 x.
  auto xb = x.to(torch::kBFloat16);
  auto gb = qwen::models::fp8_linear(xb, w);
  EXPECT_EQ(gb.scalar_type(), torch::kBFloat16);
  const auto ref = at::linear(xb.to(torch::kFloat32), deq);
  const auto bound = fp8_bound(xb.to(torch::kFloat32), deq) + ref.abs() * std::pow(2.0, -8);
  EXPECT_TRUE(((gb.to(torch::kFloat32) - ref).abs() <= bound).all().item<bool>());
}

TEST(Fp8Matmul, EverythingElseTakesTheDequantisedPathBitForBit) {
  torch::manual_seed(3);
  torch::NoGradGuard ng;
  const auto bias = torch::randn({32});
  auto x = torch::randn({4, 48});
  auto same = [&](const QuantizedWeight& w, const torch::Tensor& in, const char* what) {
    SCOPED_TRACE(what);
    EXPECT_FALSE(qwen::models::fp8_matmul_applies(in, w));
    const int64_t before = qwen::models::fp8_matmul_count();
    const auto on = qwen::models::quantized_linear(in, w, bias, true);
    EXPECT_EQ(qwen::models::fp8_matmul_count(), before);
    EXPECT_TRUE(bit_equal(on, qwen::models::quantized_linear(in, w, bias, false)));
  };
  auto w = torch::randn({32, 48}) * 0.05;
  same(QuantizedWeight::fp8(w.to(torch::kFloat8_e5m2)), x, "e5m2");
  same(QuantizedWeight::dense(w), x, "dense");
  // GGUF Q8_0: blocks of an fp16 scale (1.0) and 32 int8 values.
  auto blocks = torch::randint(-100, 100, {32 * 48 / 32, 34}, torch::kInt8).view(torch::kUInt8);
  blocks.select(1, 0).fill_(0x00);
  blocks.select(1, 1).fill_(0x3C);
  same(QuantizedWeight::ggml(blocks.reshape({-1}), qwen::io::GgmlType::Q8_0, {32, 48}), x,
       "gguf q8_0");
  // Sides that are not multiples of 16 (cuBLASLt's fp8 alignment).
  auto odd = torch::randn({32, 24}) * 0.05;
  same(QuantizedWeight::fp8(odd.to(torch::kFloat8_e4m3fn)), torch::randn({4, 24}), "k = 24");
  // An input of float64 (no fp8 kernel writes it).
  same(QuantizedWeight::fp8(w.to(torch::kFloat8_e4m3fn)), x.to(torch::kFloat64), "float64 input");
}

TEST(Fp8Matmul, LinearLayerFlagLoraSideBranchAndMerge) {
  torch::manual_seed(4);
  torch::NoGradGuard ng;
  qwen::models::Linear l(64, 32);
  l->bias.normal_();
  const auto w = random_fp8(32, 64);
  l->set_quantized(w);
  auto x = torch::randn({2, 3, 64});
  const auto plain = l(x);  // off by default: the dequantised path
  EXPECT_TRUE(bit_equal(plain, qwen::models::quantized_linear(x, w, l->bias)));
  l->set_fp8_matmul(true);
  const auto fp8 = l(x);
  EXPECT_TRUE(bit_equal(fp8, qwen::models::fp8_linear(x, w, l->bias)));
  EXPECT_FALSE(bit_equal(fp8, plain));
  // The flag survives a new copy of the weight (placements swap it) and Module::to.
  l->set_quantized(w);
  l->to(torch::kCPU);
  EXPECT_TRUE(l->fp8_matmul());
  EXPECT_TRUE(bit_equal(l(x), fp8));
  // LoRA side branches are added on top of the fp8 product, as PEFT's lora.Linear.forward does.
  qwen::models::LoraBranch b{torch::randn({4, 64}) * 0.1, torch::randn({32, 4}) * 0.1, 0.7};
  l->set_lora({b}, /*merge=*/false);
  const int64_t before = qwen::models::fp8_matmul_count();
  const auto with_lora = l(x);
  EXPECT_EQ(qwen::models::fp8_matmul_count(), before + 1);
  EXPECT_TRUE(bit_equal(with_lora, fp8 + at::linear(at::linear(x, b.down), b.up) * b.scale));
  // A merged LoRA multiplies its dense working copy: no fp8 product.
  l->set_lora({b}, /*merge=*/true);
  const auto merged = l(x);
  EXPECT_EQ(qwen::models::fp8_matmul_count(), before + 1);
  auto wm = w.dequantize(torch::kFloat32) + at::matmul(b.up, b.down) * b.scale;
  EXPECT_TRUE(torch::allclose(merged, at::linear(x, wm, l->bias), 1e-5, 1e-5));
  l->clear_lora();
  EXPECT_TRUE(bit_equal(l(x), fp8));
}

TEST(Fp8Matmul, ModeParsingDecisionAndWalker) {
  using qwen::models::parse_fp8_matmul_mode;
  EXPECT_EQ(parse_fp8_matmul_mode(""), Fp8MatmulMode::Auto);
  EXPECT_EQ(parse_fp8_matmul_mode("auto"), Fp8MatmulMode::Auto);
  EXPECT_EQ(parse_fp8_matmul_mode("on"), Fp8MatmulMode::On);
  EXPECT_EQ(parse_fp8_matmul_mode("off"), Fp8MatmulMode::Off);
  try {
    parse_fp8_matmul_mode("yes");
    ADD_FAILURE() << "no error for 'yes'";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "fp8_matmul 'yes' is not one of auto, on, off");
  }
  const torch::Device cpu(torch::kCPU);
  EXPECT_FALSE(qwen::models::decide_fp8_matmul(Fp8MatmulMode::Auto, cpu).on);
  EXPECT_NE(qwen::models::decide_fp8_matmul(Fp8MatmulMode::Auto, cpu).reason.find("8.9"),
            std::string::npos);
  EXPECT_TRUE(qwen::models::decide_fp8_matmul(Fp8MatmulMode::On, cpu).on);
  EXPECT_FALSE(qwen::models::decide_fp8_matmul(Fp8MatmulMode::Off, cpu).on);
  EXPECT_FALSE(qwen::models::cuda_compute_capability(cpu).has_value());

  // The walker flags every Linear and counts those an fp8 product can take.
  torch::nn::Sequential seq(qwen::models::Linear(64, 32), qwen::models::Linear(24, 32),
                            qwen::models::Linear(64, 32), qwen::models::Linear(64, 32));
  auto lin = [&](size_t i) { return seq[i]->as<qwen::models::LinearImpl>(); };
  lin(0)->set_quantized(random_fp8(32, 64));
  lin(1)->set_quantized(QuantizedWeight::fp8(torch::zeros({32, 24}).to(torch::kFloat8_e4m3fn)));
  lin(2)->set_quantized(QuantizedWeight::fp8(torch::zeros({32, 64}).to(torch::kFloat8_e5m2)));
  auto applied = qwen::models::apply_fp8_matmul(Fp8MatmulMode::On, cpu, {{"seq", seq.ptr().get()}});
  EXPECT_TRUE(applied.on);
  EXPECT_EQ(applied.layers, 1);
  EXPECT_EQ(applied.line,
            "fp8 matmul: on (asked for): 1 fp8 e4m3 layers (seq 1) multiply on fp8 tensor cores "
            "(at::_scaled_mm)");
  for (size_t i = 0; i < 4; ++i) EXPECT_TRUE(lin(i)->fp8_matmul());
  applied = qwen::models::apply_fp8_matmul(Fp8MatmulMode::Auto, cpu, {{"seq", seq.ptr().get()}});
  EXPECT_FALSE(applied.on);
  for (size_t i = 0; i < 4; ++i) EXPECT_FALSE(lin(i)->fp8_matmul());
  EXPECT_EQ(applied.line.rfind("fp8 matmul: off (auto: the device is cpu", 0), 0u) << applied.line;
}

// The Qwen-Image-2.1 transformer (issue #15) with fp8 weights: the fp8 product in every block,
// close to the dequantised path but not equal. Sides are multiples of 16 (inner 32, MLP 64,
// context 16, 16 latent channels).
TEST(Fp8Matmul, Transformer21WithFp8Weights) {
  torch::manual_seed(5);
  torch::NoGradGuard ng;
  qwen::models::Transformer21Config c;
  c.num_layers = 2;
  c.attention_head_dim = 16;
  c.num_attention_heads = 2;
  c.axes_dims_rope = {4, 6, 6};
  c.in_channels = c.out_channels = 16;
  c.context_in_dim = 16;
  c.mlp_ratio = 2;
  qwen::models::QwenImage21Transformer2DModel m(c);
  for (auto& p : m->parameters()) p.normal_(0.0, 0.3);
  int64_t fp8_layers = 0;
  for (const auto& mod : m->modules(false)) {
    auto* l = dynamic_cast<qwen::models::LinearImpl*>(mod.get());
    if (!l) continue;
    // Variance-preserving weights (std 1/sqrt(in)), as trained models are: no layer amplifies
    // the rounding of the ones before it.
    auto w = l->weight.normal_(0.0, 1.0 / std::sqrt(double(l->weight.size(1)))).clone();
    auto scale = (w.abs().max() / 448.0).reshape({});
    l->set_quantized(QuantizedWeight::fp8((w / scale).to(torch::kFloat8_e4m3fn), scale));
    ++fp8_layers;
  }
  std::vector<bool> mask;
  for (char ch : std::string("ttttiii")) mask.push_back(ch == 'i');
  const std::vector<qwen::models::qwen21::Shape> shapes{{1, 2, 6}};
  auto hs = torch::randn({1, 12, 16});
  auto ehs = torch::randn({1, 4, 16});
  auto t = torch::full({1}, 0.7);
  const auto ref = m->forward(hs, ehs, {}, t, shapes, mask);
  const auto applied = qwen::models::apply_fp8_matmul(Fp8MatmulMode::On, torch::kCPU,
                                                      {{"transformer", m.ptr().get()}});
  EXPECT_EQ(applied.layers, fp8_layers);
  const int64_t before = qwen::models::fp8_matmul_count();
  const auto got = m->forward(hs, ehs, {}, t, shapes, mask);
  EXPECT_GE(qwen::models::fp8_matmul_count() - before, 2 * 7);  // >= 7 Linears per block
  const double rel = ((got - ref).norm() / ref.norm()).item<double>();
  std::printf("2.1 transformer, fp8 matmul vs dequantised: relative L2 difference %.3g\n", rel);
  EXPECT_GT(rel, 0.0);
  // Each product carries the activations' e4m3 rounding (2^-4 relative at most, a few percent RMS
  // on a dot product) and the model chains ~5 of them: measured 0.033 here (seed 5).
  EXPECT_LT(rel, 0.06);
}

}  // namespace
