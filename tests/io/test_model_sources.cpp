// io::ModelFolder::open(ModelSources): component files replacing a folder's, the three files
// alone (model type detected or asked for), the shipped assets (daemon/model_sources.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <string>

#include "common/st_writer.h"
#include "io/checkpoint.h"

namespace fs = std::filesystem;
using nlohmann::json;
using qwen::io::CheckpointError;
using qwen::io::ComponentKind;
using qwen::io::ModelFolder;
using qwen::io::ModelSources;
using qwen::io::TensorStore;
using namespace qwen::test;

namespace {

const std::string kTiny = std::string(QWEN_FIXTURES) + "/models/qwen-image-tiny";
const std::string kTinyTransformer = kTiny + "/transformer/diffusion_pytorch_model.safetensors";
const std::string kTinyTextEncoder = kTiny + "/text_encoder/model.safetensors";
const std::string kTinyVae = kTiny + "/vae/diffusion_pytorch_model.safetensors";

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "(no error)";
}
#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << (msg)

// A copy of a safetensors file with its tensors renamed / filtered / extended.
void rewrite(const std::string& src, const fs::path& dst,
             const std::function<std::string(const std::string&)>& rename,
             const std::vector<StTensor>& extra = {}) {
  const TensorStore s = TensorStore::open(src);
  std::vector<StTensor> out;
  for (const auto& [name, ref] : s.all()) {
    const std::string n = rename(name);
    if (n.empty()) continue;
    StTensor t{n, qwen::io::dtype_name(ref.info->dtype), ref.info->shape, {}};
    const uint8_t* p = ref.file->data(*ref.info);
    t.bytes.assign(p, p + (ref.info->end - ref.info->begin));
    out.push_back(std::move(t));
  }
  for (const auto& t : extra) out.push_back(t);
  write_file(dst, st_serialize(out));
}

std::vector<std::string> names_of(const ModelFolder& m) {
  std::vector<std::string> n;
  for (const auto& c : m.components()) n.push_back(c.name);
  std::sort(n.begin(), n.end());
  return n;
}

}  // namespace

TEST(ModelSources, FileReplacesTheFoldersTransformerAndKeepsItsConfig) {
  TempDir tmp;
  // A ComfyUI-style copy: every key prefixed with model.diffusion_model.
  const fs::path file = tmp.path() / "qwen_image_tiny_bf16.safetensors";
  rewrite(kTinyTransformer, file, [](const std::string& n) { return "model.diffusion_model." + n; });
  ModelSources src;
  src.folder = kTiny;
  src.transformer = file.string();
  const ModelFolder m = ModelFolder::open(src);
  EXPECT_EQ(m.pipeline_class(), "QwenImagePipeline");
  EXPECT_EQ(m.model_type(), "qwen-image");
  EXPECT_EQ(m.file_of("transformer"), file.string());
  EXPECT_EQ(m.file_of("vae"), "");
  const auto w = m.weights("transformer");
  EXPECT_EQ(w.source, file.string());
  EXPECT_EQ(w.layout, "comfyui");
  EXPECT_NE(w.store.find("transformer_blocks.0.attn.to_q.weight"), nullptr);
  // Shapes alone would give other rope axes for this 2 x 32 model: the folder's config wins.
  EXPECT_EQ(w.config.at("axes_dims_rope"), json({8, 12, 12}));
  EXPECT_EQ(w.config.at("num_attention_heads"), 2);
  EXPECT_FALSE(w.zero_cond_t);
  // The other components still come from the folder.
  EXPECT_EQ(m.weights("vae").source, kTiny + "/vae");
}

TEST(ModelSources, TheEdit2511MarkerInAFileSetsZeroCondT) {
  TempDir tmp;
  const fs::path file = tmp.path() / "edit_2511.safetensors";
  rewrite(kTinyTransformer, file, [](const std::string& n) { return n; },
          {st_tensor("__index_timestep_zero__", "F32", {0})});
  ModelSources src;
  src.folder = kTiny;
  src.transformer = file.string();
  const auto w = ModelFolder::open(src).weights("transformer");
  EXPECT_TRUE(w.zero_cond_t);
  EXPECT_EQ(w.config.at("zero_cond_t"), true);
}

TEST(ModelSources, AFileOfAnotherModelIsRefusedWithBothNames) {
  TempDir tmp;
  const fs::path file = tmp.path() / "one_layer.safetensors";
  rewrite(kTinyTransformer, file, [](const std::string& n) {
    return n.starts_with("transformer_blocks.1.") ? std::string() : n;
  });
  ModelSources src;
  src.folder = kTiny;
  src.transformer = file.string();
  const ModelFolder m = ModelFolder::open(src);
  const std::string e = error_of([&] { m.weights("transformer"); });
  EXPECT_HAS(e, file.string());
  EXPECT_HAS(e, "num_layers 1");
  EXPECT_HAS(e, "2 in " + kTiny + "/transformer/config.json");
}

TEST(ModelSources, ThreeFilesAloneMakeATextToImageModelWhenTheEncoderHasNoVision) {
  TempDir tmp;
  const fs::path te = tmp.path() / "qwen_2.5_vl_no_vision.safetensors";
  rewrite(kTinyTextEncoder, te, [](const std::string& n) {
    return n.starts_with("model.visual.") ? std::string() : n;
  });
  ModelSources src;
  src.transformer = kTinyTransformer;
  src.text_encoder = te.string();
  src.vae = kTinyVae;
  const ModelFolder m = ModelFolder::open(src);
  EXPECT_EQ(m.model_type(), "qwen-image");
  EXPECT_EQ(m.pipeline_class(), "QwenImagePipeline");
  EXPECT_EQ(names_of(m), (std::vector<std::string>{"scheduler", "text_encoder", "tokenizer",
                                                   "transformer", "vae"}));
  // Tokenizer and scheduler come from the shipped assets: the released configuration.
  EXPECT_TRUE(fs::exists(m.component("tokenizer").path + "/vocab.json"));
  EXPECT_EQ(m.component("scheduler").config.at("shift_terminal"), 0.02);
  EXPECT_EQ(m.component("scheduler").config.at("max_image_seq_len"), 8192);
  EXPECT_EQ(m.weights("vae").kind, ComponentKind::Vae);
  EXPECT_EQ(m.weights("text_encoder").source, te.string());
}

TEST(ModelSources, AVisionEncoderNeedsTheModelTypeAndTheTypeBringsAProcessor) {
  ModelSources src;
  src.transformer = kTinyTransformer;
  src.text_encoder = kTinyTextEncoder;  // has model.visual.*: base or edit cannot be told
  src.vae = kTinyVae;
  const std::string e = error_of([&] { ModelFolder::open(src); });
  EXPECT_HAS(e, kTinyTransformer);
  EXPECT_HAS(e, "--model-type");
  EXPECT_HAS(e, "qwen-image-edit-2509");

  src.model_type = "qwen-image-edit-2509";
  const ModelFolder m = ModelFolder::open(src);
  EXPECT_EQ(m.pipeline_class(), "QwenImageEditPlusPipeline");
  ASSERT_TRUE(m.has("processor"));
  EXPECT_EQ(m.component("processor").config.at("patch_size"), 14);
  EXPECT_EQ(m.component("processor").config.at("max_pixels"), 12845056);

  src.model_type = "qwen-image-2512";
  EXPECT_EQ(ModelFolder::open(src).pipeline_class(), "QwenImagePipeline");
}

TEST(ModelSources, ThreeFilesWithThe2511MarkerAreEdit2511) {
  TempDir tmp;
  const fs::path file = tmp.path() / "edit_2511.safetensors";
  rewrite(kTinyTransformer, file, [](const std::string& n) { return "model.diffusion_model." + n; },
          {st_tensor("model.diffusion_model.__index_timestep_zero__", "F32", {0})});
  ModelSources src;
  src.transformer = file.string();
  src.text_encoder = kTinyTextEncoder;
  src.vae = kTinyVae;
  const ModelFolder m = ModelFolder::open(src);
  EXPECT_EQ(m.model_type(), "qwen-image-edit-2511");
  EXPECT_EQ(m.pipeline_class(), "QwenImageEditPlusPipeline");
  EXPECT_TRUE(m.has("processor"));
  EXPECT_TRUE(m.weights("transformer").zero_cond_t);
}

TEST(ModelSources, BadSourcesSayWhatIsWrong) {
  ModelSources src;
  src.transformer = kTinyTransformer;
  src.vae = kTinyVae;
  std::string e = error_of([&] { ModelFolder::open(src); });
  EXPECT_HAS(e, "missing: --text-encoder");

  src.text_encoder = "/nonexistent/te.safetensors";
  e = error_of([&] { ModelFolder::open(src); });
  EXPECT_HAS(e, "/nonexistent/te.safetensors");
  EXPECT_HAS(e, "does not exist");

  src.text_encoder = kTinyTextEncoder;
  src.model_type = "qwen-image-3000";
  e = error_of([&] { ModelFolder::open(src); });
  EXPECT_HAS(e, "qwen-image-3000");
  EXPECT_HAS(e, "qwen-image-edit-2511");

  // A VAE file given as the transformer: the kind check names the file.
  ModelSources wrong;
  wrong.folder = kTiny;
  wrong.transformer = kTinyVae;
  const ModelFolder m = ModelFolder::open(wrong);
  e = error_of([&] { m.weights("transformer"); });
  EXPECT_HAS(e, kTinyVae);
  EXPECT_HAS(e, "vae");
}

TEST(ModelSources, AssetsFolderCanBeOverriddenAndIsChecked) {
  TempDir tmp;
  ::setenv("QWEN_IMAGE_ASSETS", tmp.str().c_str(), 1);
  const std::string e = error_of([] { qwen::io::assets_dir(); });
  ::unsetenv("QWEN_IMAGE_ASSETS");
  EXPECT_HAS(e, tmp.str());
  EXPECT_HAS(e, "QWEN_IMAGE_ASSETS");
  EXPECT_TRUE(fs::exists(qwen::io::assets_dir() + "/tokenizer/merges.txt"));
}
