#!/usr/bin/env python3
"""Qwen-Image-2.1's ComfyUI single-file layouts at the RELEASED shapes (issue #15), for
tests/reference/test_reference_qwen21_comfy_layouts.cpp. No released file can be downloaded here, so the key sets are
derived from ComfyUI's model definitions (Comfy-Org/ComfyUI master, read 2026-12-06) and written as header-only
safetensors (tests/plan/make_qwen21_header_only.py's technique: the real header, the data left as a hole).

    .venv/bin/python tests/reference/gen_qwen21_comfy_layouts.py OUT [--seed S] [--parts layouts] [--threads 1]

What each file mirrors:
  transformer   comfy/ldm/qwen_image21/model.py QwenImage21Transformer2DModel at its defaults (the released model:
                32 layers, 32 heads of 128, context_in_dim 4096, mlp_ratio 3, fused_mlp=True: one img_mlp.gate_up
                Linear [gate; up], no biases anywhere; TimestepProjEmbeddings' linear_1/2, TextProjection's
                text_norm/in_layer/out_layer, modulation = Sequential(SiLU, Linear) -> modulation.1, LastLayer
                norm_out.linear). Two files: as ComfyUI saves a diffusion model (`model.diffusion_model.` prefix)
                and bare (third-party inspections of the released qwen_image_2.1_bf16.safetensors report 265 bare
                keys with these names and shapes).
  vae           comfy/sd.py recognises Qwen-Image-2.1's VAE as the Wan 2.2 layout (`decoder.upsamples.0.upsamples.0.
                residual.2.weight`) whose head convolution has a temporal size of 1: the Wan 2.2 names of
                gen_qwen21.py's vae_file part (gen_qwen21.to_original_key), at diffusers' AutoencoderKLQwenImage21
                defaults (base_dim 96 ... z_dim 64, RGBA).
  text_encoder  comfy/text_encoders/qwen3vl.py Qwen3VL as `qwen3vl_8b`: `model.` = comfy's Llama2_ with
                Qwen3VL_8BConfig (36 layers, 4096, 32 / 8 heads of 128, q_norm / k_norm, 12288, lm_head=True, which
                Llama2_ holds itself: `model.lm_head.weight`), `visual.` = Qwen35VisionModel + deepstack_merger_list
                (QWEN3VL_VISION["qwen3vl_8b"]: hidden 1152, intermediate 4304, depth 27, DeepStack 8 / 16 / 24;
                16 heads, 2304 learned positions, patch 16, temporal 2, merge 2), as the Comfy-Org/Qwen3-VL
                text_encoders/qwen3vl_8b_*.safetensors files are loaded.
The expected canonical names and shapes come from the reference's own modules at the released configuration, built on
the meta device (no memory): diffusers QwenImage21Transformer2DModel() / AutoencoderKLQwenImage21() and transformers
Qwen3VLForConditionalGeneration (the Qwen/Qwen3-VL-8B-Instruct configuration); the transformer's img_mlp.proj +
gate_layer count as the one img_mlp.gate_up the project loads fused (Transformer21Config::fused_mlp).

OUT/qwen_image_2.1_bf16.safetensors, qwen_image_2.1_bare.safetensors, qwen_image_2.1_vae_bf16.safetensors,
OUT/qwen3vl_8b_bf16.safetensors   the header-only files (BF16)
OUT/expected.json                 {component: {"tensors": {canonical name: shape}, "config": reference config}}
OUT/tiny_transformer.safetensors, tiny_vae.safetensors, tiny_text_encoder.safetensors (+ _unknown): the same layouts
                                  at tiny widths with random data, and with one key the model does not have (a
                                  20B-family add_k_proj in a block; a Wan 2.1 flat-layout decoder key; comfy
                                  Llama2_'s merged_qkv qkv_proj, which Qwen3VL_8BConfig does not use).
OUT/case.json
"""
import argparse
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "plan"))
from gen_qwen21 import to_original_key  # noqa: E402
from make_qwen21_header_only import header_only  # noqa: E402


def fuse_mlp(sd):
    """diffusers' img_mlp.proj + img_mlp.gate_layer -> comfy's fused img_mlp.gate_up ([gate; up] by rows)."""
    out = {}
    for k, v in sd.items():
        if ".img_mlp.proj." in k:
            continue
        if ".img_mlp.gate_layer." in k:
            up = sd[k.replace(".gate_layer.", ".proj.")]
            out[k.replace(".gate_layer.", ".gate_up.")] = torch.cat([v, up], 0) if v.device.type != "meta" else \
                torch.empty((v.shape[0] + up.shape[0],) + tuple(v.shape[1:]), device="meta")
            continue
        out[k] = v
    return out


def vae_original(sd, num_res_blocks):
    """diffusers AutoencoderKLQwenImage21 state dict -> the Wan 2.2 names, convolutions as [out, in, 1, k, k]
    (gen_qwen21.py's vae_file part)."""
    import re

    out = {}
    for k, v in sd.items():
        if v.dim() == 4 and k.endswith(".weight") and not re.search(r"(to_qkv|proj|resample\.1)\.weight$", k):
            v = v.unsqueeze(2)
        out[to_original_key(k, num_res_blocks)] = v
    return out


def comfy_te_name(k):
    """transformers Qwen3VLForConditionalGeneration -> comfy's Qwen3VL module tree (model = Llama2_, visual)."""
    if k.startswith("model.language_model."):
        return "model." + k[len("model.language_model."):]
    if k.startswith("model.visual."):
        return "visual." + k[len("model.visual."):]
    if k == "lm_head.weight":
        return "model.lm_head.weight"
    raise AssertionError(k)


def qwen3vl_8b_config():
    """Qwen/Qwen3-VL-8B-Instruct's configuration (what comfy's Qwen3VL_8BConfig / QWEN3VL_VISION hold)."""
    from transformers import Qwen3VLConfig

    text = dict(hidden_size=4096, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                intermediate_size=12288, vocab_size=151936, rms_norm_eps=1e-6, attention_bias=False, hidden_act="silu",
                rope_parameters=dict(rope_type="default", rope_theta=5000000.0, mrope_interleaved=True,
                                     mrope_section=[24, 20, 20]))
    vision = dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, out_hidden_size=4096,
                  num_position_embeddings=2304, deepstack_visual_indexes=[8, 16, 24], patch_size=16,
                  temporal_patch_size=2, spatial_merge_size=2, in_channels=3, hidden_act="gelu_pytorch_tanh")
    return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False)


def shapes(sd):
    return [(k, list(v.shape)) for k, v in sd.items()]


def jsonable(cfg):
    cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    return json.loads(json.dumps({k: v for k, v in cfg.items() if not k.startswith("_")}, default=str))


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--parts", default="layouts")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int(time.time() * 1000) % (2**31)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(seed)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    from diffusers import AutoencoderKLQwenImage21, QwenImage21Transformer2DModel
    from safetensors.torch import save_file
    from transformers import Qwen3VLForConditionalGeneration

    expected = {}
    # Transformer: the released configuration is diffusers' default (as comfy's).
    with torch.device("meta"):
        tr = QwenImage21Transformer2DModel()
    sd = fuse_mlp(tr.state_dict())
    assert len(sd) == 265 and not [k for k in sd if k.endswith(".bias")], len(sd)
    expected["transformer"] = dict(tensors=dict(shapes(sd)), config=jsonable(tr.config))
    header_only(os.path.join(out, "qwen_image_2.1_bf16.safetensors"),
                [("model.diffusion_model." + k, s) for k, s in shapes(sd)])
    header_only(os.path.join(out, "qwen_image_2.1_bare.safetensors"), shapes(sd))

    with torch.device("meta"):
        vae = AutoencoderKLQwenImage21()
    sd = vae.state_dict()
    expected["vae"] = dict(tensors=dict(shapes(sd)), config=jsonable(vae.config))
    orig = vae_original(sd, vae.config.num_res_blocks)
    assert "decoder.upsamples.0.upsamples.0.residual.2.weight" in orig and orig["decoder.head.2.weight"].shape[2] == 1
    header_only(os.path.join(out, "qwen_image_2.1_vae_bf16.safetensors"), shapes(orig))

    cfg = qwen3vl_8b_config()
    with torch.device("meta"):
        te = Qwen3VLForConditionalGeneration(cfg)
    sd = te.state_dict()
    expected["text_encoder"] = dict(tensors=dict(shapes(sd)), config=dict(
        text_config=jsonable(cfg.text_config), vision_config=jsonable(cfg.vision_config)))
    header_only(os.path.join(out, "qwen3vl_8b_bf16.safetensors"), [(comfy_te_name(k), s) for k, s in shapes(sd)])
    json.dump(expected, open(os.path.join(out, "expected.json"), "w"))

    # Tiny files with data in the same layouts (random weights; only loading is checked).
    def rand(sd):
        return {k: (torch.randn(v.shape, generator=gen) * 0.1).to(torch.bfloat16) for k, v in sd.items()}

    tr = QwenImage21Transformer2DModel(num_layers=2, attention_head_dim=16, num_attention_heads=2, context_in_dim=24,
                                       mlp_ratio=2, axes_dims_rope=(4, 6, 6))
    sd = {"model.diffusion_model." + k: v for k, v in rand(fuse_mlp(tr.state_dict())).items()}
    save_file(sd, os.path.join(out, "tiny_transformer.safetensors"))
    sd["model.diffusion_model.transformer_blocks.1.attn.add_k_proj.weight"] = torch.zeros(32, 32, dtype=torch.bfloat16)
    save_file(sd, os.path.join(out, "tiny_transformer_unknown.safetensors"))
    vae = AutoencoderKLQwenImage21(base_dim=4, decoder_base_dim=4)
    sd = rand(vae_original(vae.state_dict(), vae.config.num_res_blocks))
    save_file(sd, os.path.join(out, "tiny_vae.safetensors"))
    sd["decoder.upsamples.0.residual.2.weight"] = torch.zeros(4, 4, 3, 3, 3, dtype=torch.bfloat16)
    save_file(sd, os.path.join(out, "tiny_vae_unknown.safetensors"))
    # Head size 128 and a depth-24 tower: what a single file's configuration can be derived for.
    from transformers import Qwen3VLConfig

    tiny = Qwen3VLConfig(
        text_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1,
                         head_dim=128, intermediate_size=24, vocab_size=1000, hidden_act="silu",
                         rope_parameters=dict(rope_type="default", rope_theta=5000000.0, mrope_interleaved=True,
                                              mrope_section=[24, 20, 20])),
        vision_config=dict(depth=24, hidden_size=64, intermediate_size=16, num_heads=16, out_hidden_size=16,
                           num_position_embeddings=16, deepstack_visual_indexes=[5, 11, 17]),
        tie_word_embeddings=False)
    sd = {comfy_te_name(k): v for k, v in rand(Qwen3VLForConditionalGeneration(tiny).state_dict()).items()}
    save_file(sd, os.path.join(out, "tiny_text_encoder.safetensors"))
    sd["model.layers.0.self_attn.qkv_proj.weight"] = torch.zeros(384, 16, dtype=torch.bfloat16)  # merged_qkv
    save_file(sd, os.path.join(out, "tiny_text_encoder_unknown.safetensors"))

    import diffusers
    import transformers

    json.dump(dict(seed=seed, config={}, versions=dict(torch=torch.__version__, diffusers=diffusers.__version__,
                                                        transformers=transformers.__version__)),
              open(os.path.join(out, "case.json"), "w"), indent=1)
    print("gen_qwen21_comfy_layouts: wrote", out, flush=True)


if __name__ == "__main__":
    main()
