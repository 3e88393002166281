// Quantise-on-load (`--quantize fp8`, EngineOptions::quantize, daemon.conf `quantize`): which
// transformer weights a plain (bf16 / f32) checkpoint has turned into fp8 as it is loaded, so the
// released bf16 files run in fp8 memory without another download. The torch side (the formula and
// the loader hook) is models/quantize.h; this torch-free part is shared with the planner
// (plan/model_sizes.h counts the selected weights at 1 byte per element plus a 4-byte scale).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace qwen::io {

enum class QuantizeMode { None, Fp8 };

// "none" (also "") or "fp8"; anything else throws std::invalid_argument naming the value and the
// accepted names.
QuantizeMode parse_quantize_mode(const std::string& name);
const char* to_string(QuantizeMode mode);

// Whether quantise-on-load turns the transformer tensor `key` (canonical diffusers name) of
// `shape` into fp8: the 2-D weights of the Linears inside the transformer blocks
// (`transformer_blocks.N.…weight`: attention q/k/v/out and the added-stream projections, the
// MLPs, and in the 20B model the img_mod / txt_mod modulation). Not the top-level layers (img_in,
// txt_in, time_text_embed, norm_out, proj_out, 2.1's shared `modulation`), embeddings, norms or
// biases. This mirrors the released fp8 files: ComfyUI's "*_fp8mixed" / scaled files quantise the
// transformer-block Linears and keep the small top-level ones in bf16 (tests/fixtures/
// format-samples/README.md section 4; city96's GGUF converter draws the same line), the one
// difference being that the fp8mixed files also keep block 0's modulation in bf16, which costs
// 0.1 GB and changes nothing here. The caller checks that the tensor belongs to a Linear (the
// loader) and is stored plain (already quantised tensors stay as stored).
bool quantize_on_load_selects(const std::string& key, const std::vector<int64_t>& shape);

}  // namespace qwen::io
