// How each tensor of a checkpoint file is stored: the one place that knows the single-file formats
// users download (torch-free, so `inspect` can use it too).
//
//   plain        every tensor as its safetensors dtype (BF16, F16, F32, ...)          W = w
//   fp8          plain fp8 casts, no scales (F8_E4M3 / F8_E5M2)                       W = float(w)
//   fp8-scaled   legacy ComfyUI "scaled fp8": `scaled_fp8` marker, `<layer>.scale_weight`,
//                optional `<layer>.scale_input`                                       W = float(w)
//                * s
//   comfy-quant  per-layer `<layer>.comfy_quant` JSON (or the header's
//                `_quantization_metadata`), `<layer>.weight_scale`, `<layer>.input_scale`
//                (the "*_fp8mixed" files; only some layers quantised)                 W = float(w)
//                * s
//   gguf         city96 / llama.cpp GGUF blocks (F32, F16, BF16, Q8_0, ..., IQ4_XS)   W =
//   dequant(b)
//
// Sources: ComfyUI comfy/utils.py convert_old_quants (legacy -> comfy_quant rewrite),
// comfy/ops.py _load_quantized_module (per-layer JSON, weight_scale / input_scale),
// comfy/quant_ops.py QUANT_ALGOS (the format names), ComfyUI-GGUF loader.py (GGUF); the exact
// layouts are in tests/fixtures/format-samples/README.md.
//
// The loader turns each TensorFormat into a tensor (plain) or a models::QuantizedWeight (fp8,
// gguf; models/quant.h) and drops `aux_keys` (scales, markers, comfy_quant entries) before matching
// names against the module.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "io/safetensors.h"

namespace qwen::io {

enum class Encoding {
  Plain,  // the stored dtype is the value
  Fp8,    // 1-byte float8 values, optionally times a per-tensor scale
  Ggml,   // GGUF blocks
};
const char* encoding_name(Encoding);  // "plain", "fp8", "ggml"

struct TensorFormat {
  std::string key;  // the tensor's name in the store / GGUF file
  Encoding encoding = Encoding::Plain;
  std::vector<int64_t> shape;  // logical (torch) shape of the dequantised tensor

  // Plain and Fp8: the stored tensor.
  TensorRef ref;
  // Fp8: element format of the stored bytes (F8_E4M3 or F8_E5M2; for the comfy_quant scheme the
  // layer's "format" decides, as ComfyUI views the weight as that dtype).
  DType fp8 = DType::F8_E4M3;
  TensorRef scale;           // per-tensor weight scale (1 element); empty for plain fp8 (scale 1)
  TensorRef input_scale;     // activation scale: only an fp8 matmul uses it; never changes W
  std::string quant_format;  // "float8_e4m3fn" / "float8_e5m2" (scaled files), else ""
  bool full_precision_mm = false;  // comfy_quant "full_precision_matrix_mult" / 2-element marker

  // Ggml: the GGUF tensor.
  std::shared_ptr<GgufFile> gguf;
  const GgufTensorInfo* gguf_info = nullptr;
  GgmlType ggml = GgmlType::F32;

  // "BF16", "F8_E4M3", "F8_E4M3*scale", "Q4_K", ...
  std::string storage() const;
  uint64_t stored_bytes() const;  // bytes of the stored data (scales not counted)
  bool quantized() const { return encoding != Encoding::Plain; }
  // The file holding the tensor (for messages).
  const std::string& file_path() const;
};

enum class FileKind { Plain, Fp8, Fp8Scaled, ComfyQuant, Gguf };
const char* file_kind_name(FileKind);  // "plain", "fp8", "fp8-scaled", "comfy-quant", "gguf"

struct FileFormat {
  std::string source;
  FileKind kind = FileKind::Plain;
  std::map<std::string, TensorFormat> tensors;  // every tensor except aux_keys
  std::set<std::string> aux_keys;  // scale / marker / comfy_quant keys, folded into `tensors`
  const TensorFormat* find(const std::string& key) const;
  // "comfy-quant: BF16 (51), F8_E4M3*scale (26)"
  std::string summary() const;
};

// Describes a safetensors checkpoint (one file or shards; keys as they are in `store`, prefixed
// or not). Throws CheckpointError naming the file and the key on: bad comfy_quant /
// _quantization_metadata JSON, a quantised layer without its weight, an fp8 weight whose layer
// has settings (comfy_quant) or an input scale but no weight scale, a scale that is not one
// float, a weight whose dtype does not match its format, and any other quantisation format
// (nvfp4, mxfp8, int8 / int4 ConvRot, AWQ, ...), with what to download instead. An fp8 tensor
// with neither settings nor scales is a plain cast (scale 1), as in ComfyUI.
FileFormat describe_safetensors(const TensorStore& store);

// Describes a GGUF file (keys as stored). Throws CheckpointError naming the file and the tensor for
// a ggml type qwen-image does not dequantise (IQ1/IQ2/IQ3, TQ, MXFP4, ...), saying what to
// download instead.
FileFormat describe_gguf(const std::shared_ptr<GgufFile>& file);

// llama.cpp tensor names of a GGUF text encoder (arch "qwen2vl" / "qwen2" / "llama") -> the
// transformers names of the legacy layout (`model.layers.N.self_attn.q_proj.weight`,
// `model.embed_tokens.weight`, `model.norm.weight`, `lm_head.weight`), as ComfyUI-GGUF's
// loader.py LLAMA_SD_MAP; names it does not know are returned unchanged. (Its llama_permute of
// q/k applies to arch "llama" only, not to Qwen.)
std::string gguf_llama_key_to_transformers(const std::string& key);

// Message tail shared by the "unsupported format" errors.
std::string download_instead_hint();

}  // namespace qwen::io
