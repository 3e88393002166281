#!/usr/bin/env python3
"""A transformer's weights as a ComfyUI per-layer fp8 single file ("fp8mixed" / comfy_quant layout,
tests/fixtures/format-samples/README.md section 4), quantised with the formula of quantise-on-load
(daemon/models/quantize.h quantize_fp8), so `qwen-image --quantize fp8` on the source weights and
`--transformer OUT` on this file must give the same image bit for bit (tests/pipelines/
test_engine_quantize.cpp).

Quantised: the 2-D `transformer_blocks.*.weight` tensors (io/quantize_on_load.h
quantize_on_load_selects), stored plain in a floating dtype:
    W32   = float32(w)
    amax  = max |W32|
    scale = amax / 448 in float32, or 1 when amax == 0
    q     = float8_e4m3fn(W32 / scale)      (torch: round to nearest even, saturating)
written as `<layer>.weight` (F8_E4M3), `<layer>.weight_scale` (F32, shape []) and
`<layer>.comfy_quant` (U8 JSON {"format": "float8_e4m3fn"}); no input_scale (quantise-on-load keeps
none). Every other tensor is copied as stored (same dtype, same bytes).

usage: make_fp8_scaled.py SRC OUT.safetensors   (SRC: a transformer folder of *.safetensors, or a file)
"""
import glob
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

FP8_MAX = 448.0


def selects(key, t):
    return key.startswith("transformer_blocks.") and key.endswith(".weight") and t.dim() == 2


def quantize_fp8(w):
    w32 = w.to(torch.float32)
    amax = w32.abs().amax() if w32.numel() else torch.zeros((), dtype=torch.float32)
    scale = torch.where(amax > 0, amax / torch.tensor(FP8_MAX, dtype=torch.float32),
                        torch.ones((), dtype=torch.float32))
    return (w32 / scale).to(torch.float8_e4m3fn), scale.reshape(())


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    torch.set_num_threads(1)
    src, out_path = sys.argv[1], sys.argv[2]
    files = sorted(glob.glob(os.path.join(src, "*.safetensors"))) if os.path.isdir(src) else [src]
    if not files:
        sys.exit(f"{src}: no .safetensors file")
    sd = {}
    for f in files:
        sd.update(load_file(f))
    out, n = {}, 0
    for k, v in sd.items():
        if selects(k, v) and v.is_floating_point() and v.dtype not in (torch.float8_e4m3fn,
                                                                       torch.float8_e5m2):
            q, scale = quantize_fp8(v)
            layer = k[: -len(".weight")]
            out[k] = q
            out[layer + ".weight_scale"] = scale
            out[layer + ".comfy_quant"] = torch.tensor(
                list(json.dumps({"format": "float8_e4m3fn"}).encode()), dtype=torch.uint8)
            n += 1
        else:
            out[k] = v
    save_file({k: v.contiguous() for k, v in out.items()}, out_path, metadata={"format": "pt"})
    print(f"{out_path}: {n} weights quantised to fp8, {len(sd) - n} tensors as stored")


if __name__ == "__main__":
    main()
