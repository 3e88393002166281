// Per-tensor storage descriptions (io/tensor_format.h) of the format samples, the header
// `_quantization_metadata` form, and broken / unsupported files (each error names the file).
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "common/st_writer.h"
#include "gguf_writer.h"
#include "io/tensor_format.h"

using nlohmann::json;
using qwen::io::CheckpointError;
using qwen::io::describe_gguf;
using qwen::io::describe_safetensors;
using qwen::io::DType;
using qwen::io::Encoding;
using qwen::io::FileFormat;
using qwen::io::FileKind;
using qwen::io::GgufFile;
using qwen::io::TensorStore;
using namespace qwen::test;

namespace {

const std::string kSamples = QWEN_FORMAT_SAMPLES;
const std::string kPrefix = "model.diffusion_model.";

std::string sample(const std::string& f) { return kSamples + "/files/" + f; }

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

json manifest() {
  std::ifstream in(kSamples + "/manifest.json");
  return json::parse(in);
}

std::vector<uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

// Every tensor of a sample, passed through `edit` (return false to drop it).
std::vector<StTensor> sample_tensors(const std::string& file,
                                     const std::function<bool(StTensor&)>& edit = nullptr) {
  const TensorStore store = TensorStore::open(sample(file));
  std::vector<StTensor> out;
  for (const auto& [name, ref] : store.all()) {
    const uint8_t* p = ref.file->data(*ref.info);
    StTensor t{name, qwen::io::dtype_name(ref.info->dtype), ref.info->shape,
               std::vector<uint8_t>(p, p + (ref.info->end - ref.info->begin))};
    if (!edit || edit(t)) out.push_back(std::move(t));
  }
  return out;
}

// A safetensors file in a temp folder, described.
struct Written {
  TempDir dir;
  std::string path;
  Written(const std::vector<StTensor>& tensors,
          const std::map<std::string, std::string>& metadata = {{"format", "pt"}}) {
    path = dir.str("m.safetensors");
    write_file(path, st_serialize(tensors, metadata));
  }
  FileFormat describe() const { return describe_safetensors(TensorStore::open(path)); }
};

const std::string kMixed = "pub-tiny_fp8mixed.safetensors";
const std::string kScaled = "pub-tiny_fp8_e4m3fn_scaled.safetensors";

}  // namespace

TEST(TensorFormat, PlainBf16AndPlainFp8) {
  const FileFormat bf16 =
      describe_safetensors(TensorStore::open(sample("pub-tiny_bf16.safetensors")));
  EXPECT_EQ(bf16.kind, FileKind::Plain);
  EXPECT_EQ(bf16.tensors.size(), 77u);
  EXPECT_TRUE(bf16.aux_keys.empty());
  for (const auto& [k, t] : bf16.tensors) {
    EXPECT_EQ(t.encoding, Encoding::Plain) << k;
    EXPECT_EQ(t.storage(), "BF16") << k;
    EXPECT_FALSE(t.quantized());
  }
  EXPECT_EQ(bf16.summary(), "plain: BF16 (77)");

  const FileFormat fp8 =
      describe_safetensors(TensorStore::open(sample("pub-tiny_fp8_e4m3fn.safetensors")));
  EXPECT_EQ(fp8.kind, FileKind::Fp8);
  EXPECT_EQ(fp8.tensors.size(), 77u);
  const auto* w = fp8.find(kPrefix + "transformer_blocks.0.attn.to_q.weight");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->encoding, Encoding::Fp8);
  EXPECT_EQ(w->fp8, DType::F8_E4M3);
  EXPECT_EQ(w->scale.info, nullptr);  // plain: scale 1
  EXPECT_EQ(w->storage(), "F8_E4M3");
  EXPECT_EQ(w->shape, (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(w->stored_bytes(), 64u * 64);
  EXPECT_EQ(fp8.summary(), "fp8: F8_E4M3 (77)");
}

TEST(TensorFormat, LegacyScaledFp8) {
  const json layers = manifest()["files"][kScaled]["layers"];
  const FileFormat f = describe_safetensors(TensorStore::open(sample(kScaled)));
  EXPECT_EQ(f.kind, FileKind::Fp8Scaled);
  EXPECT_TRUE(f.aux_keys.count("scaled_fp8"));
  size_t quantised = 0;
  for (const auto& [k, t] : f.tensors) quantised += t.encoding == Encoding::Fp8;
  EXPECT_EQ(quantised, layers.size());
  for (const auto& [layer, info] : layers.items()) {
    const auto* t = f.find(layer + ".weight");
    ASSERT_NE(t, nullptr) << layer;
    EXPECT_EQ(t->encoding, Encoding::Fp8);
    EXPECT_EQ(t->quant_format, "float8_e4m3fn");
    EXPECT_TRUE(t->full_precision_mm);  // the marker has 2 elements
    ASSERT_NE(t->scale.info, nullptr);
    EXPECT_EQ(t->scale.info->name, layer + ".scale_weight");
    EXPECT_EQ(t->scale.info->shape, info["scale_weight_shape"].get<std::vector<int64_t>>());
    ASSERT_NE(t->input_scale.info, nullptr);
    EXPECT_EQ(t->input_scale.info->name, layer + ".scale_input");
    EXPECT_EQ(t->storage(), "F8_E4M3*scale");
    EXPECT_TRUE(f.aux_keys.count(layer + ".scale_weight"));
    EXPECT_TRUE(f.aux_keys.count(layer + ".scale_input"));
    EXPECT_FALSE(f.tensors.count(layer + ".scale_weight"));
  }
  EXPECT_EQ(f.find("transformer_blocks.0.attn.norm_q.weight")->storage(), "BF16");
  EXPECT_EQ(f.summary(), "fp8-scaled: BF16 (43), F8_E4M3*scale (34)");
}

TEST(TensorFormat, PerLayerComfyQuant) {
  const json layers = manifest()["files"][kMixed]["layers"];
  const FileFormat f = describe_safetensors(TensorStore::open(sample(kMixed)));
  EXPECT_EQ(f.kind, FileKind::ComfyQuant);
  for (const auto& [layer, info] : layers.items()) {
    const auto* t = f.find(kPrefix + layer + ".weight");
    ASSERT_NE(t, nullptr) << layer;
    EXPECT_EQ(t->encoding, Encoding::Fp8);
    EXPECT_EQ(t->quant_format, "float8_e4m3fn");
    const bool fpmm = json::parse(info["comfy_quant"].get<std::string>())
                          .value("full_precision_matrix_mult", false);
    EXPECT_EQ(t->full_precision_mm, fpmm) << layer;
    EXPECT_EQ(t->scale.info->name, kPrefix + layer + ".weight_scale");
    EXPECT_EQ(t->input_scale.info->name, kPrefix + layer + ".input_scale");
    for (const char* aux : {".comfy_quant", ".weight_scale", ".input_scale"})
      EXPECT_TRUE(f.aux_keys.count(kPrefix + layer + aux)) << layer << aux;
  }
  // The layers left out stay BF16 (every tensor of the file is described exactly once).
  EXPECT_EQ(f.find(kPrefix + "transformer_blocks.0.img_mod.1.weight")->storage(), "BF16");
  EXPECT_EQ(f.tensors.size() + f.aux_keys.size(), TensorStore::open(sample(kMixed)).size());
  EXPECT_EQ(f.summary(), "comfy-quant: BF16 (51), F8_E4M3*scale (26)");
}

TEST(TensorFormat, HeaderQuantizationMetadata) {
  // The same file with the per-layer JSON moved into the header (comfy/utils.py
  // convert_old_quants): layer names without the key prefix, one given as a bare format string.
  const json layers = manifest()["files"][kMixed]["layers"];
  json meta = {{"format_version", "1.0"}, {"layers", json::object()}};
  for (const auto& [layer, info] : layers.items())
    meta["layers"][layer] = json::parse(info["comfy_quant"].get<std::string>());
  meta["layers"]["transformer_blocks.0.attn.to_k"] = "float8_e4m3fn";
  Written w(sample_tensors(kMixed, [](StTensor& t) { return !t.name.ends_with(".comfy_quant"); }),
            {{"format", "pt"}, {"_quantization_metadata", meta.dump()}});
  const FileFormat f = w.describe();
  EXPECT_EQ(f.kind, FileKind::ComfyQuant);
  const FileFormat orig = describe_safetensors(TensorStore::open(sample(kMixed)));
  ASSERT_EQ(f.tensors.size(), orig.tensors.size());
  for (const auto& [k, t] : orig.tensors) {
    const auto* n = f.find(k);
    ASSERT_NE(n, nullptr) << k;
    EXPECT_EQ(n->storage(), t.storage()) << k;
    EXPECT_EQ(n->full_precision_mm, t.full_precision_mm) << k;
  }
}

TEST(TensorFormat, Gguf) {
  const json tensors = manifest()["files"]["q-pub-Kmix.gguf"]["tensors"];
  const FileFormat f = describe_gguf(GgufFile::open(sample("q-pub-Kmix.gguf")));
  EXPECT_EQ(f.kind, FileKind::Gguf);
  ASSERT_EQ(f.tensors.size(), tensors.size());
  for (const auto& [name, info] : tensors.items()) {
    const auto* t = f.find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->encoding, Encoding::Ggml);
    EXPECT_EQ(t->storage(), info["type"].get<std::string>());
    const auto ne = info["ggml_ne"].get<std::vector<int64_t>>();
    EXPECT_EQ(t->shape, std::vector<int64_t>(ne.rbegin(), ne.rend()));
    EXPECT_EQ(t->file_path(), sample("q-pub-Kmix.gguf"));
  }
}

// ---- broken and unsupported files ------------------------------------------------------------

TEST(TensorFormatErrors, BadComfyQuantJson) {
  const std::string key = kPrefix + "transformer_blocks.0.attn.to_q.comfy_quant";
  Written w(sample_tensors(kMixed, [&](StTensor& t) {
    if (t.name == key) {
      t.bytes = bytes_of("{\"format\": \"float8_e4m3fn\"");
      t.shape = {static_cast<int64_t>(t.bytes.size())};
    }
    return true;
  }));
  const std::string msg = error_of([&] { w.describe(); });
  EXPECT_HAS(msg, w.path + ": tensor '" + key + "' does not hold valid comfy_quant JSON");

  Written no_format(sample_tensors(kMixed, [&](StTensor& t) {
    if (t.name == key) {
      t.bytes = bytes_of("{\"fmt\": 1}");
      t.shape = {static_cast<int64_t>(t.bytes.size())};
    }
    return true;
  }));
  EXPECT_HAS(error_of([&] { no_format.describe(); }),
             no_format.path + ": tensor '" + key + "': quantisation settings {\"fmt\":1} have no");
}

TEST(TensorFormatErrors, BadHeaderQuantizationMetadata) {
  Written w(sample_tensors(kMixed), {{"_quantization_metadata", "{\"layers\": {"}});
  EXPECT_HAS(error_of([&] { w.describe(); }),
             w.path + ": header metadata '_quantization_metadata' is not valid JSON");
  Written no_layers(sample_tensors(kMixed),
                    {{"_quantization_metadata", "{\"format_version\": 1}"}});
  EXPECT_HAS(error_of([&] { no_layers.describe(); }), "has no \"layers\" object");
}

TEST(TensorFormatErrors, MissingScaleForAnFp8Weight) {
  const std::string layer = kPrefix + "transformer_blocks.1.attn.to_k";
  Written mixed(
      sample_tensors(kMixed, [&](StTensor& t) { return t.name != layer + ".weight_scale"; }));
  std::string msg = error_of([&] { mixed.describe(); });
  EXPECT_HAS(msg, mixed.path + ": fp8 weight '" + layer + ".weight'");
  EXPECT_HAS(msg, "has no scale tensor '" + layer + ".weight_scale'");

  // Legacy: the layer's scale_weight gone, its scale_input still there.
  Written legacy(sample_tensors(kScaled, [](StTensor& t) {
    return t.name != "transformer_blocks.0.attn.to_q.scale_weight";
  }));
  msg = error_of([&] { legacy.describe(); });
  EXPECT_HAS(msg, legacy.path +
                      ": fp8 weight 'transformer_blocks.0.attn.to_q.weight' (float8_e4m3fn, "
                      "tensor 'transformer_blocks.0.attn.to_q.scale_input') has no scale");
}

TEST(TensorFormat, UnscaledFp8InAScaledFileIsAPlainCast) {
  // No settings and no scale at all: scale 1, as ComfyUI (scaled_fp8_ops defaults scale_weight to
  // ones; convert_old_quants gives the layer no comfy_quant entry).
  const std::string layer = "transformer_blocks.0.attn.to_q";
  Written w(sample_tensors(kScaled, [&](StTensor& t) {
    return t.name != layer + ".scale_weight" && t.name != layer + ".scale_input";
  }));
  const FileFormat f = w.describe();
  EXPECT_EQ(f.kind, FileKind::Fp8Scaled);
  const auto* t = f.find(layer + ".weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->encoding, Encoding::Fp8);
  EXPECT_EQ(t->scale.info, nullptr);
  EXPECT_EQ(t->storage(), "F8_E4M3");
  EXPECT_EQ(f.find("transformer_blocks.0.attn.to_k.weight")->storage(), "F8_E4M3*scale");
}

TEST(TensorFormatErrors, OtherFormatsNameTheFormatAndWhatToDownload) {
  const std::string key = kPrefix + "transformer_blocks.0.attn.to_v.comfy_quant";
  for (const std::string fmt :
       {"nvfp4", "mxfp8", "int8_tensorwise", "convrot_w4a4", "int4_tensorwise", "asym_w4a8_int8",
        "awq_w4a16", "int8_convrot", "w4a8"}) {
    SCOPED_TRACE(fmt);
    Written w(sample_tensors(kMixed, [&](StTensor& t) {
      if (t.name == key) {
        t.bytes = bytes_of("{\"format\": \"" + fmt + "\"}");
        t.shape = {static_cast<int64_t>(t.bytes.size())};
      }
      return true;
    }));
    const std::string msg = error_of([&] { w.describe(); });
    EXPECT_HAS(msg, w.path + ": layer '" + kPrefix +
                        "transformer_blocks.0.attn.to_v' is stored in the '" + fmt + "' format");
    EXPECT_HAS(msg, "download the bf16, fp8");
    // Qwen-Image-2.1's int8_convrot / w4a8 repacks name the file to get instead.
    if (fmt == "int8_convrot" || fmt == "w4a8") {
      EXPECT_HAS(msg, "qwen_image_2.1_bf16");
    }
  }
  Written unknown(sample_tensors(kMixed, [&](StTensor& t) {
    if (t.name == key) {
      t.bytes = bytes_of("{\"format\": \"float4_magic\"}");
      t.shape = {static_cast<int64_t>(t.bytes.size())};
    }
    return true;
  }));
  const std::string msg = error_of([&] { unknown.describe(); });
  EXPECT_HAS(msg, "has the unknown quantisation format 'float4_magic'");
  EXPECT_HAS(msg, "download the bf16, fp8");
}

TEST(TensorFormatErrors, InconsistentLayers) {
  const std::string layer = kPrefix + "transformer_blocks.1.attn.to_q";
  Written vec_scale(sample_tensors(kMixed, [&](StTensor& t) {
    if (t.name == layer + ".weight_scale") {
      t.shape = {2};
      t.bytes.resize(8);
    }
    return true;
  }));
  EXPECT_HAS(error_of([&] { vec_scale.describe(); }),
             vec_scale.path + ": scale tensor '" + layer +
                 ".weight_scale' is F32 [2], expected one float");

  // comfy_quant on a BF16 layer.
  const std::string bf16_layer = kPrefix + "transformer_blocks.0.img_mod.1";
  auto tensors = sample_tensors(kMixed);
  const auto conf = bytes_of("{\"format\":\"float8_e4m3fn\"}");
  const int64_t n = static_cast<int64_t>(conf.size());
  tensors.push_back({bf16_layer + ".comfy_quant", "U8", {n}, conf});
  tensors.push_back(st_tensor(bf16_layer + ".weight_scale", "F32", {}));
  Written bf16(tensors);
  EXPECT_HAS(error_of([&] { bf16.describe(); }),
             bf16.path + ": tensor '" + bf16_layer + ".weight' is BF16, but tensor '" + bf16_layer +
                 ".comfy_quant' says it is stored as float8_e4m3fn");

  // comfy_quant for a layer that has no weight.
  auto orphan = sample_tensors(kMixed);
  orphan.push_back({"ghost.comfy_quant", "U8", {n}, conf});
  Written o(orphan);
  EXPECT_HAS(error_of([&] { o.describe(); }),
             o.path +
                 ": tensor 'ghost.comfy_quant' quantises layer 'ghost' as float8_e4m3fn, but the "
                 "file has no tensor 'ghost.weight'");
}

TEST(TensorFormatErrors, UnsupportedGgufType) {
  GgufBuilder b;
  b.kv_string("general.architecture", "qwen_image");
  b.tensor("ok", {32}, 0, pattern_bytes(128));
  b.tensor("iq2", {256, 1}, 16, pattern_bytes(66));  // IQ2_XXS
  TempDir dir;
  write_file(dir.path() / "iq2.gguf", b.build());
  const auto file = GgufFile::open(dir.str("iq2.gguf"));  // the container itself is fine
  const std::string msg = error_of([&] { describe_gguf(file); });
  EXPECT_HAS(msg, dir.str("iq2.gguf") +
                      ": tensor 'iq2' is stored as GGUF type IQ2_XXS, which "
                      "qwen-image does not dequantise");
  EXPECT_HAS(msg, "download a GGUF quantised to one of those");
}

TEST(TensorFormat, GgufTextEncoderNames) {
  using qwen::io::gguf_llama_key_to_transformers;
  EXPECT_EQ(gguf_llama_key_to_transformers("token_embd.weight"), "model.embed_tokens.weight");
  EXPECT_EQ(gguf_llama_key_to_transformers("output_norm.weight"), "model.norm.weight");
  EXPECT_EQ(gguf_llama_key_to_transformers("output.weight"), "lm_head.weight");
  EXPECT_EQ(gguf_llama_key_to_transformers("blk.27.attn_q.bias"),
            "model.layers.27.self_attn.q_proj.bias");
  EXPECT_EQ(gguf_llama_key_to_transformers("blk.0.attn_output.weight"),
            "model.layers.0.self_attn.o_proj.weight");
  EXPECT_EQ(gguf_llama_key_to_transformers("blk.3.attn_q_norm.weight"),
            "model.layers.3.self_attn.q_norm.weight");
  EXPECT_EQ(gguf_llama_key_to_transformers("blk.1.ffn_gate.weight"),
            "model.layers.1.mlp.gate_proj.weight");
  EXPECT_EQ(gguf_llama_key_to_transformers("blk.1.ffn_down.weight"),
            "model.layers.1.mlp.down_proj.weight");
  EXPECT_EQ(gguf_llama_key_to_transformers("blk.1.ffn_up.weight"),
            "model.layers.1.mlp.up_proj.weight");
  EXPECT_EQ(gguf_llama_key_to_transformers("blk.1.attn_norm.weight"),
            "model.layers.1.input_layernorm.weight");
  EXPECT_EQ(gguf_llama_key_to_transformers("blk.1.ffn_norm.weight"),
            "model.layers.1.post_attention_layernorm.weight");
  // Already transformers names, diffusers names and unknown llama.cpp names stay as they are.
  for (const char* k : {"model.layers.0.mlp.up_proj.weight", "img_in.weight", "blk.x.attn_q.weight",
                        "blk.1.unknown.weight", "v.blk.0.attn_q.weight"})
    EXPECT_EQ(gguf_llama_key_to_transformers(k), k);
}
