#!/usr/bin/env python3
"""A Qwen-Image-2.1 diffusers folder with the released tensor shapes and no weights (issue #15): every
safetensors file has the real header and a hole for its data (the file is truncated to size, not written),
so `qwen-image plan` reads the real sizes without the 30 GB download. Standard library only. The shapes are
tests/plan/real_sizes21.h's (transformer: Transformer21Config's defaults, 7,115,124,736 parameters;
Qwen3-VL-8B with its lm_head, which the planner leaves out, and its vision tower).

    python3 tests/plan/make_qwen21_header_only.py OUT_DIR
"""
import json
import os
import struct
import sys


def header_only(path, shapes):
    header, offset = {}, 0
    for name, shape in shapes:
        n = 2  # BF16
        for d in shape:
            n *= d
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
    os.truncate(path, 8 + len(text) + offset)


def write_folder(root, files):
    """A diffusers folder under `root`: each relative path gets a JSON file (a dict) or a header-only
    safetensors file (a list of (name, shape)); shared by make_qwen_image_header_only.py."""
    for rel, content in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(content, dict):
            with open(path, "w", encoding="utf-8") as f:
                json.dump(content, f, indent=2)
        else:
            header_only(path, content)


def transformer_shapes():
    d, out = 4096, []

    def lin(name, i, o):
        out.append((name + ".weight", [o, i]))

    lin("img_in", 64, d)
    out.append(("txt_in.text_norm.weight", [d]))
    lin("txt_in.in_layer", d, d)
    lin("txt_in.out_layer", d, d)
    lin("time_text_embed.timestep_embedder.linear_1", 256, d)
    lin("time_text_embed.timestep_embedder.linear_2", d, d)
    lin("modulation.1", d, 4 * d)
    for b in range(32):
        p = f"transformer_blocks.{b}."
        for n in ("to_q", "to_k", "to_v", "to_out.0"):
            lin(p + "attn." + n, d, d)
        out.append((p + "attn.norm_q.weight", [128]))
        out.append((p + "attn.norm_k.weight", [128]))
        lin(p + "img_mlp.proj", d, 3 * d)
        lin(p + "img_mlp.gate_layer", d, 3 * d)
        lin(p + "img_mlp.out", 3 * d, d)
    lin("norm_out.linear", d, d)
    lin("proj_out", d, 64)
    return out


def text_encoder_shapes():
    h, kv, inter, vocab, out = 4096, 1024, 12288, 151936, []

    def lin(name, i, o, bias):
        out.append((name + ".weight", [o, i]))
        if bias:
            out.append((name + ".bias", [o]))

    out.append(("model.language_model.embed_tokens.weight", [vocab, h]))
    for layer in range(36):
        p = f"model.language_model.layers.{layer}."
        lin(p + "self_attn.q_proj", h, h, False)
        lin(p + "self_attn.k_proj", h, kv, False)
        lin(p + "self_attn.v_proj", h, kv, False)
        lin(p + "self_attn.o_proj", h, h, False)
        out.append((p + "self_attn.q_norm.weight", [128]))
        out.append((p + "self_attn.k_norm.weight", [128]))
        lin(p + "mlp.gate_proj", h, inter, False)
        lin(p + "mlp.up_proj", h, inter, False)
        lin(p + "mlp.down_proj", inter, h, False)
        out.append((p + "input_layernorm.weight", [h]))
        out.append((p + "post_attention_layernorm.weight", [h]))
    out.append(("model.language_model.norm.weight", [h]))
    v, vi = 1152, 4304
    out.append(("model.visual.patch_embed.proj.weight", [v, 3, 2, 16, 16]))
    out.append(("model.visual.patch_embed.proj.bias", [v]))
    out.append(("model.visual.pos_embed.weight", [2304, v]))
    for b in range(27):
        p = f"model.visual.blocks.{b}."
        for n in ("norm1", "norm2"):
            out.append((p + n + ".weight", [v]))
            out.append((p + n + ".bias", [v]))
        lin(p + "attn.qkv", v, 3 * v, True)
        lin(p + "attn.proj", v, v, True)
        lin(p + "mlp.linear_fc1", v, vi, True)
        lin(p + "mlp.linear_fc2", vi, v, True)
    for m in ("merger", "deepstack_merger_list.0", "deepstack_merger_list.1", "deepstack_merger_list.2"):
        # Qwen3VLVisionPatchMerger: the main merger normalises before the 2x2 shuffle (hidden_size),
        # the DeepStack mergers after it (use_postshuffle_norm: 4 * hidden_size).
        n = v if m == "merger" else 4 * v
        out.append((f"model.visual.{m}.norm.weight", [n]))
        out.append((f"model.visual.{m}.norm.bias", [n]))
        lin(f"model.visual.{m}.linear_fc1", 4 * v, 4 * v, True)
        lin(f"model.visual.{m}.linear_fc2", 4 * v, h, True)
    out.append(("lm_head.weight", [vocab, h]))
    return out


def main():
    write_folder(sys.argv[1], {
        "model_index.json": {
            "_class_name": "QwenImage21Pipeline",
            "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
            "text_encoder": ["transformers", "Qwen3VLForConditionalGeneration"],
            "transformer": ["diffusers", "QwenImage21Transformer2DModel"],
            "vae": ["diffusers", "AutoencoderKLQwenImage21"]},
        "transformer/config.json": {
            "_class_name": "QwenImage21Transformer2DModel", "num_layers": 32, "attention_head_dim": 128,
            "num_attention_heads": 32, "context_in_dim": 4096, "in_channels": 64, "mlp_ratio": 3,
            "patch_size": 1},
        "transformer/diffusion_pytorch_model.safetensors": transformer_shapes(),
        "text_encoder/config.json": {
            "architectures": ["Qwen3VLForConditionalGeneration"], "model_type": "qwen3_vl",
            "text_config": {"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
                            "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
                            "vocab_size": 151936},
            "vision_config": {"depth": 27, "hidden_size": 1152, "out_hidden_size": 4096}},
        "text_encoder/model.safetensors": text_encoder_shapes(),
        "vae/config.json": {"_class_name": "AutoencoderKLQwenImage21"},
        "vae/diffusion_pytorch_model.safetensors": [("encoder.conv_in.weight", [96, 4, 3, 3, 3]),
                                                    ("decoder.conv_out.weight", [4, 96, 3, 3, 3])],
        "scheduler/scheduler_config.json": {"_class_name": "FlowMatchEulerDiscreteScheduler"}})


if __name__ == "__main__":
    main()
