// Quantise-on-load to fp8 (`--quantize fp8`; models/quantize.h, io/quantize_on_load.h): the
// formula on plain tensors, the layers it picks, and the engines on the tiny models: the image of
// `--quantize fp8` equals, bit for bit, the image of an fp8 single file that
// tests/reference/make_fp8_scaled.py writes from the same weights with the same formula; the
// transformer's resident bytes drop by what the planner predicts; streaming streams fp8 bytes and
// gives the resident image.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "common/engine_cases.h"
#include "common/fixtures.h"
#include "io/checkpoint.h"
#include "io/quantize_on_load.h"
#include "models/linear.h"
#include "models/offload.h"
#include "models/quantize.h"
#include "pipelines/engine.h"
#include "pipelines/engine_impl.h"
#include "pipelines/engine_qwen21.h"
#include "plan/model_sizes.h"
#include "reference_case.h"

namespace fs = std::filesystem;

namespace {

// The independent float32 formula of models/quantize.h.
float expected_scale(const torch::Tensor& w) {
  const auto w32 = w.to(torch::kFloat32).contiguous();
  float amax = 0;
  for (int64_t i = 0; i < w32.numel(); ++i)
    amax = std::max(amax, std::fabs(w32.data_ptr<float>()[i]));
  return amax > 0 ? amax / 448.0f : 1.0f;
}

TEST(QuantizeOnLoad, Fp8DequantisesToTheFormulaWithinE4m3Rounding) {
  torch::manual_seed(3);
  // Spread over many binades, so normal and subnormal e4m3 values both occur.
  const auto w = torch::randn({37, 53}) * torch::exp(torch::randn({37, 53}) * 3);
  const auto q = qwen::models::quantize_fp8(w);
  ASSERT_EQ(q.kind(), qwen::models::QuantizedWeight::Kind::Fp8);
  EXPECT_EQ(q.shape(), (std::vector<int64_t>{37, 53}));
  EXPECT_EQ(q.storage().scalar_type(), torch::kFloat8_e4m3fn);
  EXPECT_EQ(q.storage().sizes(), w.sizes());
  ASSERT_TRUE(q.scale().defined());
  EXPECT_EQ(q.scale().dim(), 0);
  EXPECT_EQ(q.scale().scalar_type(), torch::kFloat32);
  const float scale = expected_scale(w);
  EXPECT_EQ(q.scale().item<float>(), scale);
  EXPECT_FALSE(q.input_scale().defined());
  EXPECT_EQ(q.storage_bytes(), 37 * 53 + 4);
  // Dequantised = float(q) * scale, exactly (ComfyUI's rule for scaled fp8).
  const auto deq = q.dequantize(torch::kFloat32);
  EXPECT_TRUE(torch::equal(deq, q.storage().to(torch::kFloat32) * q.scale()));
  // The codes are w / scale rounded to the nearest e4m3 value: half a step of 3 mantissa bits
  // (2^-4 relative) for normals, half the subnormal step (2^-10 absolute) below 2^-6.
  const auto x = w / scale;
  const auto codes = q.storage().to(torch::kFloat32);
  const auto bound =
      torch::maximum(x.abs() * std::ldexp(1.0f, -4), torch::full_like(x, std::ldexp(1.0f, -10)));
  EXPECT_TRUE(((codes - x).abs() <= bound * (1 + 1e-6)).all().item<bool>());
  EXPECT_LE(codes.abs().max().item<float>(), 448.0f);
  // The largest magnitude maps to +-448 exactly.
  EXPECT_EQ(codes.abs().max().item<float>(), 448.0f);
  EXPECT_GT(((codes.abs() < std::ldexp(1.0f, -6)) & (x != 0)).sum().item<int64_t>(), 0)
      << "the test data should reach the subnormal range";
}

TEST(QuantizeOnLoad, RoundsHalfwayCasesToEven) {
  // With amax 448 the scale is 1: the codes are the values rounded. 1.0625 lies halfway between
  // 1 (mantissa 000) and 1.125 (001): to 1; 1.1875 between 1.125 and 1.25 (010): to 1.25.
  const auto w = torch::tensor({448.0f, 1.0625f, 1.1875f, -1.0625f, 0.0f}).reshape({1, 5});
  const auto q = qwen::models::quantize_fp8(w);
  EXPECT_EQ(q.scale().item<float>(), 1.0f);
  const auto c = q.storage().to(torch::kFloat32);
  EXPECT_TRUE(torch::equal(c, torch::tensor({448.0f, 1.0f, 1.25f, -1.0f, 0.0f}).reshape({1, 5})))
      << c;
}

TEST(QuantizeOnLoad, AllZeroWeightGetsScaleOne) {
  const auto q = qwen::models::quantize_fp8(torch::zeros({4, 8}, torch::kBFloat16));
  EXPECT_EQ(q.scale().item<float>(), 1.0f);
  EXPECT_EQ(q.shape(), (std::vector<int64_t>{4, 8}));
  EXPECT_TRUE(torch::equal(q.dequantize(torch::kFloat32), torch::zeros({4, 8})));
  EXPECT_THROW(qwen::models::quantize_fp8(torch::ones({2, 2}, torch::kInt32)), c10::Error);
}

TEST(QuantizeOnLoad, SameBytesFromBf16AndItsFloat32Copy) {
  torch::manual_seed(5);
  const auto w = torch::randn({64, 96}).to(torch::kBFloat16);
  const auto a = qwen::models::quantize_fp8(w);
  const auto b = qwen::models::quantize_fp8(w.to(torch::kFloat32));
  EXPECT_TRUE(torch::equal(a.storage().view(torch::kUInt8), b.storage().view(torch::kUInt8)));
  EXPECT_EQ(a.scale().item<float>(), b.scale().item<float>());
}

TEST(QuantizeOnLoad, PicksTheTransformerBlockLinearsAndParsesTheMode) {
  using qwen::io::quantize_on_load_selects;
  for (const char* k :
       {"transformer_blocks.0.attn.to_q.weight", "transformer_blocks.12.img_mod.1.weight",
        "transformer_blocks.3.txt_mlp.net.2.weight", "transformer_blocks.1.img_mlp.gate_up.weight",
        "transformer_blocks.0.attn.to_out.0.weight"})
    EXPECT_TRUE(quantize_on_load_selects(k, {64, 32})) << k;
  EXPECT_FALSE(quantize_on_load_selects("transformer_blocks.0.attn.to_q.bias", {64}));
  EXPECT_FALSE(quantize_on_load_selects("transformer_blocks.0.attn.norm_q.weight", {32}));
  for (const char* k :
       {"img_in.weight", "txt_in.weight", "proj_out.weight", "norm_out.linear.weight",
        "time_text_embed.timestep_embedder.linear_1.weight", "modulation.0.weight"})
    EXPECT_FALSE(quantize_on_load_selects(k, {64, 32})) << k;
  EXPECT_EQ(qwen::io::parse_quantize_mode(""), qwen::io::QuantizeMode::None);
  EXPECT_EQ(qwen::io::parse_quantize_mode("none"), qwen::io::QuantizeMode::None);
  EXPECT_EQ(qwen::io::parse_quantize_mode("fp8"), qwen::io::QuantizeMode::Fp8);
  try {
    qwen::io::parse_quantize_mode("int4");
    FAIL() << "no error for int4";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'int4'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("none or fp8"), std::string::npos) << e.what();
  }
  qwen::EngineOptions o;
  o.model_dir = qwen::test::tiny_model_dir();
  o.device = "cpu";
  o.quantize = "fp4";
  o.log = [](const std::string&) {};
  try {
    qwen::Engine::open(o);
    FAIL() << "no error for quantize fp4";
  } catch (const qwen::EngineError& e) {
    EXPECT_NE(std::string(e.what()).find("'fp4'"), std::string::npos) << e.what();
  }
}

// ---- engines ------------------------------------------------------------------------------------

// Writes make_fp8_scaled.py's file for the transformer folder `src` into a fresh temp dir.
class Fp8File {
 public:
  explicit Fp8File(const std::string& src) {
    py_ = qwen::reftest::reference_python(&why_);
    if (py_.empty()) return;
    dir_ = fs::temp_directory_path() /
           ("qwen-quantize-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    fs::create_directories(dir_);
    path_ = (dir_ / "transformer_fp8_scaled.safetensors").string();
    const std::string log = (dir_ / "log.txt").string();
    const std::string cmd = "OMP_NUM_THREADS=1 '" + py_ + "' '" + QWEN_REFERENCE_DIR +
                            "/make_fp8_scaled.py' '" + src + "' '" + path_ + "' >'" + log +
                            "' 2>&1";
    if (std::system(cmd.c_str()) != 0) error_ = cmd + "\n" + qwen::test::read_text(log);
  }
  ~Fp8File() {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  const std::string& why() const { return why_; }
  const std::string& error() const { return error_; }
  const std::string& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  std::string py_, why_, error_, path_;
  fs::path dir_;
};

#define QWEN_FP8_FILE(var, src)                                                           \
  Fp8File var(src);                                                                       \
  if (!var.why().empty()) {                                                               \
    if (::qwen::reftest::reference_required()) GTEST_FAIL() << var.why() << " (CI=true)"; \
    GTEST_SKIP() << var.why();                                                            \
  }                                                                                       \
  ASSERT_TRUE(var.error().empty()) << var.error()

std::unique_ptr<qwen::Engine> open_engine(const std::string& dir, const std::string& quantize,
                                          const std::string& transformer_file = "",
                                          const std::string& memory = "") {
  qwen::EngineOptions o = qwen::test::cpu_engine_options(dir, 2);
  o.transformer_file = transformer_file;
  o.quantize = quantize;
  o.memory = memory;
  return qwen::Engine::open(o);
}

using qwen::test::expect_same_images;
using qwen::test::tiny_t2i_job;

// Every Linear of `a` and `b` by name: the quantised ones hold the same fp8 bytes and scale;
// returns how many are quantised, and checks that exactly the rule's picks are.
int64_t expect_same_quantised_linears(torch::nn::Module& a, torch::nn::Module& b) {
  auto linears = [](torch::nn::Module& m) {
    std::map<std::string, qwen::models::LinearImpl*> out;
    for (const auto& item : m.named_modules())
      if (auto* l = dynamic_cast<qwen::models::LinearImpl*>(item.value().get()))
        out[item.key() + ".weight"] = l;
    return out;
  };
  const auto la = linears(a), lb = linears(b);
  EXPECT_EQ(la.size(), lb.size());
  int64_t n = 0;
  for (const auto& [name, l] : la) {
    SCOPED_TRACE(name);
    const auto* qa = l->quantized();
    const auto* qb = lb.at(name)->quantized();
    const bool picked = qwen::io::quantize_on_load_selects(name, {1, 1});
    EXPECT_EQ(qa != nullptr, picked);
    EXPECT_EQ(qb != nullptr, picked);
    if (!qa || !qb) continue;
    ++n;
    EXPECT_EQ(qa->storage_name(), "F8_E4M3*scale");
    EXPECT_TRUE(torch::equal(qa->storage().view(torch::kUInt8), qb->storage().view(torch::kUInt8)));
    EXPECT_EQ(qa->scale().item<float>(), qb->scale().item<float>());
  }
  return n;
}

// Bytes quantise-on-load saves on the transformer of the model folder `dir` (compute dtype
// float32), by the planner (plan/model_sizes.h): every picked weight from 4 bytes an element to 1,
// plus a 4-byte scale.
int64_t expected_saving(const std::string& dir) {
  qwen::io::ModelSources s;
  s.folder = dir;
  const auto folder = qwen::io::ModelFolder::open(s);
  const auto plain = qwen::plan::model_sizes(folder, 4);
  const auto quant = qwen::plan::model_sizes(folder, 4, qwen::io::QuantizeMode::Fp8);
  EXPECT_TRUE(quant.quantize_fp8);
  int64_t saving = 0;
  for (const auto& t : plain.transformer.tensors)
    if (qwen::io::quantize_on_load_selects(t.name, {t.numel, 1}) && t.linear)
      saving += t.numel * 4 - (t.numel + 4);
  EXPECT_GT(saving, 0);
  EXPECT_EQ(plain.transformer.bytes() - quant.transformer.bytes(), saving);
  return saving;
}

}  // namespace

TEST(QuantizeOnLoad, TinyModelGivesTheImageOfTheFp8FileAndHoldsFp8Bytes) {
  const std::string dir = qwen::test::tiny_model_dir();
  QWEN_FP8_FILE(file, dir + "/transformer");
  auto quantised = open_engine(dir, "fp8");
  auto from_file = open_engine(dir, "", file.path());
  auto plain = open_engine(dir, "none");
  auto& q = dynamic_cast<qwen::pipelines::QwenEngine&>(*quantised);
  auto& f = dynamic_cast<qwen::pipelines::QwenEngine&>(*from_file);
  auto& p = dynamic_cast<qwen::pipelines::QwenEngine&>(*plain);
  EXPECT_EQ(expect_same_quantised_linears(*q.transformer(), *f.transformer()),
            2 * (8 + 4 + 2));  // 2 blocks: 8 attention, 4 MLP, 2 modulation Linears each
  // (c) the resident transformer: fp8 bytes + scales instead of float32 weights.
  const int64_t saving = expected_saving(dir);
  EXPECT_EQ(
      qwen::plan::model_sizes(qwen::io::ModelFolder::open(dir), 4, qwen::io::QuantizeMode::Fp8)
          .transformer.format,
      "F8_E4M3*scale (quantised at load)");
  EXPECT_EQ(qwen::models::resident_bytes(*p.transformer()) -
                qwen::models::resident_bytes(*q.transformer()),
            saving);
  EXPECT_EQ(qwen::models::resident_bytes(*q.transformer()),
            qwen::models::resident_bytes(*f.transformer()));
  EXPECT_EQ(plain->info().bytes - quantised->info().bytes, saving);
  // (b) the same image, bit for bit.
  const auto want = from_file->run(tiny_t2i_job());
  expect_same_images(quantised->run(tiny_t2i_job()), want);
  // A file stored quantised stays as stored under --quantize fp8.
  auto both = open_engine(dir, "fp8", file.path());
  expect_same_images(both->run(tiny_t2i_job()), want);
}

TEST(QuantizeOnLoad, StreamingStreamsFp8BytesAndGivesTheResidentImage) {
  const std::string dir = qwen::test::tiny_model_dir();
  auto resident = open_engine(dir, "fp8", "", "resident");
  const auto want = resident->run(tiny_t2i_job());
  resident.reset();
  auto plain_stream = open_engine(dir, "", "", "stream");
  auto stream = open_engine(dir, "fp8", "", "stream");
  auto& qe = dynamic_cast<qwen::pipelines::QwenEngine&>(*stream);
  auto& pe = dynamic_cast<qwen::pipelines::QwenEngine&>(*plain_stream);
  expect_same_images(stream->run(tiny_t2i_job()), want);
  auto* qp = dynamic_cast<qwen::models::TransformerPlacement*>(qe.transformer()->placement());
  auto* pp = dynamic_cast<qwen::models::TransformerPlacement*>(pe.transformer()->placement());
  ASSERT_NE(qp, nullptr);
  ASSERT_NE(pp, nullptr);
  // The blocks and the modulation sit in host memory as fp8: smaller by the whole saving.
  EXPECT_EQ(pp->host_bytes() - qp->host_bytes(), expected_saving(dir));
  EXPECT_GT(qp->stats().streamed_bytes, 0);
}

TEST(QuantizeOnLoad, Qwen21TinyModelGivesTheImageOfTheFp8File) {
  QWEN_REFERENCE_CASE(ref, "model", "", "gen_qwen21_pipeline.py");
  const std::string dir = ref.model_dir();
  QWEN_FP8_FILE(file, dir + "/transformer");
  auto quantised = open_engine(dir, "fp8");
  auto from_file = open_engine(dir, "", file.path());
  auto plain = open_engine(dir, "none");
  auto& q = dynamic_cast<qwen::pipelines::Qwen21Engine&>(*quantised);
  auto& f = dynamic_cast<qwen::pipelines::Qwen21Engine&>(*from_file);
  auto& p = dynamic_cast<qwen::pipelines::Qwen21Engine&>(*plain);
  EXPECT_GT(expect_same_quantised_linears(*q.transformer(), *f.transformer()), 0);
  const int64_t saving = expected_saving(dir);
  EXPECT_EQ(qwen::models::resident_bytes(*p.transformer()) -
                qwen::models::resident_bytes(*q.transformer()),
            saving);
  EXPECT_EQ(plain->info().bytes - quantised->info().bytes, saving);
  qwen::RunParams job;
  job.prompts = {"a lighthouse at dusk"};
  job.width = 64;
  job.height = 96;
  job.steps = 2;
  job.seed = 11;
  const auto want = from_file->run(job);
  expect_same_images(quantised->run(job), want);
  // Streamed blocks (models/block_stream.h) hold and stream the fp8 bytes: the same image.
  auto stream = open_engine(dir, "fp8", "", "stream");
  expect_same_images(stream->run(job), want);
}
