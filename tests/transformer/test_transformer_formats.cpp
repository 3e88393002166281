// Quantised checkpoints stay quantised in memory (issue #12): the tiny transformer loaded from each
// format sample through the one loading path (ModelFolder::weights -> load_module) holds its Linear
// weights as QuantizedWeight storage (fp8 bytes, GGUF blocks) and no dequantised copy, and each
// Linear computes exactly what the sample's dequantised float32 weights compute.
#include <gtest/gtest.h>

#include <string>

#include "common/fixtures.h"
#include "io/checkpoint.h"
#include "models/linear.h"
#include "models/quant.h"
#include "models/transformer.h"
#include "models/weights.h"

using qwen::models::LinearImpl;

namespace {

const std::string kSamples = QWEN_FORMAT_SAMPLES;

struct Loaded {
  qwen::io::ComponentWeights weights;
  qwen::models::QwenImageTransformer2DModel model{nullptr};
};

Loaded load(const std::string& file, torch::Dtype dtype = torch::kFloat32) {
  qwen::io::ModelSources src;
  src.folder = qwen::test::tiny_model_dir();
  src.transformer = kSamples + "/files/" + file;
  Loaded l{qwen::io::ModelFolder::open(src).weights("transformer"), nullptr};
  l.model = qwen::models::QwenImageTransformer2DModel(
      qwen::models::TransformerConfig::from_json_text(l.weights.config.dump(), file));
  qwen::models::load_module(*l.model, l.weights, "transformer", dtype, torch::kCPU);
  return l;
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

}  // namespace

TEST(TransformerFormats, QuantisedWeightsStayQuantisedInMemory) {
  int64_t bf16_resident = 0;
  for (const std::string file :
       {"pub-tiny_bf16.safetensors", "pub-tiny_fp8_e4m3fn.safetensors",
        "pub-tiny_fp8_e4m3fn_scaled.safetensors", "pub-tiny_fp8mixed.safetensors",
        "pub-tiny-Q8_0.gguf", "pub-tiny-Q4_0.gguf", "pub-tiny-Q5_1.gguf"}) {
    SCOPED_TRACE(file);
    // bf16 compute dtype: a bf16 file is then held as stored, the fair comparison.
    Loaded l = load(file, torch::kBFloat16);
    // Expected: every quantised 2-D weight as stored (+ its float32 scales), everything else
    // (norms, biases, plain layers; 1-D quantised tensors dequantised at load) in bf16.
    int64_t want_quant = 0, want_plain = 0, n_quant = 0, dequantised = 0;
    for (const auto& [k, t] : l.weights.format.tensors) {
      dequantised += numel(t.shape) * 2;
      if (t.quantized() && t.shape.size() == 2) {
        want_quant += static_cast<int64_t>(t.stored_bytes()) + (t.scale.info ? 4 : 0) +
                      (t.input_scale.info ? 4 : 0);
        ++n_quant;
      } else {
        want_plain += numel(t.shape) * 2;
      }
    }
    int64_t n_linear_quant = 0;
    for (const auto& m : l.model->modules())
      if (const auto* lin = dynamic_cast<const LinearImpl*>(m.get()); lin && lin->quantized()) {
        ++n_linear_quant;
        EXPECT_EQ(lin->weight.numel(), 0) << "a dequantised copy is kept";
      }
    EXPECT_EQ(n_linear_quant, n_quant);
    EXPECT_EQ(qwen::models::quantized_weight_bytes(*l.model), want_quant);
    const int64_t resident = qwen::models::resident_bytes(*l.model);
    EXPECT_EQ(resident, want_quant + want_plain);
    std::printf("%-40s resident %8lld bytes (quantised weights %8lld), dequantised bf16 %8lld\n",
                file.c_str(), static_cast<long long>(resident), static_cast<long long>(want_quant),
                static_cast<long long>(dequantised));
    if (file == "pub-tiny_bf16.safetensors") {
      bf16_resident = resident;
      EXPECT_EQ(n_quant, 0);
    } else {
      EXPECT_GT(n_quant, 0);
      EXPECT_LT(resident, dequantised);
    }
    if (file == "pub-tiny_fp8_e4m3fn.safetensors") {
      // Every floating tensor is fp8 there: about half of bf16 (1-D ones are dequantised).
      EXPECT_LT(resident, bf16_resident * 6 / 10);
    }
    if (file == "pub-tiny-Q4_0.gguf") {
      // Its Q4_0 matrices (the others are BF16 there) are held at 18 bytes per 32 weights.
      int64_t q4 = 0;
      for (const auto& [k, t] : l.weights.format.tensors)
        if (t.encoding == qwen::io::Encoding::Ggml && t.ggml == qwen::io::GgmlType::Q4_0) {
          EXPECT_EQ(static_cast<int64_t>(t.stored_bytes()) * 32, numel(t.shape) * 18) << k;
          ++q4;
        }
      EXPECT_GT(q4, 0);
    }
  }
}

TEST(TransformerFormats, QuantisedLinearsComputeWhatTheDequantisedWeightsCompute) {
  for (const std::string file : {"pub-tiny_fp8_e4m3fn_scaled.safetensors",
                                 "pub-tiny_fp8mixed.safetensors", "pub-tiny-Q4_0.gguf"}) {
    SCOPED_TRACE(file);
    Loaded l = load(file);
    const auto deq = qwen::io::TensorStore::open(kSamples + "/dequant/" + file + ".safetensors");
    torch::manual_seed(0);
    int checked = 0;
    for (const auto& item : l.model->named_modules()) {
      auto* lin = dynamic_cast<LinearImpl*>(item.value().get());
      if (!lin || !lin->quantized()) continue;
      const auto w = qwen::models::to_tensor(*deq.find(item.key() + ".weight"), torch::kFloat32);
      const auto* b = deq.find(item.key() + ".bias");
      const auto x = torch::randn({3, w.size(1)});
      const auto want =
          at::linear(x, w, b ? qwen::models::to_tensor(*b, torch::kFloat32) : torch::Tensor());
      EXPECT_TRUE(torch::equal(lin->forward(x), want)) << item.key();
      ++checked;
    }
    EXPECT_GT(checked, 0);
  }
}

TEST(TransformerFormats, ModuleToDtypeNeverCastsQuantisedStorage) {
  Loaded l = load("pub-tiny-Q8_0.gguf");
  l.model->to(torch::kBFloat16);
  int n = 0;
  for (const auto& m : l.model->modules())
    if (const auto* lin = dynamic_cast<const LinearImpl*>(m.get()); lin && lin->quantized()) {
      EXPECT_EQ(lin->quantized()->storage().scalar_type(), torch::kUInt8);
      n += lin->quantized()->ggml_type() == qwen::io::GgmlType::Q8_0;
    }
  EXPECT_GT(n, 0);
  Loaded f = load("pub-tiny_fp8_e4m3fn.safetensors");
  f.model->to(torch::kBFloat16);
  for (const auto& m : f.model->modules())
    if (const auto* lin = dynamic_cast<const LinearImpl*>(m.get()); lin && lin->quantized()) {
      EXPECT_EQ(lin->quantized()->storage().scalar_type(), torch::kFloat8_e4m3fn);
    }
}
