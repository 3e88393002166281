// Dequantisers (models/dequant.h) and quantised weights (models/quant.h): exact float32 equality
// with the format samples' dequantised weights, with the PyPI `gguf` package on fresh random
// blocks (tests/io/gen_quant_cases.py), and with ComfyUI's fp8 rule.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <string>

#include "common/st_writer.h"
#include "io/tensor_format.h"
#include "models/dequant.h"
#include "models/quant.h"
#include "models/weights.h"

using qwen::io::CheckpointError;
using qwen::io::FileFormat;
using qwen::io::GgmlType;
using qwen::io::GgufFile;
using qwen::io::TensorStore;
using qwen::models::dequantize_fp8;
using qwen::models::dequantize_ggml;
using qwen::models::QuantizedWeight;
using qwen::models::to_tensor_raw;
using namespace qwen::test;

namespace {

const std::string kSamples = QWEN_FORMAT_SAMPLES;
const std::string kPrefix = "model.diffusion_model.";
const char* kFiles[] = {"pub-tiny_bf16.safetensors",
                        "pub-tiny_fp8_e4m3fn.safetensors",
                        "pub-tiny_fp8_e4m3fn_scaled.safetensors",
                        "pub-tiny_fp8mixed.safetensors",
                        "pub-tiny-Q8_0.gguf",
                        "pub-tiny-Q4_0.gguf",
                        "pub-tiny-Q5_1.gguf",
                        "q-pub-Kmix.gguf"};
const char* kTypes[] = {"F32",  "F16",  "BF16", "Q8_0", "Q5_0", "Q5_1",   "Q4_0",  "Q4_1",
                        "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"};

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const CheckpointError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no CheckpointError thrown";
  return {};
}

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << (msg)

// Bit-for-bit equality (NaN payloads and signed zeros included), with the first difference.
::testing::AssertionResult SameBits(const torch::Tensor& got, const torch::Tensor& want) {
  if (got.sizes() != want.sizes() || got.scalar_type() != want.scalar_type())
    return ::testing::AssertionFailure() << "got " << got.sizes() << " " << got.scalar_type()
                                         << ", want " << want.sizes() << " " << want.scalar_type();
  const auto int_type = got.element_size() == 4 ? torch::kInt32 : torch::kInt16;
  const torch::Tensor a = got.cpu().contiguous().view(int_type).reshape({-1});
  const torch::Tensor b = want.cpu().contiguous().view(int_type).reshape({-1});
  if (torch::equal(a, b)) return ::testing::AssertionSuccess();
  const int64_t i = (a != b).nonzero()[0][0].item<int64_t>();
  const int64_t n = (a != b).sum().item<int64_t>();
  return ::testing::AssertionFailure()
         << n << " of " << a.numel() << " values differ; first at flat index " << i << ": got "
         << got.cpu().reshape({-1})[i].item<double>() << ", want "
         << want.cpu().reshape({-1})[i].item<double>();
}

bool is_gguf(const std::string& f) { return f.size() > 5 && f.ends_with(".gguf"); }

FileFormat describe(const std::string& file) {
  const std::string p = kSamples + "/files/" + file;
  return is_gguf(file) ? qwen::io::describe_gguf(GgufFile::open(p))
                       : qwen::io::describe_safetensors(TensorStore::open(p));
}

GgmlType type_named(const std::string& name) {
  for (uint32_t id = 0; id < 64; ++id)
    if (const auto* t = qwen::io::ggml_type_traits(id); t && name == t->name) return t->type;
  throw std::runtime_error("no ggml type " + name);
}

std::vector<torch::Device> devices() {
  std::vector<torch::Device> d{torch::kCPU};
  if (torch::cuda::is_available()) d.emplace_back(torch::kCUDA, 0);
  return d;
}

// ---- the live gguf package (tests/io/gen_quant_cases.py) -------------------------------------

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The interpreter with gguf + numpy + torch, or "" with `why` set.
std::string python_with_gguf(std::string* why) {
  const char* env = std::getenv("QWEN_REFERENCE_PYTHON");
  const std::string py =
      env && *env ? std::string(env) : std::string(QWEN_SOURCE_DIR) + "/.venv/bin/python";
  if (::access(py.c_str(), X_OK) != 0) {
    *why = py + " does not exist (installers/setup.sh creates the venv with the gguf package)";
    return "";
  }
  if (std::system((quote(py) + " -c 'import gguf, numpy, torch' >/dev/null 2>&1").c_str()) != 0) {
    *why = py +
           " cannot import gguf, numpy and torch (pip install -r tests/reference/requirements.txt)";
    return "";
  }
  return py;
}

bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

// Runs the generator into `dir`; returns the output path, or "" with `skip` / a failure recorded.
std::string generate_cases(const TempDir& dir, std::string* skip) {
  std::string why;
  const std::string py = python_with_gguf(&why);
  if (py.empty()) {
    *skip = "gguf package not available: " + why;
    return "";
  }
  int64_t seed = 0;
  if (const char* s = std::getenv("QWEN_QUANT_SEED"); s && *s) {
    seed = std::strtoll(s, nullptr, 10);
  } else {
    seed = std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
               .count() %
           2147483647;
  }
  std::cout << "[quant] seed " << seed << " (repeat with QWEN_QUANT_SEED=" << seed << ")"
            << std::endl;
  const std::string out = dir.str("cases.safetensors"), log = dir.str("gen.log");
  const std::string cmd = "OMP_NUM_THREADS=1 " + quote(py) + " " +
                          quote(std::string(QWEN_SOURCE_DIR) + "/tests/io/gen_quant_cases.py") +
                          " " + quote(out) + " --seed " + std::to_string(seed) + " >" + quote(log) +
                          " 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    ADD_FAILURE() << "gen_quant_cases.py failed (seed " << seed << "): " << cmd << "\n"
                  << read_all(log);
    return "";
  }
  return out;
}

}  // namespace

// Skips locally without the venv; fails under CI=true (a test that cannot run fails in CI).
#define QWEN_QUANT_CASES(var, dir)                                         \
  std::string var##_skip;                                                  \
  const std::string var = generate_cases(dir, &var##_skip);                \
  if (!var##_skip.empty()) {                                               \
    if (in_ci()) FAIL() << var##_skip << " (CI=true: this test must run)"; \
    GTEST_SKIP() << var##_skip;                                            \
  }                                                                        \
  ASSERT_FALSE(var.empty())

TEST(Dequant, EverySampleFileEqualsItsFloat32Dequant) {
  std::set<std::string> storages;
  for (const char* file : kFiles) {
    SCOPED_TRACE(file);
    const FileFormat f = describe(file);
    const TensorStore expected =
        TensorStore::open(kSamples + "/dequant/" + std::string(file) + ".safetensors");
    size_t n = 0;
    for (const auto& [key, t] : f.tensors) {
      const std::string k = key.rfind(kPrefix, 0) == 0 ? key.substr(kPrefix.size()) : key;
      const auto* e = expected.find(k);
      ASSERT_NE(e, nullptr) << key;
      const torch::Tensor got = QuantizedWeight::from_format(t).dequantize(torch::kFloat32);
      EXPECT_TRUE(SameBits(got, to_tensor_raw(*e))) << key << " (" << t.storage() << ")";
      storages.insert(t.storage());
      ++n;
    }
    EXPECT_EQ(n, expected.size());
  }
  // Every format of the samples was exercised.
  for (const char* t : kTypes) EXPECT_TRUE(storages.count(t)) << t;
  for (const char* t : {"F8_E4M3", "F8_E4M3*scale"}) EXPECT_TRUE(storages.count(t)) << t;
}

TEST(Dequant, EqualsTheGgufPackageOnFreshRandomBlocks) {
  TempDir dir;
  QWEN_QUANT_CASES(cases, dir);
  const TensorStore s = TensorStore::open(cases);
  for (const char* name : kTypes) {
    SCOPED_TRACE(name);
    const GgmlType type = type_named(name);
    const torch::Tensor shape_t = to_tensor_raw(*s.find(std::string(name) + ".shape"));
    const std::vector<int64_t> shape(shape_t.data_ptr<int64_t>(),
                                     shape_t.data_ptr<int64_t>() + shape_t.numel());
    for (const char* kind : {".raw", ".q"}) {
      const auto* blocks = s.find(name + std::string(kind) + ".blocks");
      if (!blocks) {
        EXPECT_STREQ(kind, ".q") << "random blocks missing";
        continue;  // gguf-py has no quantize() for this type
      }
      const torch::Tensor want = to_tensor_raw(*s.find(name + std::string(kind) + ".expected"));
      const torch::Tensor raw = to_tensor_raw(*blocks);
      for (const auto& dev : devices()) {
        const torch::Tensor got = dequantize_ggml(raw.to(dev), type, shape);
        EXPECT_EQ(got.device(), dev);
        EXPECT_TRUE(SameBits(got, want)) << kind << " on " << dev;
        // Another dtype is the float32 result rounded once.
        EXPECT_TRUE(SameBits(dequantize_ggml(raw.to(dev), type, shape, torch::kBFloat16),
                             want.to(torch::kBFloat16)))
            << kind << " bf16 on " << dev;
      }
    }
  }
  for (const char* fmt : {"e4m3fn", "e5m2"}) {
    SCOPED_TRACE(fmt);
    const std::string p = std::string("fp8_") + fmt;
    const auto dt = std::string(fmt) == "e5m2" ? torch::kFloat8_e5m2 : torch::kFloat8_e4m3fn;
    const torch::Tensor w = to_tensor_raw(*s.find(p + ".weight")).view(dt);
    const torch::Tensor scale = to_tensor_raw(*s.find(p + ".scale"));
    for (const auto& dev : devices()) {
      EXPECT_TRUE(
          SameBits(dequantize_fp8(w.to(dev), scale), to_tensor_raw(*s.find(p + ".expected"))));
      EXPECT_TRUE(SameBits(dequantize_fp8(w.to(dev)), to_tensor_raw(*s.find(p + ".plain"))));
      EXPECT_TRUE(SameBits(QuantizedWeight::fp8(w, scale).dequantize(torch::kFloat32, dev),
                           to_tensor_raw(*s.find(p + ".expected"))));
    }
  }
}

TEST(Dequant, OnEveryDeviceTheSamplesStayExact) {
  const FileFormat f = describe("q-pub-Kmix.gguf");
  const TensorStore expected = TensorStore::open(kSamples + "/dequant/q-pub-Kmix.gguf.safetensors");
  for (const auto& dev : devices()) {
    SCOPED_TRACE(dev.str());
    for (const auto& [key, t] : f.tensors) {
      const QuantizedWeight q = QuantizedWeight::from_format(t).to(dev);
      EXPECT_EQ(q.device(), dev);
      EXPECT_TRUE(SameBits(q.dequantize(), to_tensor_raw(*expected.find(key)))) << key;
    }
  }
}

TEST(QuantizedWeight, StaysQuantisedAndZeroCopy) {
  const FileFormat g = describe("q-pub-Kmix.gguf");
  const auto& t = *g.find("transformer_blocks.1.img_mlp.net.2.weight");
  ASSERT_EQ(t.ggml, GgmlType::Q4_K);
  const QuantizedWeight q = QuantizedWeight::from_format(t);
  EXPECT_EQ(q.kind(), QuantizedWeight::Kind::Ggml);
  EXPECT_EQ(q.storage().scalar_type(), torch::kUInt8);
  EXPECT_EQ(q.storage_bytes(), 64 * 144);  // 64 rows x one 256-value super-block
  EXPECT_EQ(q.storage().data_ptr(), static_cast<const void*>(t.gguf->data(*t.gguf_info)));
  EXPECT_EQ(q.shape(), (std::vector<int64_t>{64, 256}));
  EXPECT_EQ(q.storage_name(), "Q4_K");
  EXPECT_TRUE(SameBits(q.dequantize(torch::kBFloat16), q.dequantize().to(torch::kBFloat16)));

  const FileFormat s = describe("pub-tiny_fp8_e4m3fn_scaled.safetensors");
  const auto& ft = *s.find("transformer_blocks.0.attn.to_q.weight");
  const QuantizedWeight f = QuantizedWeight::from_format(ft);
  EXPECT_EQ(f.kind(), QuantizedWeight::Kind::Fp8);
  EXPECT_EQ(f.storage().scalar_type(), torch::kFloat8_e4m3fn);
  EXPECT_EQ(f.storage().data_ptr(), static_cast<const void*>(ft.ref.file->data(*ft.ref.info)));
  EXPECT_EQ(f.scale().dim(), 0);
  EXPECT_FLOAT_EQ(f.scale().item<float>(), 0.0009329659515060484f);  // manifest scale_weight
  EXPECT_EQ(f.storage_bytes(), 64 * 64 + 4 + 4);  // fp8 bytes + scale + input scale
  EXPECT_EQ(f.storage_name(), "F8_E4M3*scale");

  const FileFormat b = describe("pub-tiny_bf16.safetensors");
  const QuantizedWeight d = QuantizedWeight::from_format(*b.find("img_in.weight"));
  EXPECT_EQ(d.kind(), QuantizedWeight::Kind::Dense);
  EXPECT_EQ(d.dequantize(torch::kBFloat16).data_ptr(), d.storage().data_ptr());  // no copy
}

TEST(QuantizedWeight, LinearDequantisesPerCall) {
  torch::manual_seed(3);
  const FileFormat g = describe("q-pub-Kmix.gguf");
  const QuantizedWeight w =
      QuantizedWeight::from_format(*g.find("transformer_blocks.2.img_mlp.net.2.weight"));  // Q6_K
  const torch::Tensor b =
      QuantizedWeight::from_format(*g.find("transformer_blocks.2.img_mlp.net.2.bias")).dequantize();
  const torch::Tensor x = torch::randn({3, 5, 256});
  const torch::Tensor want = at::linear(x, w.dequantize(), b);
  EXPECT_TRUE(torch::equal(qwen::models::quantized_linear(x, w, b), want));
  EXPECT_TRUE(torch::equal(qwen::models::quantized_linear(x, w), at::linear(x, w.dequantize())));

  qwen::models::QuantLinear lin(w, b);
  EXPECT_TRUE(torch::equal(lin->forward(x), want));
  const auto buffers = lin->named_buffers();
  ASSERT_NE(buffers.find("weight_storage"), nullptr);
  EXPECT_EQ(buffers["weight_storage"].scalar_type(), torch::kUInt8);
  ASSERT_NE(lin->named_parameters().find("bias"), nullptr);

  // bfloat16 activations: the weight is dequantised in bfloat16 (float32 result rounded once).
  const torch::Tensor xb = x.to(torch::kBFloat16);
  EXPECT_TRUE(torch::equal(lin->forward(xb), at::linear(xb, w.dequantize().to(torch::kBFloat16),
                                                        b.to(torch::kBFloat16))));
}

TEST(QuantizedWeight, RowsOfAnEmbeddingTable) {
  const torch::Tensor ids = torch::tensor({{3, 0, 63}, {7, 7, 1}}, torch::kInt64);
  const FileFormat g = describe("q-pub-Kmix.gguf");
  const FileFormat s = describe("pub-tiny_fp8_e4m3fn_scaled.safetensors");
  for (const auto* t : {g.find("transformer_blocks.0.img_mlp.net.2.weight"),   // Q2_K
                        g.find("transformer_blocks.2.txt_mlp.net.2.weight"),   // IQ4_XS
                        g.find("transformer_blocks.0.attn.to_v.weight"),       // Q8_0
                        g.find("img_in.weight"),                               // BF16 (ggml)
                        s.find("transformer_blocks.1.attn.to_q.weight"),       // fp8 * scale
                        s.find("transformer_blocks.1.attn.norm_q.weight")}) {  // plain BF16 1-D
    ASSERT_NE(t, nullptr);
    SCOPED_TRACE(t->key + " " + t->storage());
    const QuantizedWeight q = QuantizedWeight::from_format(*t);
    if (q.shape().size() != 2) {
      EXPECT_HAS(error_of([&] { q.rows(ids); }), "needs a 2-D weight");
      continue;
    }
    const torch::Tensor want = q.dequantize().index_select(0, ids.reshape({-1})).view({2, 3, -1});
    EXPECT_TRUE(SameBits(q.rows(ids), want));
    EXPECT_TRUE(SameBits(q.rows(ids, torch::kBFloat16), want.to(torch::kBFloat16)));
  }
}

TEST(Dequant, RejectsBadInput) {
  const torch::Tensor blocks = torch::zeros({100}, torch::kUInt8);
  EXPECT_HAS(error_of([&] {
               dequantize_ggml(blocks, GgmlType::Q8_0, {2, 64});
             }),
             "Q8_0 tensor of shape [2, 64] needs 136 bytes of whole blocks, given 100");
  EXPECT_HAS(error_of([&] {
               dequantize_ggml(blocks, GgmlType::Q4_K, {1, 100});
             }),
             "Q4_K tensor of shape [1, 100] needs");
  EXPECT_HAS(error_of([&] {
               dequantize_ggml(torch::zeros({66}, torch::kUInt8), GgmlType::IQ2_XXS, {1, 256});
             }),
             "GGUF type IQ2_XXS cannot be dequantised");
  EXPECT_HAS(
      error_of([&] { dequantize_ggml(torch::zeros({34}, torch::kInt8), GgmlType::Q8_0, {32}); }),
      "must be a uint8 tensor");
  EXPECT_HAS(error_of([&] { dequantize_fp8(torch::zeros({4})); }), "expected a float8 tensor");
  EXPECT_HAS(error_of([&] {
               dequantize_fp8(torch::zeros({4}).to(torch::kFloat8_e4m3fn), torch::ones({2}));
             }),
             "the scale must be one float");
  // Zero-element tensors are fine.
  EXPECT_EQ(dequantize_ggml(torch::zeros({0}, torch::kUInt8), GgmlType::Q4_K, {0, 256}).sizes(),
            (std::vector<int64_t>{0, 256}));
}
