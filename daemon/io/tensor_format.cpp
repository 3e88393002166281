// Per-tensor storage descriptions of safetensors (plain, fp8, scaled fp8, comfy_quant) and GGUF
// checkpoints. See io/tensor_format.h.
#include "io/tensor_format.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

namespace qwen::io {

using nlohmann::json;

namespace {

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw CheckpointError(where + ": " + what);
}

bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}
bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
std::string strip_suffix(const std::string& s, const std::string& p) {
  return s.substr(0, s.size() - p.size());
}

bool is_fp8(DType d) { return d == DType::F8_E4M3 || d == DType::F8_E5M2; }
bool is_float(DType d) {
  return d == DType::F32 || d == DType::F16 || d == DType::BF16 || d == DType::F64;
}

// Wrapper prefixes ComfyUI strips (comfy/model_detection.py unet_prefix_from_state_dict).
constexpr const char* kPrefixes[] = {"model.diffusion_model.", "diffusion_model."};

// One quantised layer's settings (a comfy_quant JSON object).
struct LayerConf {
  std::string format;
  bool full_precision_mm = false;
  std::string file;   // where the settings came from, for messages
  std::string where;  // "tensor 'x.comfy_quant'" / "header _quantization_metadata layer 'x'"
};

// Formats ComfyUI knows (comfy/quant_ops.py QUANT_ALGOS) that qwen-image does not read.
const char* unsupported_format_description(const std::string& f) {
  if (f == "nvfp4") return "NVIDIA FP4 with block scales, for Blackwell GPUs";
  if (f == "mxfp8") return "MX FP8 with per-32 block scales";
  if (f == "int8_tensorwise") return "int8 with a per-tensor scale";
  if (f == "convrot_w4a4") return "int4 ConvRot, rotated 4-bit weights and activations";
  if (f == "int4_tensorwise") return "int4 ConvRot, rotated 4-bit weights";
  if (f == "asym_w4a8_int8") return "asymmetric 4-bit weights with int8 activations";
  if (f == "awq_w4a16") return "AWQ 4-bit weights";
  // Qwen-Image-2.1's repacks (issue #15): qwen_image_2.1_bf16.safetensors is the file to use.
  if (f == "int8_convrot")
    return "int8 ConvRot, rotated 8-bit weights (a Qwen-Image-2.1 repack; qwen_image_2.1_bf16 "
           "is the file to download)";
  if (f == "w4a8" || f == "w4a8_int8")
    return "4-bit weights with 8-bit activations (a Qwen-Image-2.1 repack; qwen_image_2.1_bf16 "
           "is the file to download)";
  return nullptr;
}

LayerConf conf_from_json(const json& j, const std::string& file, const std::string& where) {
  LayerConf c;
  c.file = file;
  c.where = where;
  if (j.is_string()) {  // {"layers": {"x": "float8_e4m3fn"}}, seen in some converters
    c.format = j.get<std::string>();
    return c;
  }
  if (!j.is_object())
    fail(file, where + ": quantisation settings must be a JSON object, found " + j.dump());
  auto f = j.find("format");
  if (f == j.end() || !f->is_string())
    fail(file, where + ": quantisation settings " + j.dump() + " have no \"format\" string");
  c.format = f->get<std::string>();
  auto fp = j.find("full_precision_matrix_mult");
  if (fp != j.end()) {
    if (!fp->is_boolean())
      fail(file,
           where + ": \"full_precision_matrix_mult\" must be true or false, found " + fp->dump());
    c.full_precision_mm = fp->get<bool>();
  }
  return c;
}

// The JSON bytes of a `.comfy_quant` tensor (a U8 / I8 vector of UTF-8).
json comfy_quant_json(const std::string& key, const TensorRef& ref) {
  const std::string& file = ref.file->path();
  if (ref.info->dtype != DType::U8 && ref.info->dtype != DType::I8)
    fail(file, "tensor '" + key + "' is " + dtype_name(ref.info->dtype) +
                   ", expected U8 bytes of comfy_quant JSON");
  const char* p = reinterpret_cast<const char*>(ref.file->data(*ref.info));
  json j = json::parse(p, p + (ref.info->end - ref.info->begin), nullptr,
                       /*allow_exceptions=*/false);
  if (j.is_discarded())
    fail(file, "tensor '" + key + "' does not hold valid comfy_quant JSON: \"" +
                   std::string(p, std::min<size_t>(ref.info->end - ref.info->begin, 80)) + "\"");
  return j;
}

void check_scale(const std::string& key, const TensorRef& ref) {
  if (!is_float(ref.info->dtype) || ref.info->numel() != 1)
    fail(ref.file->path(), "scale tensor '" + key + "' is " + dtype_name(ref.info->dtype) + " " +
                               shape_to_string(ref.info->shape) +
                               ", expected one float (a per-tensor scale)");
}

}  // namespace

const char* encoding_name(Encoding e) {
  switch (e) {
    case Encoding::Plain:
      return "plain";
    case Encoding::Fp8:
      return "fp8";
    case Encoding::Ggml:
      return "ggml";
  }
  return "?";
}

const char* file_kind_name(FileKind k) {
  switch (k) {
    case FileKind::Plain:
      return "plain";
    case FileKind::Fp8:
      return "fp8";
    case FileKind::Fp8Scaled:
      return "fp8-scaled";
    case FileKind::ComfyQuant:
      return "comfy-quant";
    case FileKind::Gguf:
      return "gguf";
  }
  return "?";
}

std::string download_instead_hint() {
  return "download the bf16, fp8 (e4m3fn, \"fp8_scaled\" or \"fp8mixed\") or GGUF (Q8_0, Q6_K, "
         "Q5_K_M, Q4_K_M, ...) version of this model instead";
}

std::string TensorFormat::storage() const {
  switch (encoding) {
    case Encoding::Plain:
      return dtype_name(ref.info->dtype);
    case Encoding::Fp8:
      return std::string(dtype_name(fp8)) + (scale.info ? "*scale" : "");
    case Encoding::Ggml:
      return ggml_type_name(ggml);
  }
  return "?";
}

uint64_t TensorFormat::stored_bytes() const {
  if (encoding == Encoding::Ggml) return gguf_info->nbytes;
  return ref.info->end - ref.info->begin;
}

const std::string& TensorFormat::file_path() const {
  return encoding == Encoding::Ggml ? gguf->path() : ref.file->path();
}

const TensorFormat* FileFormat::find(const std::string& key) const {
  auto it = tensors.find(key);
  return it == tensors.end() ? nullptr : &it->second;
}

std::string FileFormat::summary() const {
  std::map<std::string, size_t> n;
  for (const auto& [k, t] : tensors) ++n[t.storage()];
  std::string s = std::string(file_kind_name(kind)) + ":";
  bool first = true;
  for (const auto& [st, c] : n) {
    s += (first ? " " : ", ") + st + " (" + std::to_string(c) + ")";
    first = false;
  }
  return s;
}

// ---------------------------------------------------------------------------------------------

FileFormat describe_safetensors(const TensorStore& store) {
  FileFormat out;
  out.source = store.source();
  std::map<std::string, LayerConf> confs;  // layer -> settings
  bool header_meta = false, legacy = false;

  // Layer names in settings may carry a wrapper prefix the keys lack, or lack one they have
  // (convert_old_quants runs before and after ComfyUI strips it): the layer whose `.weight` exists.
  auto resolve_layer = [&](const std::string& layer) -> std::string {
    if (store.find(layer + ".weight")) return layer;
    for (const char* p : kPrefixes) {
      if (starts_with(layer, p) && store.find(layer.substr(std::strlen(p)) + ".weight"))
        return layer.substr(std::strlen(p));
      if (store.find(p + layer + ".weight")) return p + layer;
    }
    return layer;
  };

  // 1. Header `_quantization_metadata` = {"format_version": ..., "layers": {layer: {...}}}
  //    (comfy/utils.py convert_old_quants): overrides per-tensor comfy_quant entries.
  std::set<const SafetensorsFile*> seen_files;
  for (const auto& [name, ref] : store.all()) {
    if (!seen_files.insert(ref.file.get()).second) continue;
    auto it = ref.file->metadata().find("_quantization_metadata");
    if (it == ref.file->metadata().end()) continue;
    const std::string& file = ref.file->path();
    json j = json::parse(it->second, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) fail(file, "header metadata '_quantization_metadata' is not valid JSON");
    auto layers = j.is_object() ? j.find("layers") : j.end();
    if (layers == j.end() || !layers->is_object())
      fail(file, "header metadata '_quantization_metadata' has no \"layers\" object");
    header_meta = true;
    for (auto l = layers->begin(); l != layers->end(); ++l)
      confs[resolve_layer(l.key())] = conf_from_json(
          l.value(), file, "header metadata '_quantization_metadata' layer '" + l.key() + "'");
  }

  // 2. Per-layer `<layer>.comfy_quant` tensors (comfy/ops.py _load_quantized_module).
  for (const auto& [name, ref] : store.all()) {
    if (!ends_with(name, ".comfy_quant")) continue;
    out.aux_keys.insert(name);
    const std::string layer = strip_suffix(name, ".comfy_quant");
    const json j = comfy_quant_json(name, ref);  // validated even when the header overrides it
    if (!confs.count(layer))
      confs[layer] = conf_from_json(j, ref.file->path(), "tensor '" + name + "'");
  }

  // 3. Legacy scaled fp8 (comfy/utils.py convert_old_quants, comfy/ops.py@a125cd8
  //    scaled_fp8_ops): the `scaled_fp8` marker (2 elements = full-precision matmul),
  //    `<layer>.scale_weight` and `<layer>.scale_input`. A layer counts as scaled when any of its
  //    scale tensors is present (legacy or current names), so a layer that kept its input scale but
  //    lost its weight scale is an error below rather than silently unscaled. ComfyUI only honours
  //    scale_weight with the marker present; here it is applied without it too (ignoring it would
  //    give wrong weights), and likewise a bare `<layer>.weight_scale` next to an fp8 weight.
  const TensorRef* marker = nullptr;
  for (const auto& [name, ref] : store.all()) {
    if (name == "scaled_fp8" || ends_with(name, ".scaled_fp8")) {
      marker = &ref;
      out.aux_keys.insert(name);
    }
  }
  for (const auto& [name, ref] : store.all()) {
    std::string suffix;
    for (const char* s : {".scale_weight", ".scale_input", ".weight_scale", ".input_scale"})
      if (ends_with(name, s)) suffix = s;
    if (suffix.empty()) continue;
    const bool legacy_key = suffix == ".scale_weight" || suffix == ".scale_input";
    const std::string layer = strip_suffix(name, suffix);
    if (confs.count(layer)) continue;
    const TensorRef* w = store.find(layer + ".weight");
    if (!w) continue;  // reported as an unexpected tensor by the loader
    if (suffix != ".scale_weight" && !is_fp8(w->info->dtype)) continue;
    LayerConf c;
    const DType stored = is_fp8(w->info->dtype)                            ? w->info->dtype
                         : marker && marker->info->dtype == DType::F8_E5M2 ? DType::F8_E5M2
                                                                           : DType::F8_E4M3;
    c.format = stored == DType::F8_E5M2 ? "float8_e5m2" : "float8_e4m3fn";
    c.full_precision_mm = marker && marker->info->numel() == 2;
    c.file = ref.file->path();
    c.where = "tensor '" + name + "'";
    confs[layer] = c;
    if (legacy_key) legacy = true;
  }
  if (marker) legacy = true;

  // Quantised layers.
  for (const auto& [layer, c] : confs) {
    if (c.format != "float8_e4m3fn" && c.format != "float8_e5m2") {
      if (const char* d = unsupported_format_description(c.format))
        fail(c.file, "layer '" + layer + "' is stored in the '" + c.format + "' format (" + d +
                         ", " + c.where + "), which qwen-image does not read; " +
                         download_instead_hint());
      fail(c.file, "layer '" + layer + "' has the unknown quantisation format '" + c.format +
                       "' (" + c.where +
                       "); qwen-image reads float8_e4m3fn and float8_e5m2 layers; " +
                       download_instead_hint());
    }
    const std::string wkey = layer + ".weight";
    const TensorRef* w = store.find(wkey);
    if (!w)
      fail(c.file, c.where + " quantises layer '" + layer + "' as " + c.format +
                       ", but the file has no tensor '" + wkey + "'");
    const std::string& wfile = w->file->path();
    const DType wd = w->info->dtype;
    if (dtype_size(wd) != 1)
      fail(wfile, "tensor '" + wkey + "' is " + dtype_name(wd) + ", but " + c.where +
                      " says it is stored as " + c.format + " (1 byte per value)");
    TensorFormat t;
    t.key = wkey;
    t.encoding = Encoding::Fp8;
    t.shape = w->info->shape;
    t.ref = *w;
    t.fp8 = c.format == "float8_e5m2" ? DType::F8_E5M2 : DType::F8_E4M3;
    t.quant_format = c.format;
    t.full_precision_mm = c.full_precision_mm;
    for (const char* s : {".weight_scale", ".scale_weight"}) {
      if (const TensorRef* r = store.find(layer + s)) {
        if (!t.scale.info) {
          check_scale(layer + s, *r);
          t.scale = *r;
        }
        out.aux_keys.insert(layer + s);
      }
    }
    if (!t.scale.info)
      fail(wfile, "fp8 weight '" + wkey + "' (" + c.format + ", " + c.where +
                      ") has no scale tensor '" + layer + ".weight_scale' (or the legacy '" +
                      layer +
                      ".scale_weight'); the file is incomplete or damaged, download it again");
    for (const char* s : {".input_scale", ".scale_input"}) {
      if (const TensorRef* r = store.find(layer + s)) {
        if (!t.input_scale.info) {
          check_scale(layer + s, *r);
          t.input_scale = *r;
        }
        out.aux_keys.insert(layer + s);
      }
    }
    out.tensors[wkey] = std::move(t);
  }

  // Everything else: plain tensors, and plain fp8 (scale 1) where no layer settings exist.
  for (const auto& [name, ref] : store.all()) {
    if (out.aux_keys.count(name) || out.tensors.count(name)) continue;
    TensorFormat t;
    t.key = name;
    t.shape = ref.info->shape;
    t.ref = ref;
    if (is_fp8(ref.info->dtype)) {
      // No scale tensor and no settings: a plain fp8 cast (scale 1), in a scaled file too, as
      // ComfyUI does for layers without scale_weight (scaled_fp8_ops' default of ones, or no
      // comfy_quant entry). Layers that have settings or any scale are handled above.
      t.encoding = Encoding::Fp8;
      t.fp8 = ref.info->dtype;
    }
    out.tensors[name] = std::move(t);
  }

  if (header_meta || (!confs.empty() && !legacy))
    out.kind = FileKind::ComfyQuant;
  else if (legacy || !confs.empty())
    out.kind = FileKind::Fp8Scaled;
  else {
    out.kind = FileKind::Plain;
    for (const auto& [k, t] : out.tensors)
      if (t.encoding == Encoding::Fp8) out.kind = FileKind::Fp8;
  }
  return out;
}

std::string gguf_llama_key_to_transformers(const std::string& key) {
  static const std::pair<const char*, const char*> kTop[] = {
      {"token_embd.", "model.embed_tokens."},
      {"output_norm.", "model.norm."},
      {"output.", "lm_head."},
  };
  static const std::pair<const char*, const char*> kBlock[] = {
      {"attn_norm.", "input_layernorm."},
      {"attn_q_norm.", "self_attn.q_norm."},
      {"attn_k_norm.", "self_attn.k_norm."},
      {"attn_q.", "self_attn.q_proj."},
      {"attn_k.", "self_attn.k_proj."},
      {"attn_v.", "self_attn.v_proj."},
      {"attn_output.", "self_attn.o_proj."},
      {"ffn_up.", "mlp.up_proj."},
      {"ffn_down.", "mlp.down_proj."},
      {"ffn_gate.", "mlp.gate_proj."},
      {"ffn_norm.", "post_attention_layernorm."},
  };
  for (const auto& [from, to] : kTop)
    if (starts_with(key, from)) return to + key.substr(std::strlen(from));
  if (!starts_with(key, "blk.")) return key;
  const size_t dot = key.find('.', 4);
  if (dot == std::string::npos || dot == 4) return key;
  const std::string n = key.substr(4, dot - 4);
  if (n.size() > 6 || !std::all_of(n.begin(), n.end(), ::isdigit)) return key;
  const std::string rest = key.substr(dot + 1);
  for (const auto& [from, to] : kBlock)
    if (starts_with(rest, from))
      return "model.layers." + n + "." + to + rest.substr(std::strlen(from));
  return key;
}

FileFormat describe_gguf(const std::shared_ptr<GgufFile>& file) {
  FileFormat out;
  out.source = file->path();
  out.kind = FileKind::Gguf;
  for (const auto& info : file->tensors()) {
    if (!ggml_type_supported(info.type))
      fail(file->path(),
           "tensor '" + info.name + "' is stored as GGUF type " + ggml_type_name(info.type) +
               ", which qwen-image does not dequantise (it reads " + ggml_supported_types() +
               "); download a GGUF quantised to one of "
               "those (e.g. Q8_0, Q6_K, Q5_K_M, Q4_K_M) or the bf16 / fp8 "
               "safetensors file instead");
    TensorFormat t;
    t.key = info.name;
    t.encoding = Encoding::Ggml;
    t.shape = info.shape;
    t.gguf = file;
    t.gguf_info = &info;
    t.ggml = info.type;
    out.tensors[info.name] = std::move(t);
  }
  return out;
}

}  // namespace qwen::io
