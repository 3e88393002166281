// Qwen-Image-2.1's ComfyUI single-file layouts at the released shapes (issue #15). No released file
// can be downloaded here, so gen_qwen21_comfy_layouts.py derives them from ComfyUI's model
// definitions (comfy/ldm/qwen_image21/model.py; comfy/sd.py's Wan 2.2-layout VAE with a temporal
// kernel of 1; comfy/text_encoders/qwen3vl.py's qwen3vl_8b) as header-only safetensors, and takes
// the expected canonical names, shapes and configuration from the reference's own modules
// (diffusers / transformers at the released configuration, on the meta device). Checked here:
// io opens every file as the right component, maps every key to exactly the reference's set with
// the real shapes, and derives the released configuration from the shapes; the loaders take the
// same layouts at tiny widths and refuse a file with one unknown key, naming it and the file.
// (The tiny layouts' numerics are the other reference tests': Qwen21TransformerComfySingleFile...,
// the VAE's vae_file part, Qwen21TextEncoderComfySingleFile....)
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "models/qwen3vl_text_encoder.h"
#include "models/transformer21.h"
#include "models/vae21.h"
#include "reference_case.h"

namespace {

using nlohmann::json;

// Differences between the canonical names / shapes io gives and the reference's, one a line.
// `one_frame`: a 5-D [out, in, 1, k, k] kernel counts as the reference's 4-D one (the original
// layout's 1-frame convolutions, which the VAE loader squeezes).
std::string compare_tensors(const qwen::io::ComponentWeights& w, const json& expected,
                            bool one_frame = false) {
  std::ostringstream diff;
  std::set<std::string> seen;
  for (const auto& [name, fmt] : w.format.tensors) {
    seen.insert(name);
    const auto it = expected.find(name);
    if (it == expected.end()) {
      diff << "  not in the reference: " << name << "\n";
      continue;
    }
    auto shape = fmt.shape;
    if (one_frame && shape.size() == 5 && shape[2] == 1 && it->size() == 4)
      shape.erase(shape.begin() + 2);
    if (it->get<std::vector<int64_t>>() != shape)
      diff << "  shape of " << name << ": " << json(fmt.shape).dump() << ", reference "
           << it->dump() << "\n";
  }
  for (const auto& [name, shape] : expected.items())
    if (!seen.count(name)) diff << "  missing: " << name << " " << shape.dump() << "\n";
  return diff.str();
}

bool same_value(const json& a, const json& b) {
  if (a.is_number() && b.is_number())
    return std::abs(a.get<double>() - b.get<double>()) <= 1e-9 * (1 + std::abs(b.get<double>()));
  if (a.is_array() && b.is_array()) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (!same_value(a[i], b[i])) return false;
    return true;
  }
  return a == b;
}

// Every `keys` entry of the derived configuration equals the reference's.
void expect_config(const json& ours, const json& ref, const std::vector<std::string>& keys,
                   const std::string& where) {
  for (const auto& k : keys) {
    ASSERT_TRUE(ours.contains(k)) << k << " not derived, " << where << ": " << ours.dump();
    ASSERT_TRUE(ref.contains(k)) << k << " not in the reference config, " << where;
    EXPECT_TRUE(same_value(ours[k], ref[k]))
        << k << ": " << ours[k].dump() << ", reference " << ref[k].dump() << ", " << where;
  }
}

json read_json(const std::string& path) {
  std::ifstream f(path);
  return json::parse(f);
}

// The loader refuses `file` (one key more than the model has), naming the file and `key`.
template <class Load>
void expect_unknown_key_refused(const std::string& file, const std::string& key, Load&& load) {
  try {
    load(file);
    ADD_FAILURE() << file << " with the unknown " << key << " was accepted";
  } catch (const std::exception& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(file), std::string::npos) << m;
    EXPECT_NE(m.find("unexpected"), std::string::npos) << m;
    EXPECT_NE(m.find(key), std::string::npos) << m;
  }
}

TEST(ReferenceDifferential, Qwen21ComfyLayoutsAtTheReleasedShapes) {
  QWEN_REFERENCE_CASE(ref, "layouts", "", "gen_qwen21_comfy_layouts.py");
  namespace io = qwen::io;
  const json expected = read_json(ref.dir() + "/expected.json");

  // Transformer: as ComfyUI saves it (model.diffusion_model.) and bare, fused img_mlp.gate_up.
  const auto& et = expected["transformer"];
  for (const char* name : {"qwen_image_2.1_bf16", "qwen_image_2.1_bare"}) {
    const std::string file = ref.dir() + "/" + name + ".safetensors";
    const auto w = io::open_component(file);
    ASSERT_EQ(w.kind, io::ComponentKind::Transformer) << file;
    EXPECT_EQ(compare_tensors(w, et["tensors"]), "") << file;
    expect_config(w.config, et["config"],
                  {"in_channels", "num_layers", "attention_head_dim", "num_attention_heads",
                   "context_in_dim", "mlp_ratio", "axes_dims_rope"},
                  file);
    EXPECT_TRUE(qwen::models::transformer21_config(w).fused_mlp) << file;
  }

  // VAE: the Wan 2.2 names with 1-frame kernels.
  {
    const std::string file = ref.dir() + "/qwen_image_2.1_vae_bf16.safetensors";
    const auto w = io::open_component(file);
    ASSERT_EQ(w.kind, io::ComponentKind::Vae) << file;
    EXPECT_EQ(compare_tensors(w, expected["vae"]["tensors"], true), "") << file;
    expect_config(w.config, expected["vae"]["config"],
                  {"base_dim", "decoder_base_dim", "z_dim", "dim_mult", "num_res_blocks",
                   "temperal_downsample", "latents_mean", "latents_std"},
                  file);
  }

  // Text encoder: comfy's Qwen3VL (model. = Llama2_ with its lm_head, visual.).
  {
    const std::string file = ref.dir() + "/qwen3vl_8b_bf16.safetensors";
    const auto w = io::open_component(file);
    ASSERT_EQ(w.kind, io::ComponentKind::TextEncoder) << file;
    const auto& ete = expected["text_encoder"];
    EXPECT_EQ(compare_tensors(w, ete["tensors"]), "") << file;
    const auto& rt = ete["config"]["text_config"];
    expect_config(w.config["text_config"], rt,
                  {"hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                   "head_dim", "intermediate_size", "vocab_size", "rms_norm_eps"},
                  file);
    EXPECT_EQ(w.config["text_config"]["rope_scaling"]["mrope_section"],
              rt["rope_parameters"]["mrope_section"])
        << file;
    EXPECT_TRUE(
        same_value(w.config["text_config"]["rope_theta"], rt["rope_parameters"]["rope_theta"]))
        << file;
    expect_config(w.config["vision_config"], ete["config"]["vision_config"],
                  {"depth", "hidden_size", "intermediate_size", "num_heads", "out_hidden_size",
                   "num_position_embeddings", "deepstack_visual_indexes", "patch_size",
                   "temporal_patch_size", "spatial_merge_size", "in_channels"},
                  file);
  }

  // The loaders take the layouts (tiny widths, real data) and refuse one unknown key.
  torch::set_num_threads(1);
  auto transformer = [](const std::string& f) {
    qwen::models::load_transformer21(io::open_component(f), torch::kFloat32, torch::kCPU);
  };
  auto vae = [](const std::string& f) {
    qwen::models::load_vae21(f, torch::kFloat32, torch::kCPU);
  };
  auto text_encoder = [](const std::string& f) {
    qwen::models::qwen3vl::load_text_encoder(f, torch::kFloat32, torch::kCPU, true);
  };
  const std::string d = ref.dir() + "/tiny_";
  EXPECT_NO_THROW(transformer(d + "transformer.safetensors"));
  EXPECT_NO_THROW(vae(d + "vae.safetensors"));
  EXPECT_NO_THROW(text_encoder(d + "text_encoder.safetensors"));
  expect_unknown_key_refused(d + "transformer_unknown.safetensors", "add_k_proj", transformer);
  expect_unknown_key_refused(d + "vae_unknown.safetensors", "upsamples.0", vae);
  expect_unknown_key_refused(d + "text_encoder_unknown.safetensors", "qkv_proj", text_encoder);
}

}  // namespace
