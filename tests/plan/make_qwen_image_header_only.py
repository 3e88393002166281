#!/usr/bin/env python3
"""A Qwen-Image (20B) diffusers folder with the released tensor shapes and no weights: every safetensors file
has the real header and a hole for its data (make_qwen21_header_only.py's write_folder), so `qwen-image plan`
reads the real sizes without the 57 GB download. Standard library only. The shapes are tests/plan/real_sizes.h's
(QwenImageTransformer2DModel, 60 blocks, 20,430,401,088 parameters; Qwen2.5-VL-7B with its lm_head, which the
planner leaves out, without the vision tower, as a text-to-image model loads it; the VAE's 126,892,531
parameters as two tensors).

    python3 tests/plan/make_qwen_image_header_only.py OUT_DIR
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_qwen21_header_only import write_folder  # noqa: E402


def transformer_shapes():
    d, out = 3072, []

    def lin(name, i, o):
        out.append((name + ".weight", [o, i]))
        out.append((name + ".bias", [o]))

    lin("img_in", 64, d)
    out.append(("txt_norm.weight", [3584]))
    lin("txt_in", 3584, d)
    lin("time_text_embed.timestep_embedder.linear_1", 256, d)
    lin("time_text_embed.timestep_embedder.linear_2", d, d)
    for b in range(60):
        p = f"transformer_blocks.{b}."
        lin(p + "img_mod.1", d, 6 * d)
        lin(p + "txt_mod.1", d, 6 * d)
        for n in ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0", "to_add_out"):
            lin(p + "attn." + n, d, d)
        for n in ("norm_q", "norm_k", "norm_added_q", "norm_added_k"):
            out.append((p + "attn." + n + ".weight", [128]))
        for m in ("img_mlp", "txt_mlp"):
            lin(p + m + ".net.0.proj", d, 4 * d)
            lin(p + m + ".net.2", 4 * d, d)
    lin("norm_out.linear", d, 2 * d)
    lin("proj_out", d, 64)
    return out


def text_encoder_shapes():
    h, kv, inter, vocab, out = 3584, 512, 18944, 152064, []

    def lin(name, i, o, bias):
        out.append((name + ".weight", [o, i]))
        if bias:
            out.append((name + ".bias", [o]))

    out.append(("model.language_model.embed_tokens.weight", [vocab, h]))
    for layer in range(28):
        p = f"model.language_model.layers.{layer}."
        lin(p + "self_attn.q_proj", h, h, True)
        lin(p + "self_attn.k_proj", h, kv, True)
        lin(p + "self_attn.v_proj", h, kv, True)
        lin(p + "self_attn.o_proj", h, h, False)
        lin(p + "mlp.gate_proj", h, inter, False)
        lin(p + "mlp.up_proj", h, inter, False)
        lin(p + "mlp.down_proj", inter, h, False)
        out.append((p + "input_layernorm.weight", [h]))
        out.append((p + "post_attention_layernorm.weight", [h]))
    out.append(("model.language_model.norm.weight", [h]))
    out.append(("lm_head.weight", [vocab, h]))
    return out


def main():
    write_folder(sys.argv[1], {
        "model_index.json": {
            "_class_name": "QwenImagePipeline",
            "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
            "text_encoder": ["transformers", "Qwen2_5_VLForConditionalGeneration"],
            "transformer": ["diffusers", "QwenImageTransformer2DModel"],
            "vae": ["diffusers", "AutoencoderKLQwenImage"]},
        "transformer/config.json": {
            "_class_name": "QwenImageTransformer2DModel", "num_layers": 60, "attention_head_dim": 128,
            "num_attention_heads": 24, "joint_attention_dim": 3584, "in_channels": 64, "out_channels": 16,
            "patch_size": 2, "axes_dims_rope": [16, 56, 56]},
        "transformer/diffusion_pytorch_model.safetensors": transformer_shapes(),
        "text_encoder/config.json": {
            "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
            "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
            "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064},
        "text_encoder/model.safetensors": text_encoder_shapes(),
        "vae/config.json": {"_class_name": "AutoencoderKLQwenImage"},
        "vae/diffusion_pytorch_model.safetensors": [("encoder.all", [54000000]),
                                                    ("decoder.all", [126892531 - 54000000])],
        "scheduler/scheduler_config.json": {"_class_name": "FlowMatchEulerDiscreteScheduler"}})


if __name__ == "__main__":
    main()
