#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_gguf.cpp (fuzz/corpus/gguf/) with gguf-py's GGUFWriter.

    .venv/bin/python fuzz/make_gguf_seeds.py fuzz/corpus/gguf
"""
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as T, GGUFWriter, quants


def write(path, tensors=(), kv=None, alignment=None):
    w = GGUFWriter(path, arch="qwen_image")
    if alignment:
        w.data_alignment = alignment
        w.add_uint32("general.alignment", alignment)
    for key, fn, value in kv or []:
        getattr(w, fn)(key, value)
    for name, arr, qtype in tensors:
        w.add_tensor(name, arr, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    f = rng.standard_normal((2, 64)).astype(np.float32)
    write(os.path.join(out, "tiny.gguf"),
          [("w", quants.quantize(f, T.Q8_0), T.Q8_0), ("b", f[0, :2].copy(), None)])
    write(os.path.join(out, "meta.gguf"), [("x", f[:, :32].copy(), None)],
          kv=[("u8", "add_uint8", 7), ("i8", "add_int8", -7), ("u16", "add_uint16", 700),
              ("i16", "add_int16", -700), ("u32", "add_uint32", 70000), ("i32", "add_int32", -70000),
              ("f32", "add_float32", 1.5), ("bool", "add_bool", True), ("str", "add_string", "text"),
              ("u64", "add_uint64", 1 << 40), ("i64", "add_int64", -(1 << 40)),
              ("f64", "add_float64", 2.5), ("ints", "add_array", [1, 2, 3]),
              ("strs", "add_array", ["a", "bc"]), ("nested", "add_array", [[1, 2], ["x"]])],
          alignment=64)
    k = rng.integers(0, 256, size=(1, 144), dtype=np.uint8)
    k[:, 0:4] = np.array([0x00, 0x3c, 0x00, 0x38], dtype=np.uint8)  # d = 1, dmin = 0.5
    six = rng.integers(0, 256, size=(1, 210), dtype=np.uint8)
    six[:, 208:210] = np.array([0x00, 0x3c], dtype=np.uint8)
    xs = rng.integers(0, 256, size=(1, 136), dtype=np.uint8)
    xs[:, 0:2] = np.array([0x00, 0x3c], dtype=np.uint8)
    write(os.path.join(out, "kquant.gguf"),
          [("k", k, T.Q4_K), ("six", six, T.Q6_K), ("xs", xs, T.IQ4_XS),
           ("h", f[:, :16].astype(np.float16), None)],
          kv=[("comfy.gguf.orig_shape.k", "add_array", [2, 2, 64])])
    write(os.path.join(out, "empty.gguf"))


if __name__ == "__main__":
    main(sys.argv[1])
