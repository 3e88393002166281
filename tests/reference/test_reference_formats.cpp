// Quantised single files (issue #12) vs the live reference on a fresh random tiny model every run:
// gen_random.py's `formats` part draws a model whose matrices fit the GGUF blocks (transformer
// 256 wide, text encoder 32 / 64 wide), writes its transformer as city96 / ComfyUI-GGUF files
// (Q8_0; Q5_0 / Q4_0 with Q5_1 / Q4_1 down-projections; Q4_K_M: Q4_K, Q5_K in block 0's attention,
// Q6_K down-projections; Q2_K with Q3_K down-projections; IQ4_XS with IQ4_NL down-projections; gguf-py quantises the legacy types, the
// K-quant and IQ4 blocks are packed by quant_formats.py), as plain fp8 (e4m3fn, e5m2) and bf16 /
// fp16 ComfyUI single files, and as ComfyUI fp8 scaled files (per-layer comfy_quant / header
// _quantization_metadata "fp8mixed"; legacy scaled_fp8 + scale_weight), its text encoder as a
// llama.cpp-named GGUF (Q8_0) and a Comfy fp8 scaled file (transformers-legacy names), and runs
// diffusers' QwenImagePipeline with that component's weights replaced by the file's dequantisation
// by the reference code (gguf.quants.dequantize of the file read back; ComfyUI's float(w) * scale).
// The engine, given the model folder and the file (--transformer / --text-encoder FILE), must
// give that image within 1 level (kPngMaxLevels), and must read the file in its format with the
// storage types gen_random.py wrote (so the quantised path, not a float copy, is compared).
#include <gtest/gtest.h>

#include <iostream>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "pipeline_case.h"
#include "reference_case.h"

namespace {

const char* kind_name(const std::string& format) {
  if (format.starts_with("gguf_") || format.starts_with("te_gguf_")) return "gguf";
  if (format == "fp8_comfy_quant") return "comfy-quant";
  if (format == "fp8_e4m3fn" || format == "fp8_e5m2") return "fp8";
  if (format.starts_with("comfy_")) return "plain";
  return "fp8-scaled";
}

// The ggml types each GGUF format must hold (gen_random.py FORMAT_TYPES): the K-quant file mixes
// Q4_K, Q5_K (block 0's attention) and Q6_K (MLP down-projections), the Q4_0 file Q4_1
// down-projections.
std::vector<std::string> required_types(const std::string& format) {
  if (format == "gguf_Q8_0" || format == "te_gguf_Q8_0") return {"Q8_0"};
  if (format == "gguf_Q4_0") return {"Q4_0", "Q4_1"};
  if (format == "gguf_Q5_0") return {"Q5_0", "Q5_1"};
  if (format == "gguf_Q4_K_M") return {"Q4_K", "Q5_K", "Q6_K"};
  if (format == "gguf_IQ4_XS") return {"IQ4_XS", "IQ4_NL"};
  if (format == "gguf_Q2_K") return {"Q2_K", "Q3_K"};
  if (format == "fp8_e4m3fn") return {"F8_E4M3"};
  if (format == "fp8_e5m2") return {"F8_E5M2"};
  if (format == "comfy_bf16") return {"BF16"};
  if (format == "comfy_fp16") return {"F16"};
  if (format.starts_with("fp8_") || format.starts_with("te_fp8_")) return {"F8_E4M3*scale"};
  ADD_FAILURE() << "unknown format " << format;
  return {};
}

// Every file of the case's formats part through the engine.
void expect_formats_match(const qwen::reftest::ReferenceCase& ref) {
  const auto& files = ref.json()["parts"]["formats"]["files"];
  ASSERT_FALSE(files.empty());
  for (const auto& f : files) {
    const std::string name = f["name"], component = f["component"];
    const std::string file = ref.dir() + "/" + f["file"].get<std::string>();
    SCOPED_TRACE(name + ": " + file);
    // The file differs from the folder's weights (else the comparison proves nothing).
    EXPECT_GT(f["max_weight_change"].get<double>(), 0.0);
    // Read in its format, with the storage types written.
    const auto kind = component == "transformer" ? qwen::io::ComponentKind::Transformer
                                                 : qwen::io::ComponentKind::TextEncoder;
    const auto weights = qwen::io::open_component(file, kind);
    const std::string summary = weights.format.summary();
    EXPECT_TRUE(summary.starts_with(std::string(kind_name(name)) + ":")) << summary;
    for (const auto& [storage, n] : f["storage"].items())
      EXPECT_NE(summary.find(storage + " (" + std::to_string(n.get<int>()) + ")"),
                std::string::npos)
          << storage << " x " << n << " not in " << summary;
    for (const auto& t : required_types(name))
      EXPECT_NE(summary.find(t + " ("), std::string::npos) << t << " not in " << summary;
    qwen::EngineOptions opt;
    opt.model_dir = ref.model_dir();
    (component == "transformer" ? opt.transformer_file : opt.text_encoder_file) = file;
    const int d = qwen::reftest::expect_engine_matches(ref, "formats", qwen::PipelineKind::Generate,
                                                       opt, "formats_" + name);
    std::cout << "[reference] " << name << " (" << summary << ", " << f["bytes"]
              << " bytes): engine vs reference " << d << " levels; the quantisation moved the "
              << "reference image by " << f["levels_vs_unquantised"] << " levels" << std::endl;
  }
}

TEST(ReferenceDifferential, GgufTransformerMatchesDiffusers) {
  QWEN_REFERENCE_CASE(ref, "formats",
                      "--formats gguf_Q8_0,gguf_Q5_0,gguf_Q4_0,gguf_Q4_K_M,gguf_Q2_K,gguf_IQ4_XS");
  expect_formats_match(ref);
}

TEST(ReferenceDifferential, Fp8ScaledTransformerMatchesDiffusers) {
  QWEN_REFERENCE_CASE(ref, "formats", "--formats fp8_comfy_quant,fp8_legacy");
  expect_formats_match(ref);
}

// Plain fp8 (e4m3fn, e5m2: no scales) and ComfyUI bf16 / fp16 single files, prefixed or not.
TEST(ReferenceDifferential, PlainSingleFileTransformerMatchesDiffusers) {
  QWEN_REFERENCE_CASE(ref, "formats", "--formats fp8_e4m3fn,fp8_e5m2,comfy_bf16,comfy_fp16");
  expect_formats_match(ref);
}

TEST(ReferenceDifferential, QuantisedTextEncoderMatchesDiffusers) {
  QWEN_REFERENCE_CASE(ref, "formats", "--formats te_gguf_Q8_0,te_fp8_legacy");
  expect_formats_match(ref);
}

}  // namespace
