#!/usr/bin/env python3
"""Writes FRESH random quantised blocks and their reference dequantisation, for tests/io/test_quant.cpp.

    .venv/bin/python tests/io/gen_quant_cases.py OUT.safetensors --seed S

For every GGUF type qwen-image reads (F32, F16, BF16, Q8_0, Q5_0, Q5_1, Q4_0, Q4_1, Q2_K..Q6_K, IQ4_NL,
IQ4_XS), with T the type name:
  T.raw.blocks    U8   random block bytes (float16 d / dmin fields redrawn when NaN or Inf; any other byte
                       pattern is a valid block)
  T.raw.expected  F32  gguf.quants.dequantize(blocks, T) (gguf-py, the PyPI `gguf` package)
  T.q.blocks      U8   gguf.quants.quantize(random floats, T), for the types gguf-py can quantise
  T.q.expected    F32  gguf.quants.dequantize of those blocks
  T.shape         I64  the logical shape (rows x values per row)
and for ComfyUI's fp8 rule `float(w) * scale` (comfy/ops.py scaled_fp8_ops, TensorCoreFP8Layout.dequantize),
with E in e4m3fn, e5m2:
  fp8_E.weight    U8   every byte value, then random bytes (NaN / Inf codes included)
  fp8_E.scale     F32  [] a random per-tensor scale
  fp8_E.expected  F32  weight.view(float8_E).to(float32) * scale (torch)
  fp8_E.plain     F32  weight.view(float8_E).to(float32)
A small safetensors writer is used (numpy + json) so only gguf, numpy and torch are needed.
"""
import argparse
import json
import struct
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

# Byte offsets of the float16 fields (d, dmin / m) inside one block (gguf-py quants.py layouts).
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
    "IQ4_NL": [0], "IQ4_XS": [0],
}
TYPES = ["F32", "F16", "BF16", "Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
         "Q6_K", "IQ4_NL", "IQ4_XS"]
QUANTIZABLE = {"F32", "F16", "BF16", "Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1"}


def finite_f16_bits(rng, n):
    """Random float16 bit patterns without NaN / Inf (subnormals, zeros, negatives included)."""
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
    bad = (bits & 0x7C00) == 0x7C00
    while bad.any():
        bits[bad] = rng.integers(0, 1 << 16, size=int(bad.sum()), dtype=np.uint32).astype(np.uint16)
        bad = (bits & 0x7C00) == 0x7C00
    return bits


def raw_case(rng, name, rows, cols):
    qtype = T[name]
    block, size = GGML_QUANT_SIZES[qtype]
    n_blocks = rows * cols // block
    if name == "F16":
        blocks = finite_f16_bits(rng, rows * cols).view(np.uint8)
    else:
        blocks = rng.integers(0, 256, size=n_blocks * size, dtype=np.uint32).astype(np.uint8)
    blocks = blocks.reshape(n_blocks, size)
    for off in F16_FIELDS.get(name, []):
        blocks[:, off:off + 2] = finite_f16_bits(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    blocks = blocks.reshape(rows, cols // block * size)
    expected = gguf.quants.dequantize(blocks, qtype).astype(np.float32)
    assert expected.shape == (rows, cols), (name, expected.shape)
    return blocks, expected


def quantized_case(rng, name, rows, cols):
    qtype = T[name]
    # Mixed magnitudes per row, a few exact zeros and a constant block (d == 0 paths).
    data = rng.standard_normal((rows, cols)).astype(np.float32) * np.exp(
        rng.uniform(-8, 4, size=(rows, 1))).astype(np.float32)
    data[0, :32] = 0.0
    data[1, :32] = 0.25
    blocks = gguf.quants.quantize(data, qtype)
    blocks = np.ascontiguousarray(blocks).view(np.uint8).reshape(rows, -1)
    expected = gguf.quants.dequantize(blocks, qtype).astype(np.float32)
    assert expected.shape == (rows, cols), (name, expected.shape)
    return blocks, expected


def fp8_case(rng, fmt):
    import torch
    torch.set_num_threads(1)
    dtype = {"e4m3fn": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}[fmt]
    w = np.concatenate([np.arange(256, dtype=np.uint8),
                        rng.integers(0, 256, size=64 * 64 - 256, dtype=np.uint32).astype(np.uint8)])
    w = w.reshape(64, 64)
    scale = np.float32(rng.uniform(1e-4, 2e-2))
    wt = torch.from_numpy(w.copy()).view(dtype)
    plain = wt.to(torch.float32)
    expected = plain * torch.tensor(scale, dtype=torch.float32)  # ComfyUI: float(w) * scale
    return w, np.array(scale, dtype=np.float32), expected.numpy(), plain.numpy()


def save_safetensors(path, tensors):
    header, chunks, off = {}, [], 0
    dt = {np.dtype(np.uint8): "U8", np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        b = arr.tobytes()
        header[name] = {"dtype": dt[arr.dtype], "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        chunks.append(b)
        off += len(b)
    h = json.dumps(header).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--rows", type=int, default=24)
    ap.add_argument("--cols", type=int, default=512)  # a multiple of every block size (32, 256)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    out = {}
    for name in TYPES:
        blocks, expected = raw_case(rng, name, args.rows, args.cols)
        out[f"{name}.raw.blocks"] = blocks.reshape(-1)
        out[f"{name}.raw.expected"] = expected
        out[f"{name}.shape"] = np.array([args.rows, args.cols], dtype=np.int64)
        if name in QUANTIZABLE:
            blocks, expected = quantized_case(rng, name, args.rows, args.cols)
            out[f"{name}.q.blocks"] = blocks.reshape(-1)
            out[f"{name}.q.expected"] = expected
    for fmt in ("e4m3fn", "e5m2"):
        w, scale, expected, plain = fp8_case(rng, fmt)
        out[f"fp8_{fmt}.weight"] = w
        out[f"fp8_{fmt}.scale"] = scale
        out[f"fp8_{fmt}.expected"] = expected
        out[f"fp8_{fmt}.plain"] = plain
    save_safetensors(args.out, out)
    from importlib.metadata import version
    print(f"wrote {len(out)} tensors to {args.out} (seed {args.seed}, gguf {version('gguf')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
