// Every format sample through the one loading path (io::open_component / ModelFolder::weights):
// the per-tensor formats under canonical keys, scale / marker keys gone from the store, the
// configuration from the logical shapes, and the format layer's errors naming the file.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "common/st_writer.h"
#include "io/checkpoint.h"

using nlohmann::json;
using qwen::io::CheckpointError;
using qwen::io::ComponentKind;
using qwen::io::FileKind;
using qwen::io::TensorStore;
using namespace qwen::test;

namespace {

const std::string kSamples = QWEN_FORMAT_SAMPLES;
const std::string kTiny = QWEN_FIXTURES "/models/qwen-image-tiny";

std::string sample(const std::string& f) { return kSamples + "/files/" + f; }

const std::map<std::string, FileKind> kFiles = {
    {"pub-tiny_bf16.safetensors", FileKind::Plain},
    {"pub-tiny_fp8_e4m3fn.safetensors", FileKind::Fp8},
    {"pub-tiny_fp8_e4m3fn_scaled.safetensors", FileKind::Fp8Scaled},
    {"pub-tiny_fp8mixed.safetensors", FileKind::ComfyQuant},
    {"pub-tiny-Q8_0.gguf", FileKind::Gguf},
    {"pub-tiny-Q4_0.gguf", FileKind::Gguf},
    {"pub-tiny-Q5_1.gguf", FileKind::Gguf},
    {"q-pub-Kmix.gguf", FileKind::Gguf},
};

bool is_aux(const std::string& k) {
  for (const char* s :
       {".scale_weight", ".scale_input", ".comfy_quant", ".weight_scale", ".input_scale"})
    if (k.ends_with(s)) return true;
  return k == "scaled_fp8";
}

}  // namespace

TEST(ComponentFormats, EverySampleOpensWithCanonicalKeysAndLogicalShapes) {
  std::ifstream in(kTiny + "/transformer/config.json");
  const json tiny = json::parse(in);
  for (const auto& [file, kind] : kFiles) {
    SCOPED_TRACE(file);
    const auto w = qwen::io::open_component(sample(file));  // kind detected
    EXPECT_EQ(w.kind, ComponentKind::Transformer);
    EXPECT_EQ(w.format.kind, kind);
    EXPECT_NE(w.format.summary().find(qwen::io::file_kind_name(kind)), std::string::npos);
    // The dequantised copy has every weight under its diffusers name, with its logical shape.
    const TensorStore deq = TensorStore::open(kSamples + "/dequant/" + file + ".safetensors");
    std::set<std::string> keys;
    for (const auto& [k, t] : w.format.tensors) keys.insert(k);
    const auto deq_names = deq.names();
    EXPECT_EQ(keys, std::set<std::string>(deq_names.begin(), deq_names.end()));
    for (const auto& [k, t] : w.format.tensors) {
      if (const auto* r = deq.find(k)) {
        EXPECT_EQ(t.shape, r->info->shape) << k;
      }
    }
    for (const auto& [k, ref] : w.store.all()) {
      EXPECT_FALSE(is_aux(k)) << k;
    }
    if (kind == FileKind::Gguf) {
      EXPECT_EQ(w.store.size(), 0u);
    }
    // The configuration the shapes tell is the source model's.
    const bool kmix = file == "q-pub-Kmix.gguf";
    EXPECT_EQ(w.config["num_layers"], kmix ? json(3) : tiny["num_layers"]);
    for (const char* k : {"in_channels", "out_channels", "attention_head_dim",
                          "num_attention_heads", "joint_attention_dim"})
      EXPECT_EQ(w.config[k], tiny[k]) << k;
  }
}

TEST(ComponentFormats, FolderTakesTheFileInAnyFormat) {
  for (const auto& [file, kind] : kFiles) {
    if (file == "q-pub-Kmix.gguf") continue;  // another model (3 layers): refused with a folder
    SCOPED_TRACE(file);
    qwen::io::ModelSources src;
    src.folder = kTiny;
    src.transformer = sample(file);
    const auto m = qwen::io::ModelFolder::open(src);
    const auto w = m.weights("transformer");
    EXPECT_EQ(w.format.kind, kind);
    EXPECT_EQ(m.file_of("transformer"), sample(file));
  }
  qwen::io::ModelSources src;
  src.folder = kTiny;
  src.transformer = sample("q-pub-Kmix.gguf");
  try {
    qwen::io::ModelFolder::open(src).weights("transformer");
    ADD_FAILURE() << "a 3-layer GGUF was accepted for a 2-layer folder";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("q-pub-Kmix.gguf"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("num_layers"), std::string::npos) << e.what();
  }
}

TEST(ComponentFormats, UnsupportedFormatsGiveTheFormatLayersErrorNamingTheFile) {
  const TensorStore store = TensorStore::open(sample("pub-tiny_fp8mixed.safetensors"));
  std::vector<StTensor> tensors;
  for (const auto& [name, ref] : store.all()) {
    const uint8_t* p = ref.file->data(*ref.info);
    StTensor t{name, qwen::io::dtype_name(ref.info->dtype), ref.info->shape,
               std::vector<uint8_t>(p, p + (ref.info->end - ref.info->begin))};
    if (name.ends_with("transformer_blocks.0.attn.to_v.comfy_quant")) {
      const std::string j = R"({"format": "nvfp4"})";
      t.bytes.assign(j.begin(), j.end());
      t.shape = {static_cast<int64_t>(j.size())};
    }
    tensors.push_back(std::move(t));
  }
  TempDir dir;
  const std::string path = dir.str("nvfp4.safetensors");
  write_file(path, st_serialize(tensors, {{"format", "pt"}}));
  try {
    qwen::io::open_component(path, ComponentKind::Transformer);
    ADD_FAILURE() << "nvfp4 accepted";
  } catch (const CheckpointError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("'nvfp4' format"), std::string::npos) << msg;
    EXPECT_NE(msg.find("download the bf16, fp8"), std::string::npos) << msg;
  }
}

TEST(ComponentFormats, WeightFileNamesReadsGgufToo) {
  const auto names = qwen::io::weight_file_names(sample("pub-tiny-Q8_0.gguf"));
  EXPECT_NE(std::find(names.begin(), names.end(), "img_in.weight"), names.end());
}
