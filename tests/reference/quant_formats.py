"""Quantised single files of a random tiny model, for the `formats` part of gen_random.py (issue #12): the
transformer as city96 / ComfyUI-GGUF GGUF files and as ComfyUI fp8 scaled safetensors, the text encoder as a
llama.cpp-named GGUF and as a Comfy fp8 scaled file; each returned with the float32 weights the reference code
dequantises it to (layouts: tests/fixtures/format-samples/README.md).

Dequantisation is the reference's: every GGUF file is read back with gguf-py's GGUFReader and each tensor
dequantised by `gguf.quants.dequantize` (float32); fp8 weights by ComfyUI's rule `float(w) * scale`
(comfy/ops.py scaled_fp8_ops, comfy/quant_ops.py TensorCoreFP8Layout.dequantize) in torch float32.

Quantisation: gguf-py's `gguf.quants.quantize` where it can (F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1); gguf-py
0.19 cannot quantise K-quants, so Q4_K / Q5_K / Q6_K blocks are packed here by a plain round-to-nearest
min/max quantiser (the inverse of gguf-py's Q4_K / Q5_K / Q6_K dequantize_blocks). Its bytes are valid blocks
whatever their quality; `quantize_k` checks that the blocks dequantise close to the input (a packing error
would not).
"""
import json

import numpy as np
import torch

import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

QK_K = 256
FP8_MAX = 448.0  # largest finite float8_e4m3fn


# ---------------------------------------------------------------------------------------------- K-quants

def _f16(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16)


def _pack_q4k_scales(sc, mn):
    """(n, 8) 6-bit scales and mins -> (n, 12) bytes, the inverse of gguf-py Q4_K.get_scale_min."""
    sc = sc.astype(np.uint8)
    mn = mn.astype(np.uint8)
    d = (sc[:, :4] & 0x3F) | ((sc[:, 4:] & 0x30) << 2)
    m = (mn[:, :4] & 0x3F) | ((mn[:, 4:] & 0x30) << 2)
    m_d = (sc[:, 4:] & 0x0F) | ((mn[:, 4:] & 0x0F) << 4)
    return np.concatenate([d, m, m_d], axis=1).astype(np.uint8)


def _affine_groups(x, levels):
    """x (n, 8, 32) -> float16 d, dmin, 6-bit sc, mn (n, 8) and q (n, 8, 32) in [0, levels] such that
    value = d * sc * q - dmin * mn (round to nearest, min / max per group of 32)."""
    lo = np.minimum(x.min(axis=2), 0.0)
    hi = np.maximum(x.max(axis=2), 0.0)
    scale = (hi - lo) / levels  # per group
    mins = -lo
    d = _f16(scale.max(axis=1) / 63.0)
    dmin = _f16(mins.max(axis=1) / 63.0)
    df, dminf = d.astype(np.float32)[:, None], dmin.astype(np.float32)[:, None]
    sc = np.where(df > 0, np.clip(np.round(scale / np.where(df > 0, df, 1)), 0, 63), 0)
    mn = np.where(dminf > 0, np.clip(np.round(mins / np.where(dminf > 0, dminf, 1)), 0, 63), 0)
    step = (df * sc)[:, :, None]
    off = (dminf * mn)[:, :, None]
    q = np.where(step > 0, np.round((x + off) / np.where(step > 0, step, 1)), 0)
    q = np.clip(q, 0, levels).astype(np.uint8)
    return d, dmin, sc.astype(np.uint8), mn.astype(np.uint8), q


def _q4_k(x):
    n = x.shape[0]
    d, dmin, sc, mn, q = _affine_groups(x.reshape(n, 8, 32), 15)
    qs = (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(n, 128)
    return np.concatenate([d.view(np.uint8).reshape(n, 2), dmin.view(np.uint8).reshape(n, 2),
                           _pack_q4k_scales(sc, mn), qs], axis=1)


def _q5_k(x):
    n = x.shape[0]
    d, dmin, sc, mn, q = _affine_groups(x.reshape(n, 8, 32), 31)
    lo = q & 0x0F
    qs = (lo[:, 0::2, :] | (lo[:, 1::2, :] << 4)).reshape(n, 128)
    hb = (q >> 4) & 1  # (n, 8, 32): bit g of qh[i]
    qh = np.zeros((n, 32), np.uint8)
    for g in range(8):
        qh |= (hb[:, g, :] << g).astype(np.uint8)
    return np.concatenate([d.view(np.uint8).reshape(n, 2), dmin.view(np.uint8).reshape(n, 2),
                           _pack_q4k_scales(sc, mn), qh, qs], axis=1)


def _q6_k(x):
    n = x.shape[0]
    g = x.reshape(n, 16, 16)
    amax = np.abs(g).max(axis=2)
    scale = amax / 31.0
    d = _f16(scale.max(axis=1) / 127.0)
    df = d.astype(np.float32)[:, None]
    sc = np.where(df > 0, np.clip(np.round(scale / np.where(df > 0, df, 1)), -128, 127), 0)
    step = (df * sc)[:, :, None]
    q = np.where(step > 0, np.round(g / np.where(step > 0, step, 1)), 0)
    q = (np.clip(q, -32, 31) + 32).astype(np.uint8).reshape(n, 256)
    # value e = 128 h + r: low nibble r // 64 of ql[64 h + r % 64], high 2 bits at bits 2 (r // 32) of
    # qh[32 h + r % 32] (gguf-py Q6_K.dequantize_blocks).
    q = q.reshape(n, 2, 128)
    lo, hi = q & 0x0F, q >> 4
    ql = (lo[:, :, :64] | (lo[:, :, 64:] << 4)).reshape(n, 128)
    hi = hi.reshape(n, 2, 4, 32)
    qh = (hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)).reshape(n, 64)
    return np.concatenate([ql, qh, sc.astype(np.int8).view(np.uint8), d.view(np.uint8).reshape(n, 2)], axis=1)


def _q2_3_layout(q):
    """(n, 256) 2-bit values -> (n, 64) bytes: element 128 h + 32 s + j at bits 2 s of byte 32 h + j (gguf-py
    Q2_K / Q3_K dequantize_blocks' qs layout)."""
    n = q.shape[0]
    q = q.reshape(n, 2, 4, 32).astype(np.uint8)
    out = q[:, :, 0] | (q[:, :, 1] << 2) | (q[:, :, 2] << 4) | (q[:, :, 3] << 6)
    return out.reshape(n, 64)


def _q2_k(x):
    n = x.shape[0]
    g = x.reshape(n, 16, 16)
    lo = np.minimum(g.min(axis=2), 0.0)
    hi = np.maximum(g.max(axis=2), 0.0)
    scale, mins = (hi - lo) / 3.0, -lo
    d = _f16(scale.max(axis=1) / 15.0)
    dmin = _f16(mins.max(axis=1) / 15.0)
    df, dminf = d.astype(np.float32)[:, None], dmin.astype(np.float32)[:, None]
    sc = np.where(df > 0, np.clip(np.round(scale / np.where(df > 0, df, 1)), 0, 15), 0)
    mn = np.where(dminf > 0, np.clip(np.round(mins / np.where(dminf > 0, dminf, 1)), 0, 15), 0)
    step = (df * sc)[:, :, None]
    q = np.where(step > 0, np.round((g + (dminf * mn)[:, :, None]) / np.where(step > 0, step, 1)), 0)
    q = np.clip(q, 0, 3).astype(np.uint8).reshape(n, 256)
    scales = (sc.astype(np.uint8) | (mn.astype(np.uint8) << 4)).astype(np.uint8)
    return np.concatenate([scales, _q2_3_layout(q), d.view(np.uint8).reshape(n, 2),
                           dmin.view(np.uint8).reshape(n, 2)], axis=1)


def _q3_k(x):
    n = x.shape[0]
    g = x.reshape(n, 16, 16)
    sub = _signed_absmax(g)[..., 0] / -4.0  # the extreme value maps to q = -4
    d = _f16(np.abs(sub).max(axis=1) / 31.0)
    df = d.astype(np.float32)[:, None]
    sc = np.where(df > 0, np.clip(np.round(sub / np.where(df > 0, df, 1)), -32, 31), 0).astype(np.int32)
    step = (df * sc)[:, :, None]
    q = np.where(step != 0, np.round(g / np.where(step != 0, step, 1)), 0)
    q = np.clip(q, -4, 3).astype(np.int32).reshape(n, 256)
    hbit = (q >= 0).astype(np.uint8)  # gguf-py: q = ql - 4 (1 - hbit)
    ql = (q + 4 * (1 - hbit)).astype(np.uint8)
    hb = hbit.reshape(n, 8, 32)  # element 32 b + j: bit b of hmask[j]
    hmask = np.zeros((n, 32), np.uint8)
    for b in range(8):
        hmask |= (hb[:, b, :] << b).astype(np.uint8)
    u = (sc + 32).astype(np.uint8)  # (n, 16) 6-bit
    low = (u[:, :8] & 0x0F) | ((u[:, 8:] & 0x0F) << 4)  # scale i < 8: low nibble of byte i, else high of i - 8
    hi2 = (u >> 4) & 3  # scale 4 s + k: bits 2 s of byte 8 + k
    high = hi2[:, 0:4] | (hi2[:, 4:8] << 2) | (hi2[:, 8:12] << 4) | (hi2[:, 12:16] << 6)
    return np.concatenate([hmask, _q2_3_layout(ql), low.astype(np.uint8), high.astype(np.uint8),
                           d.view(np.uint8).reshape(n, 2)], axis=1)


# IQ4_NL / IQ4_XS: 4-bit indices into llama.cpp's non-linear table kvalues_iq4nl (gguf-py IQ4_NL.kvalues),
# round to the nearest table entry; the inverse of gguf-py's IQ4_NL / IQ4_XS dequantize_blocks.
_IQ4 = np.array(gguf.quants.IQ4_NL.kvalues, dtype=np.float32)


def _iq4_indices(x, step):
    """x (..., 32), step (..., 1) -> uint8 indices of the nearest kvalue of x / step."""
    v = np.where(step != 0, x / np.where(step != 0, step, 1), 0)
    return np.abs(v[..., None] - _IQ4).argmin(axis=-1).astype(np.uint8)


def _pack_nibbles(q):
    """(..., 32) indices -> (..., 16) bytes: element j in the low nibble of byte j, j + 16 in the high one."""
    return (q[..., :16] | (q[..., 16:] << 4)).astype(np.uint8)


def _signed_absmax(x):
    """The value of largest magnitude per group (last axis), sign kept (llama.cpp's quantize_row_iq4_nl_impl
    maps it to kvalues[0] = -127)."""
    return np.take_along_axis(x, np.abs(x).argmax(axis=-1)[..., None], axis=-1)


def _iq4_nl(x):
    n = x.shape[0]
    g = x.reshape(n, 32)
    d = _f16(_signed_absmax(g) / -127.0)  # (n, 1)
    q = _iq4_indices(g, d.astype(np.float32))
    return np.concatenate([d.view(np.uint8).reshape(n, 2), _pack_nibbles(q)], axis=1)


def _iq4_xs(x):
    n = x.shape[0]
    g = x.reshape(n, 8, 32)
    sub = _signed_absmax(g)[..., 0] / -127.0  # (n, 8) ideal sub-block steps
    d = _f16(np.abs(sub).max(axis=1) / 31.0)  # scales are ls - 32 in [-32, 31]
    df = d.astype(np.float32)[:, None]
    ls = np.where(df > 0, np.clip(np.round(sub / np.where(df > 0, df, 1)), -32, 31), 0).astype(np.int32) + 32
    q = _iq4_indices(g, (df * (ls - 32))[:, :, None])
    scales_l = ((ls[:, 0::2] & 0x0F) | ((ls[:, 1::2] & 0x0F) << 4)).astype(np.uint8)  # (n, 4)
    scales_h = np.zeros(n, np.uint16)
    for ib in range(8):
        scales_h |= ((ls[:, ib] >> 4) & 3).astype(np.uint16) << (2 * ib)
    return np.concatenate([d.view(np.uint8).reshape(n, 2), scales_h.view(np.uint8).reshape(n, 2), scales_l,
                           _pack_nibbles(q).reshape(n, 128)], axis=1)


_K_PACKERS = {"Q2_K": _q2_k, "Q3_K": _q3_k, "Q4_K": _q4_k, "Q5_K": _q5_k, "Q6_K": _q6_k, "IQ4_NL": _iq4_nl, "IQ4_XS": _iq4_xs}


def quantize(x, name):
    """float32 (rows, cols) -> uint8 blocks (rows, bytes per row) of GGML type `name`."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows, cols = x.shape
    if name in _K_PACKERS:
        blocks = _K_PACKERS[name](x.reshape(-1, 32 if name == "IQ4_NL" else QK_K)).astype(np.uint8)
        out = blocks.reshape(rows, -1)
        back = gguf.quants.dequantize(out, T[name])
        # A packing error gives garbage; round-to-nearest keeps every value within a few steps.
        err = np.abs(back - x).max() / max(np.abs(x).max(), 1e-12)
        assert err < {"Q2_K": 0.6, "Q3_K": 0.35, "Q4_K": 0.2, "Q5_K": 0.1, "Q6_K": 0.06, "IQ4_NL": 0.2, "IQ4_XS": 0.2}[name], (name, err)
        return out
    out = gguf.quants.quantize(x, T[name])
    return np.ascontiguousarray(out).view(np.uint8).reshape(rows, -1)


# ---------------------------------------------------------------------------------------------- GGUF

def transformer_gguf_type(key, shape, main, layer0=None):
    """city96's per-tensor choice (tools/convert.py + lcpp.patch@auto_convert, summarised in
    tests/fixtures/format-samples/README.md): 1-D and <= 1024-element tensors F32; img_in, txt_in,
    time_text_embed.*, norm_out.linear, proj_out matrices BF16; transformer-block matrices the file's type,
    MLP down-projections one step up (Q4_0 -> Q4_1, Q4_K -> Q6_K), the attention matrices of block 0 of K-quant
    files `layer0` (lcpp.patch l.234-253 raises blocks 0 and 59); a row that is not a multiple of the block size falls back to F16."""
    numel = int(np.prod(shape))
    if len(shape) == 1 or numel <= 1024:
        return "F32"
    if not key.startswith("transformer_blocks."):
        return "BF16"
    t = main
    if key.endswith(("img_mlp.net.2.weight", "txt_mlp.net.2.weight")):
        t = {"Q4_0": "Q4_1", "Q5_0": "Q5_1", "Q4_K": "Q6_K", "Q5_K": "Q6_K", "IQ4_XS": "IQ4_NL",
             "Q2_K": "Q3_K"}.get(main, main)
    elif layer0 and key.startswith("transformer_blocks.0.attn."):
        t = layer0
    block = GGML_QUANT_SIZES[T[t]][0]
    return t if shape[-1] % block == 0 else "F16"


def text_encoder_gguf_type(key, shape, main):
    """llama.cpp's choice for a text-encoder file (llama-quant.cpp): norms and other 1-D tensors F32, every
    matrix (token_embd included) the file's type, F16 where a row does not fit the block size."""
    if len(shape) == 1:
        return "F32"
    block = GGML_QUANT_SIZES[T[main]][0]
    return main if shape[-1] % block == 0 else "F16"


LLAMA_NAMES = [("model.language_model.embed_tokens.", "token_embd."), ("model.language_model.norm.", "output_norm."),
               ("lm_head.", "output.")]
LLAMA_BLOCK = [("input_layernorm.", "attn_norm."), ("self_attn.q_proj.", "attn_q."), ("self_attn.k_proj.", "attn_k."),
               ("self_attn.v_proj.", "attn_v."), ("self_attn.o_proj.", "attn_output."), ("mlp.up_proj.", "ffn_up."),
               ("mlp.down_proj.", "ffn_down."), ("mlp.gate_proj.", "ffn_gate."),
               ("post_attention_layernorm.", "ffn_norm.")]


def llama_name(key):
    """transformers name of the language model (transformers >= 4.52 layout) -> llama.cpp GGUF name
    (convert_hf_to_gguf.py's Qwen2VL tensor map); None for the vision tower (llama.cpp writes it into a
    separate mmproj file)."""
    for a, b in LLAMA_NAMES:
        if key.startswith(a):
            return b + key[len(a):]
    p = "model.language_model.layers."
    if key.startswith(p):
        n, rest = key[len(p):].split(".", 1)
        for a, b in LLAMA_BLOCK:
            if rest.startswith(a):
                return f"blk.{n}.{b}{rest[len(a):]}"
    if key.startswith("model.visual."):
        return None
    raise ValueError(f"no llama.cpp name for {key}")


def write_gguf(path, arch, tensors, file_type):
    """tensors: [(gguf name, float32 array in torch shape, ggml type name)]. Written by gguf-py's GGUFWriter
    (ne = reversed torch shape, ComfyUI-GGUF loader.py reads it back reversed)."""
    w = gguf.GGUFWriter(path, arch=arch)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_file_type(file_type)
    for name, arr, t in tensors:
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if t == "F32":
            w.add_tensor(name, arr)
        else:
            flat = arr.reshape(-1, arr.shape[-1])
            blocks = quantize(flat, t)
            blocks = blocks.reshape(*arr.shape[:-1], blocks.shape[-1])
            w.add_tensor(name, blocks, raw_dtype=T[t])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def read_gguf_dequantized(path):
    """{stored name: float32 torch tensor in the torch shape}: gguf-py's reader + gguf.quants.dequantize."""
    r = gguf.GGUFReader(path)
    out, types = {}, {}
    for t in r.tensors:
        shape = [int(s) for s in reversed(t.shape.tolist())]
        v = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        out[t.name] = torch.from_numpy(np.ascontiguousarray(v))
        types[t.name] = t.tensor_type.name
    return out, types


FILE_TYPES = {"Q8_0": 7, "Q4_0": 2, "Q4_1": 3, "Q5_0": 8, "Q5_1": 9, "Q4_K": 15, "Q5_K": 17, "Q6_K": 18, "IQ4_NL": 25, "Q2_K": 10, "Q3_K": 11,
              "IQ4_XS": 30}


def transformer_gguf(sd, path, main, layer0=None):
    """The transformer state dict (float32) as a city96 GGUF of type `main`; returns (dequantised state dict,
    {ggml type: tensor count})."""
    tensors = [(k, v.float().numpy(), transformer_gguf_type(k, list(v.shape), main, layer0)) for k, v in sd.items()]
    write_gguf(path, "qwen_image", tensors, FILE_TYPES[main])
    deq, types = read_gguf_dequantized(path)
    assert set(deq) == set(sd), "GGUF round trip lost tensors"
    return deq, count(types.values())


def text_encoder_gguf(sd, path, main):
    """The language model of the text encoder as a llama.cpp-named GGUF (arch qwen2vl; the vision tower is not
    in it, as llama.cpp puts it into an mmproj file); returns (dequantised state dict on the transformers names
    with the vision tower's weights unchanged, type counts)."""
    tensors, names = [], {}
    for k, v in sd.items():
        n = llama_name(k)
        if n is None:
            continue
        names[n] = k
        tensors.append((n, v.float().numpy(), text_encoder_gguf_type(n, list(v.shape), main)))
    write_gguf(path, "qwen2vl", tensors, FILE_TYPES[main])
    deq, types = read_gguf_dequantized(path)
    out = {k: v.float() for k, v in sd.items()}
    for n, v in deq.items():
        out[names[n]] = v
    return out, count(types.values())


# ---------------------------------------------------------------------------------------------- fp8

def fp8_quantize(w):
    """(float8_e4m3fn weight, float32 scale) with scale = amax / 448 (comfy/quant_ops.py), and ComfyUI's
    dequantisation float(w8) * scale in float32."""
    w = w.float()
    scale = (w.abs().max() / FP8_MAX).clamp(min=1e-12).to(torch.float32)
    w8 = (w / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return w8, scale, w8.to(torch.float32) * scale


def fp8_scaled(sd, path, scheme, quantized, prefix="", header_metadata=False, scale_shape=()):
    """The state dict as a ComfyUI fp8 scaled safetensors file; `quantized(key)` picks the Linear weights
    stored as float8_e4m3fn, the rest is BF16 (as ComfyUI's files).
    scheme "legacy": `scaled_fp8` marker, `<layer>.scale_weight` (shape `scale_shape`);
    scheme "comfy_quant": `<layer>.weight_scale`, `<layer>.input_scale` and the layer's JSON, as
    `<layer>.comfy_quant` U8 tensors or (header_metadata) the header's `_quantization_metadata`.
    Returns (dequantised state dict, {storage: count})."""
    from safetensors.torch import save_file

    out, deq, layers, counts = {}, {}, {}, {}
    for k, v in sd.items():
        if quantized(k):
            w8, scale, d = fp8_quantize(v)
            layer = k[: -len(".weight")]
            out[prefix + k] = w8
            s = scale.reshape(scale_shape)
            if scheme == "legacy":
                out[prefix + layer + ".scale_weight"] = s
            else:
                out[prefix + layer + ".weight_scale"] = s
                out[prefix + layer + ".input_scale"] = torch.ones(scale_shape, dtype=torch.float32)
                conf = {"format": "float8_e4m3fn"}
                if header_metadata:
                    layers[prefix + layer] = conf
                else:
                    out[prefix + layer + ".comfy_quant"] = torch.tensor(list(json.dumps(conf).encode()),
                                                                        dtype=torch.uint8)
            deq[k] = d
            counts["F8_E4M3*scale"] = counts.get("F8_E4M3*scale", 0) + 1
        else:
            b = v.to(torch.bfloat16)
            out[prefix + k] = b
            deq[k] = b.float()
            counts["BF16"] = counts.get("BF16", 0) + 1
    if scheme == "legacy":
        out[prefix + "scaled_fp8"] = torch.zeros(2, dtype=torch.float8_e4m3fn)  # 2 elements: full-precision mm
    meta = {"format": "pt"}
    if layers:
        meta["_quantization_metadata"] = json.dumps({"format_version": "1.0", "layers": layers})
    save_file({k: v.contiguous() for k, v in out.items()}, path, metadata=meta)
    return deq, counts


def count(values):
    out = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def fp8_plain(sd, path, dtype, prefix="model.diffusion_model."):
    """The state dict as a plain fp8 ComfyUI single file (no scales: ComfyUI's fp8_e4m3fn / fp8_e5m2 repacks):
    2-D weights `dtype`, the rest BF16, keys under `prefix`. Returns (dequantised state dict: float(w), counts)."""
    from safetensors.torch import save_file

    out, deq, counts = {}, {}, {}
    for k, v in sd.items():
        t = dtype if (k.endswith(".weight") and v.dim() == 2) else torch.bfloat16
        w = v.to(t)
        out[prefix + k] = w
        deq[k] = w.to(torch.float32)
        name = {torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2", torch.bfloat16: "BF16"}[t]
        counts[name] = counts.get(name, 0) + 1
    save_file({k: v.contiguous() for k, v in out.items()}, path, metadata={"format": "pt"})
    return deq, counts


def half_single_file(sd, path, dtype, prefix):
    """A ComfyUI bf16 / fp16 single file (`prefix` "model.diffusion_model." or none)."""
    from safetensors.torch import save_file

    out = {prefix + k: v.to(dtype).contiguous() for k, v in sd.items()}
    save_file(out, path, metadata={"format": "pt"})
    name = "BF16" if dtype == torch.bfloat16 else "F16"
    return {k: v.to(dtype).float() for k, v in sd.items()}, {name: len(out)}
