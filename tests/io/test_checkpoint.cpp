// Model folders, single-file checkpoints, key normalisation and shape-derived configs (torch-free).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/real_checkpoints.h"
#include "common/st_writer.h"
#include "io/checkpoint.h"

namespace fs = std::filesystem;
using nlohmann::json;
using qwen::io::CheckpointError;
using qwen::io::ComponentKind;
using qwen::io::ModelFolder;
using qwen::io::open_component;
using qwen::io::TensorStore;
using namespace qwen::test;

namespace {

const std::string kTiny = std::string(QWEN_FIXTURES) + "/models/qwen-image-tiny";
const std::string kTinyEdit = std::string(QWEN_FIXTURES) + "/models/qwen-image-edit-2509-tiny";

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

// Every tensor of `store`, renamed through `rename`, with its bytes.
template <class F>
std::vector<StTensor> renamed_tensors(const TensorStore& store, F&& rename) {
  std::vector<StTensor> out;
  for (const auto& [name, ref] : store.all()) {
    const uint8_t* p = ref.file->data(*ref.info);
    out.push_back(StTensor{rename(name), qwen::io::dtype_name(ref.info->dtype), ref.info->shape,
                           std::vector<uint8_t>(p, p + (ref.info->end - ref.info->begin))});
  }
  return out;
}

// The two stores hold the same names with byte-identical data.
void expect_same_tensors(const TensorStore& a, const TensorStore& b) {
  ASSERT_EQ(a.names(), b.names());
  for (const auto& [name, ra] : a.all()) {
    const auto* rb = b.find(name);
    ASSERT_NE(rb, nullptr) << name;
    ASSERT_EQ(ra.info->shape, rb->info->shape) << name;
    const size_t n = ra.info->end - ra.info->begin;
    ASSERT_EQ(n, rb->info->end - rb->info->begin) << name;
    EXPECT_EQ(std::memcmp(ra.file->data(*ra.info), rb->file->data(*rb->info), n), 0) << name;
  }
}

// Diffusers VAE name -> original Wan name (the inverse of spec §4.8, written independently).
std::string to_wan(const std::string& k) {
  auto sub = [](std::string s, const std::string& from, const std::string& to) {
    const size_t i = s.find(from);
    return i == std::string::npos ? s : s.substr(0, i) + to + s.substr(i + from.size());
  };
  std::string s = k;
  if (s.rfind("quant_conv.", 0) == 0) return "conv1." + s.substr(11);
  if (s.rfind("post_quant_conv.", 0) == 0) return "conv2." + s.substr(16);
  if (s.find("down_blocks.") != std::string::npos || s.find("resnets.") != std::string::npos) {
    s = sub(s, ".norm1.", ".residual.0.");
    s = sub(s, ".conv1.", ".residual.2.");
    s = sub(s, ".norm2.", ".residual.3.");
    s = sub(s, ".conv2.", ".residual.6.");
    s = sub(s, ".conv_shortcut.", ".shortcut.");
  }
  s = sub(s, ".conv_in.", ".conv1.");
  s = sub(s, ".norm_out.", ".head.0.");
  s = sub(s, ".conv_out.", ".head.2.");
  s = sub(s, "mid_block.resnets.0.", "middle.0.");
  s = sub(s, "mid_block.attentions.0.", "middle.1.");
  s = sub(s, "mid_block.resnets.1.", "middle.2.");
  s = sub(s, "down_blocks.", "downsamples.");
  for (int b = 0; b < 4; ++b) {
    for (int r = 0; r < 3; ++r)
      s = sub(s, "up_blocks." + std::to_string(b) + ".resnets." + std::to_string(r) + ".",
              "upsamples." + std::to_string(4 * b + r) + ".");
    s = sub(s, "up_blocks." + std::to_string(b) + ".upsamplers.0.",
            "upsamples." + std::to_string(4 * b + 3) + ".");
  }
  return s;
}

// A copy of a model folder made of symlinks, so single files can be replaced.
void link_copy(const fs::path& src, const fs::path& dst) {
  for (const auto& e : fs::recursive_directory_iterator(src)) {
    const fs::path rel = fs::relative(e.path(), src);
    if (e.is_directory())
      fs::create_directories(dst / rel);
    else
      fs::create_symlink(e.path(), dst / rel);
  }
}

}  // namespace

TEST(ModelFolder, OpensTinyT2IModel) {
  auto m = ModelFolder::open(kTiny);
  EXPECT_EQ(m.pipeline_class(), "QwenImagePipeline");
  std::vector<std::string> names;
  for (const auto& c : m.components()) names.push_back(c.name);
  EXPECT_EQ(names, (std::vector<std::string>{"scheduler", "text_encoder", "tokenizer",
                                             "transformer", "vae"}));
  EXPECT_EQ(m.component("transformer").class_name, "QwenImageTransformer2DModel");
  EXPECT_EQ(m.component("transformer").library, "diffusers");
  EXPECT_EQ(m.component("text_encoder").class_name, "Qwen2_5_VLForConditionalGeneration");
  EXPECT_TRUE(m.component("vae").has_weights);
  EXPECT_FALSE(m.component("scheduler").has_weights);
  EXPECT_EQ(m.component("transformer").config.at("num_layers"), 2);
  EXPECT_EQ(m.component("scheduler").config.at("shift_terminal"), 0.02);
  EXPECT_FALSE(m.has("processor"));
  EXPECT_HAS(error_of([&] { m.component("processor"); }), "no 'processor' component");

  auto tr = m.weights("transformer");
  EXPECT_EQ(tr.kind, ComponentKind::Transformer);
  EXPECT_EQ(tr.layout, "diffusers");
  EXPECT_FALSE(tr.zero_cond_t);
  EXPECT_NE(tr.store.find("transformer_blocks.1.attn.to_q.weight"), nullptr);
  EXPECT_EQ(tr.config.at("axes_dims_rope"), json({8, 12, 12}));  // config.json, not derived
  auto te = m.weights("text_encoder");
  EXPECT_EQ(te.layout, "transformers");  // already canonical
  EXPECT_NE(te.store.find("model.visual.merger.mlp.2.weight"), nullptr);
  auto vae = m.weights("vae");
  EXPECT_EQ(vae.layout, "diffusers");
  EXPECT_EQ(vae.store.size(), 194u);
  EXPECT_HAS(error_of([&] { m.weights("scheduler"); }), "has no weights");
}

TEST(ModelFolder, OpensTinyEditModel) {
  auto m = ModelFolder::open(kTinyEdit);
  EXPECT_EQ(m.pipeline_class(), "QwenImageEditPlusPipeline");
  ASSERT_TRUE(m.has("processor"));
  EXPECT_EQ(m.component("processor").class_name, "Qwen2VLProcessor");
  EXPECT_TRUE(m.component("processor").config.contains("patch_size"));
}

TEST(ModelFolder, BrokenFolders) {
  auto broken = [](auto&& edit) {
    TempDir tmp;
    link_copy(kTiny, tmp.path());
    edit(tmp.path());
    return error_of([&] { ModelFolder::open(tmp.str()); });
  };
  EXPECT_HAS(error_of([] { ModelFolder::open("/nonexistent/model"); }), "does not exist");
  EXPECT_HAS(error_of([] { ModelFolder::open(kTiny + "/model_index.json"); }), "not a folder");
  EXPECT_HAS(error_of([] { ModelFolder::open(kTiny + "/vae"); }), "no model_index.json");
  auto m = broken([](const fs::path& p) { fs::remove_all(p / "vae"); });
  EXPECT_HAS(m, "component folder 'vae'");
  EXPECT_HAS(m, "AutoencoderKLQwenImage");
  m = broken([](const fs::path& p) {
    fs::remove(p / "model_index.json");
    write_file(p / "model_index.json", "{\"_class_name\": ");
  });
  EXPECT_HAS(m, "model_index.json is not valid JSON");
  m = broken([](const fs::path& p) {
    fs::remove(p / "model_index.json");
    write_file(p / "model_index.json", R"({"_class_name":"X","vae":["diffusers"]})");
  });
  EXPECT_HAS(m, "must be [library, class name]");
  m = broken([](const fs::path& p) {
    fs::remove(p / "model_index.json");
    write_file(p / "model_index.json", R"({"_class_name":"X","vae":["diffusers", 2]})");
  });
  EXPECT_HAS(m, "must be [library, class name]");
  {
    // A list of numbers is a pipeline option (Qwen-Image-2.1 Turbo's sample_sigmas), not a
    // component.
    TempDir tmp;
    link_copy(kTiny, tmp.path());
    json index;
    {
      std::ifstream in(tmp.path() / "model_index.json");
      index = json::parse(in);
    }
    index["sample_sigmas"] = {1.0, 0.978453, 0.414568};
    fs::remove(tmp.path() / "model_index.json");
    write_file(tmp.path() / "model_index.json", index.dump());
    const auto folder = ModelFolder::open(tmp.str());
    EXPECT_FALSE(folder.has("sample_sigmas"));
    EXPECT_TRUE(folder.has("transformer"));
  }
  m = broken([](const fs::path& p) { fs::remove(p / "transformer/config.json"); });
  EXPECT_HAS(m, "'transformer' has no config.json");
  m = broken([](const fs::path& p) {
    fs::remove(p / "vae/config.json");
    write_file(p / "vae/config.json", "[1]");
  });
  EXPECT_HAS(m, "vae/config.json");
  EXPECT_HAS(m, "not a JSON object");
  m = broken([](const fs::path& p) { fs::remove(p / "text_encoder/model.safetensors"); });
  EXPECT_HAS(m, "'text_encoder' has no .safetensors weights");
  m = broken([](const fs::path& p) { fs::remove(p / "tokenizer/merges.txt"); });
  EXPECT_HAS(m, "tokenizer");
  m = broken([](const fs::path& p) { fs::remove(p / "scheduler/scheduler_config.json"); });
  EXPECT_HAS(m, "scheduler_config.json");
  // A truncated weight file is found when the weights are opened.
  TempDir tmp;
  link_copy(kTiny, tmp.path());
  const fs::path w = tmp.path() / "transformer/diffusion_pytorch_model.safetensors";
  std::ifstream in(fs::read_symlink(w), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  fs::remove(w);
  write_file(w, bytes.substr(0, bytes.size() / 2));
  auto folder = ModelFolder::open(tmp.str());
  m = error_of([&] { folder.weights("transformer"); });
  EXPECT_HAS(m, "diffusion_pytorch_model.safetensors");
  EXPECT_HAS(m, "truncated");
}

TEST(SingleFile, ComfyTransformerWithPrefixAndZeroCondMarker) {
  auto ref = ModelFolder::open(kTiny).weights("transformer");
  auto tensors =
      renamed_tensors(ref.store, [](const std::string& n) { return "model.diffusion_model." + n; });
  tensors.push_back(st_tensor("model.diffusion_model.__index_timestep_zero__", "BF16", {0}));
  TempDir tmp;
  write_file(tmp.path() / "qwen_image_edit_2511.safetensors", st_serialize(tensors));
  auto c = open_component(tmp.str("qwen_image_edit_2511.safetensors"));  // kind detected
  EXPECT_EQ(c.kind, ComponentKind::Transformer);
  EXPECT_EQ(c.layout, "comfyui");
  EXPECT_TRUE(c.zero_cond_t);
  expect_same_tensors(c.store, ref.store);
  // Derived configuration agrees with the fixture's config.json where shapes tell.
  for (const char* k :
       {"num_layers", "num_attention_heads", "attention_head_dim", "joint_attention_dim",
        "in_channels", "out_channels", "patch_size", "guidance_embeds"})
    EXPECT_EQ(c.config.at(k), ref.config.at(k)) << k;
  EXPECT_EQ(c.config.at("zero_cond_t"), true);
  // Without the marker.
  tensors.pop_back();
  write_file(tmp.path() / "t.safetensors", st_serialize(tensors));
  EXPECT_FALSE(open_component(tmp.str("t.safetensors"), ComponentKind::Transformer).zero_cond_t);
}

TEST(SingleFile, LayeredTransformerConfigFromShapes) {
  // A ComfyUI-style Qwen-Image-Layered transformer file (issue #16): the addition_t_embedding
  // table gives use_additional_t_cond and the Layer3D RoPE that goes with it.
  auto ref = ModelFolder::open(std::string(QWEN_FIXTURES) + "/models/qwen-image-layered-tiny")
                 .weights("transformer");
  TempDir tmp;
  write_file(tmp.path() / "qwen_image_layered.safetensors",
             st_serialize(renamed_tensors(
                 ref.store, [](const std::string& n) { return "model.diffusion_model." + n; })));
  auto c = open_component(tmp.str("qwen_image_layered.safetensors"));
  EXPECT_EQ(c.kind, ComponentKind::Transformer);
  expect_same_tensors(c.store, ref.store);
  EXPECT_EQ(c.config.at("use_additional_t_cond"), true);
  EXPECT_EQ(c.config.at("use_layer3d_rope"), true);
  for (const char* k :
       {"num_layers", "num_attention_heads", "attention_head_dim", "joint_attention_dim"})
    EXPECT_EQ(c.config.at(k), ref.config.at(k)) << k;
}

TEST(SingleFile, RealSizeTransformerConfigFromShapes) {
  // The 20B layout with sparse data: only the header is real, the config comes from shapes.
  TempDir tmp;
  const fs::path p = tmp.path() / "qwen_image_bf16.safetensors";
  const uint64_t params =
      write_sparse_bf16(p, qwen::test::real_transformer_shapes("model.diffusion_model."));
  EXPECT_EQ(params, 20430401088ull);  // spec §1.1
  auto c = open_component(p.string());
  EXPECT_EQ(c.kind, ComponentKind::Transformer);
  EXPECT_EQ(c.store.total_bytes(), 2 * 20430401088ull);
  EXPECT_EQ(c.config.at("num_layers"), 60);
  EXPECT_EQ(c.config.at("num_attention_heads"), 24);
  EXPECT_EQ(c.config.at("attention_head_dim"), 128);
  EXPECT_EQ(c.config.at("joint_attention_dim"), 3584);
  EXPECT_EQ(c.config.at("in_channels"), 64);
  EXPECT_EQ(c.config.at("out_channels"), 16);
  EXPECT_EQ(c.config.at("axes_dims_rope"), json({16, 56, 56}));
  EXPECT_EQ(c.config.at("zero_cond_t"), false);
}

TEST(SingleFile, LegacyTextEncoderKeys) {
  auto ref = ModelFolder::open(kTiny).weights("text_encoder");
  auto legacy = [](const std::string& n) -> std::string {
    if (n.rfind("model.language_model.", 0) == 0) return "model." + n.substr(21);
    if (n.rfind("model.visual.", 0) == 0) return n.substr(6);
    return n;
  };
  TempDir tmp;
  write_file(tmp.path() / "qwen_2.5_vl_7b.safetensors",
             st_serialize(renamed_tensors(ref.store, legacy)));
  auto c = open_component(tmp.str("qwen_2.5_vl_7b.safetensors"));
  EXPECT_EQ(c.kind, ComponentKind::TextEncoder);
  EXPECT_EQ(c.layout, "transformers-legacy");
  expect_same_tensors(c.store, ref.store);
  for (const char* k :
       {"hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
        "intermediate_size", "vocab_size", "tie_word_embeddings"})
    EXPECT_EQ(c.config.at(k), ref.config.at(k)) << k;
  EXPECT_EQ(c.config.at("rope_scaling").at("mrope_section"),
            ref.config.at("rope_scaling").at("mrope_section"));
  for (const char* k : {"depth", "hidden_size", "intermediate_size", "num_heads", "out_hidden_size",
                        "patch_size", "temporal_patch_size", "in_channels"})
    EXPECT_EQ(c.config.at("vision_config").at(k), ref.config.at("vision_config").at(k)) << k;
  // A wrapper prefix (as written by ComfyUI) is stripped too.
  write_file(tmp.path() / "wrapped.safetensors",
             st_serialize(renamed_tensors(ref.store, [&](const std::string& n) {
               return "text_encoders.qwen25_7b.transformer." + legacy(n);
             })));
  expect_same_tensors(open_component(tmp.str("wrapped.safetensors")).store, ref.store);
}

TEST(SingleFile, WanVaeKeys) {
  auto ref = ModelFolder::open(kTiny).weights("vae");
  EXPECT_EQ(qwen::io::wan_vae_key_to_diffusers("decoder.upsamples.7.resample.1.weight"),
            "decoder.up_blocks.1.upsamplers.0.resample.1.weight");
  EXPECT_EQ(qwen::io::wan_vae_key_to_diffusers("decoder.upsamples.13.residual.6.bias"),
            "decoder.up_blocks.3.resnets.1.conv2.bias");
  EXPECT_EQ(qwen::io::wan_vae_key_to_diffusers("encoder.downsamples.3.shortcut.weight"),
            "encoder.down_blocks.3.conv_shortcut.weight");
  EXPECT_EQ(qwen::io::wan_vae_key_to_diffusers("encoder.middle.1.to_qkv.weight"),
            "encoder.mid_block.attentions.0.to_qkv.weight");
  EXPECT_EQ(qwen::io::wan_vae_key_to_diffusers("decoder.head.0.gamma"), "decoder.norm_out.gamma");
  EXPECT_EQ(qwen::io::wan_vae_key_to_diffusers("conv2.weight"), "post_quant_conv.weight");
  EXPECT_EQ(qwen::io::wan_vae_key_to_diffusers("encoder.conv_in.weight"), "encoder.conv_in.weight");
  TempDir tmp;
  auto wan = renamed_tensors(ref.store, to_wan);
  size_t renamed = 0;
  for (const auto& t : wan) renamed += ref.store.find(t.name) == nullptr;
  EXPECT_GT(renamed, 150u);  // the test really exercises the mapping
  write_file(tmp.path() / "qwen_image_vae.safetensors", st_serialize(wan));
  auto c = open_component(tmp.str("qwen_image_vae.safetensors"));
  EXPECT_EQ(c.kind, ComponentKind::Vae);
  EXPECT_EQ(c.layout, "wan");
  expect_same_tensors(c.store, ref.store);
  for (const char* k : {"base_dim", "z_dim", "dim_mult", "num_res_blocks", "temperal_downsample",
                        "latents_mean", "latents_std", "attn_scales"})
    EXPECT_EQ(c.config.at(k), ref.config.at(k)) << k;
  // A diffusers-named single file is accepted as is.
  write_file(tmp.path() / "d.safetensors",
             st_serialize(renamed_tensors(ref.store, [](const std::string& n) { return n; })));
  auto d = open_component(tmp.str("d.safetensors"), ComponentKind::Vae);
  EXPECT_EQ(d.layout, "diffusers");
  expect_same_tensors(d.store, ref.store);
}

TEST(SingleFile, WrongOrUnknownComponents) {
  TempDir tmp;
  auto vae = ModelFolder::open(kTiny).weights("vae");
  write_file(tmp.path() / "vae.safetensors",
             st_serialize(renamed_tensors(vae.store, [](const std::string& n) { return n; })));
  auto m =
      error_of([&] { open_component(tmp.str("vae.safetensors"), ComponentKind::Transformer); });
  EXPECT_HAS(m, "expected a transformer checkpoint");
  EXPECT_HAS(m, "those of a vae");
  write_file(tmp.path() / "x.safetensors", st_serialize({st_tensor("foo.weight", "F32", {2})}));
  EXPECT_HAS(error_of([&] { open_component(tmp.str("x.safetensors")); }), "cannot tell which");
  // Given a kind, an incomplete file fails when its configuration is derived.
  m = error_of([&] { open_component(tmp.str("x.safetensors"), ComponentKind::Vae); });
  EXPECT_HAS(m, "encoder.conv_in.weight");
  write_file(tmp.path() / "s.safetensors",
             st_serialize({st_tensor("img_in.weight", "F8_E4M3", {4, 4}),
                           st_tensor("img_in.scale_weight", "F32", {})}));
  // Scaled fp8 is a format like any other now (io/tensor_format.h): this file is only incomplete.
  m = error_of([&] { open_component(tmp.str("s.safetensors")); });
  EXPECT_HAS(m, "tensor 'txt_in.weight' is missing");
  EXPECT_EQ(m.find("scaled-FP8"), std::string::npos) << m;
  write_file(tmp.path() / "e.safetensors", st_serialize({}));
  EXPECT_HAS(error_of([&] { open_component(tmp.str("e.safetensors")); }), "no tensors");
  // Missing block in the middle of the numbering.
  write_file(tmp.path() / "gap.safetensors",
             st_serialize({st_tensor("img_in.weight", "F32", {8, 64}),
                           st_tensor("txt_in.weight", "F32", {8, 4}),
                           st_tensor("proj_out.weight", "F32", {64, 8}),
                           st_tensor("transformer_blocks.0.attn.norm_q.weight", "F32", {4}),
                           st_tensor("transformer_blocks.2.attn.norm_q.weight", "F32", {4})}));
  EXPECT_HAS(error_of([&] { open_component(tmp.str("gap.safetensors")); }), "block 1 is missing");
}
