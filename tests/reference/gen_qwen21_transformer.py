#!/usr/bin/env python3
"""Writes a FRESH random tiny QwenImage21Transformer2DModel (diffusers 0.42.1, Qwen-Image-2.1) plus inputs and the
reference's outputs, for tests/reference/test_reference_qwen21_transformer.cpp.

    .venv/bin/python tests/reference/gen_qwen21_transformer.py OUT --seed S [--parts forward,cache] [--threads 1]

Random every run: layers, heads, head size, RoPE axes split, context width, MLP ratio, in/out channels; the joint
sequence: batch 1-2, 0-2 condition image blocks (sizes, the text around them, two blocks sometimes adjacent), the
target's size, prompt padding (per-sample valid lengths, masked keys) or no mask.

Parts (all float32 on CPU, default attention processor QwenImage21AttnProcessor):
  forward  one uncached forward: OUT/forward.safetensors (hidden_states, encoder_hidden_states,
           encoder_hidden_states_mask?, timestep, output = the target rows out[:, -T:]), the same in bfloat16
           (output_bf16: model and inputs cast to bfloat16), the fp8 file's model (output_fp8); when the draw
           says so also the same weights with causal_condition=False (output_noncausal).
  cache    2-3 denoising calls with QwenImage21KVCache: step 0 kv_cache_mode "extract", later steps "cached"
           (hidden_states_<i> = [condition latents, the step's target latents], timestep_<i>, output_<i>), and the
           same calls uncached (uncached_<i>).

OUT/transformer/        the model (save_pretrained: config.json + diffusion_pytorch_model.safetensors, float32)
OUT/comfy/qwen_image_2.1_tiny.safetensors
                        the same weights in ComfyUI's single-file layout: `model.diffusion_model.` prefix, each block's
                        SwiGLU stored fused as img_mlp.gate_up = cat([gate_layer, proj], 0)
OUT/comfy/qwen_image_2.1_tiny_fp8_e4m3fn.safetensors
                        the same with every matrix cast to float8_e4m3fn (no scales)
OUT/case.json           seed, versions, config.transformer, parts.<part> (img_shapes, img_mask, batch, mask, ...)
"""
import argparse
import copy
import json
import os
import random
import sys
import time

import torch
from safetensors.torch import save_file


def rand_axes(rng, head_dim):
    half = head_dim // 2
    a0 = rng.randint(1, half - 2)
    a1 = rng.randint(1, half - a0 - 1)
    return [2 * a0, 2 * a1, head_dim - 2 * a0 - 2 * a1]


def random_config(rng):
    head_dim = rng.choice([8, 12, 16, 24, 32])
    return dict(
        patch_size=1,
        in_channels=rng.choice([4, 8, 16]),
        out_channels=rng.choice([None, 4, 8, 16]),
        num_layers=rng.randint(1, 3),
        attention_head_dim=head_dim,
        num_attention_heads=rng.randint(1, 4),
        context_in_dim=rng.choice([8, 16, 24, 40]),
        mlp_ratio=rng.randint(1, 3),
        axes_dims_rope=rand_axes(rng, head_dim),
        eps=1e-6,
        causal_condition=True,
    )


def randomize(model, gen):
    """Every weight drawn (not the constructor's init): matrices N(0, 1/fan_in); norm gains 1 + N(0, 0.2); the
    zero-centred text norm N(0, 0.2) (its effective gain is weight + 1)."""
    for name, p in model.named_parameters():
        if p.dim() == 2:
            p.copy_(torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5)
        elif name.endswith("text_norm.weight"):
            p.copy_(0.2 * torch.randn(p.shape, generator=gen))
        else:
            p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))


def random_layout(rng, batch):
    """The vision-language slot sequence (True = an image slot, 4 latent tokens) without the target's slots, the
    condition shapes, the target shape and per-sample valid lengths of the text-encoder sequence."""
    slots, shapes = [], []
    slots += [False] * rng.randint(1, 6)  # system/user template text
    n_cond = rng.choice([0, 1, 1, 2, 2])
    adjacent = n_cond == 2 and rng.random() < 0.3
    for i in range(n_cond):
        h, w = 2 * rng.randint(1, 3), 2 * rng.randint(1, 3)
        if not (adjacent and i == 1):
            slots += [False] * rng.randint(1, 4)  # "<imageN><|vision_start|>"
        slots += [True] * (h * w // 4)
        if not (adjacent and i == 0):
            slots += [False]  # <|vision_end|>
        shapes.append((1, h, w))
    slots += [False] * rng.randint(1, 8)  # the prompt
    pad = rng.randint(0, 4) if batch > 1 or rng.random() < 0.5 else 0
    slots += [False] * pad
    length = len(slots)
    valid = [length - rng.randint(0, pad) for _ in range(batch)]
    if pad:
        valid[rng.randrange(batch)] = length  # the longest prompt sets the padded length
    target = (1, 2 * rng.randint(1, 4), 2 * rng.randint(1, 4))
    return slots, shapes, target, valid


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--parts", default="forward,cache")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seed = args.seed if args.seed is not None else int(time.time() * 1000) % (2**31 - 1)
    print(f"gen_qwen21_transformer: seed {seed}", flush=True)
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()

    import diffusers
    from diffusers.models.transformers.transformer_qwenimage21 import (
        QwenImage21KVCache,
        QwenImage21Transformer2DModel,
    )

    out = args.out
    os.makedirs(out, exist_ok=True)
    cfg = random_config(rng)
    model = QwenImage21Transformer2DModel(**cfg).eval()
    with torch.no_grad():
        randomize(model, gen)
    model.save_pretrained(os.path.join(out, "transformer"), safe_serialization=True)
    # ComfyUI's single-file layout (third-party loaders of qwen_image_2.1_bf16 read `model.diffusion_model.`
    # keys and a fused img_mlp.gate_up whose first half of rows is gate_layer).
    sd = model.state_dict()
    comfy = {}
    for k, v in sd.items():
        if ".img_mlp.proj." in k:
            continue
        if ".img_mlp.gate_layer." in k:
            k2 = k.replace(".img_mlp.gate_layer.", ".img_mlp.gate_up.")
            v = torch.cat([v, sd[k.replace(".gate_layer.", ".proj.")]], 0)
            k = k2
        comfy["model.diffusion_model." + k] = v.contiguous()
    os.makedirs(os.path.join(out, "comfy"), exist_ok=True)
    save_file(comfy, os.path.join(out, "comfy", "qwen_image_2.1_tiny.safetensors"))
    # The same file with every matrix stored as float8_e4m3fn (a plain cast, no scales: ComfyUI reads it as
    # scale 1), and the model whose matrices are those fp8 values (the reference for that file).
    fp8 = {k: v.to(torch.float8_e4m3fn) if v.dim() == 2 else v for k, v in comfy.items()}
    save_file(fp8, os.path.join(out, "comfy", "qwen_image_2.1_tiny_fp8_e4m3fn.safetensors"))
    model_fp8 = copy.deepcopy(model)
    with torch.no_grad():
        for prm in model_fp8.parameters():
            if prm.dim() == 2:
                prm.copy_(prm.to(torch.float8_e4m3fn).float())

    case = {"seed": seed, "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__},
            "config": {"transformer": dict(model.config)}, "parts": {}}
    C, ctx = cfg["in_channels"], cfg["context_in_dim"]
    parts = [p for p in args.parts.split(",") if p]

    def inputs(batch):
        slots, shapes, target, valid = random_layout(rng, batch)
        T = target[1] * target[2]
        L = len(slots)
        img_mask = torch.tensor(slots + [True] * (T // 4)).unsqueeze(0).expand(batch, -1)
        ehs = torch.randn(batch, L, ctx, generator=gen)
        use_mask = any(v < L for v in valid) or rng.random() < 0.3
        mask = torch.zeros(batch, L, dtype=torch.bool)
        for b, v in enumerate(valid):
            mask[b, :v] = True
            ehs[b, v:] = 0  # the pipeline right-pads with zeros
        cond_tokens = sum(h * w for _, h, w in shapes)
        p = {"batch": batch, "img_shapes": [list(s) for s in shapes] + [list(target)],
             "img_mask": [int(x) for x in slots + [True] * (T // 4)], "mask": use_mask, "valid": valid,
             "target_tokens": T, "condition_tokens": cond_tokens}
        return p, ehs, (mask if use_mask else None), img_mask, cond_tokens, T

    def call(hs, ehs, mask, t, p, img_mask, mm=None, **kw):
        return (mm or model)(hidden_states=hs, encoder_hidden_states=ehs, encoder_hidden_states_mask=mask, timestep=t,
                     img_shapes=[[tuple(s) for s in p["img_shapes"]]] * p["batch"], img_mask=img_mask,
                     return_dict=False, **kw)[0][:, -p["target_tokens"]:]

    with torch.no_grad():
        if "forward" in parts:
            batch = rng.randint(1, 2)
            p, ehs, mask, img_mask, n_cond, T = inputs(batch)
            hs = torch.randn(batch, n_cond + T, C, generator=gen)
            t = torch.rand(batch, generator=gen)
            tensors = {"hidden_states": hs, "encoder_hidden_states": ehs, "timestep": t,
                       "output": call(hs, ehs, mask, t, p, img_mask)}
            if mask is not None:
                tensors["encoder_hidden_states_mask"] = mask.long()
            tensors["output_fp8"] = call(hs, ehs, mask, t, p, img_mask, mm=model_fp8)
            # The same forward in bfloat16 (weights, inputs and timestep cast as the pipeline casts them): the
            # engine's bfloat16 path must follow the reference's casts, not only its float32 arithmetic. Loaded
            # as the pipeline loads it (from_pretrained(torch_dtype=bfloat16)), which keeps the non-persistent
            # timestep `freqs` buffer in float32; model.to(bfloat16) would round it and move the sinusoid.
            m16 = QwenImage21Transformer2DModel.from_pretrained(
                os.path.join(out, "transformer"), torch_dtype=torch.bfloat16).eval()
            assert m16.time_text_embed.time_proj.freqs.dtype == torch.float32
            tensors["output_bf16"] = m16(
                hidden_states=hs.bfloat16(), encoder_hidden_states=ehs.bfloat16(), encoder_hidden_states_mask=mask,
                timestep=t.bfloat16(), img_shapes=[[tuple(s) for s in p["img_shapes"]]] * batch, img_mask=img_mask,
                return_dict=False)[0][:, -T:].float()
            del m16
            p["noncausal"] = rng.random() < 0.4
            if p["noncausal"]:
                model.register_to_config(causal_condition=False)
                tensors["output_noncausal"] = call(hs, ehs, mask, t, p, img_mask)
                model.register_to_config(causal_condition=True)
            save(tensors, os.path.join(out, "forward.safetensors"))
            case["parts"]["forward"] = p

        if "cache" in parts:
            batch = rng.randint(1, 2)
            p, ehs, mask, img_mask, n_cond, T = inputs(batch)
            steps = rng.randint(2, 3)
            cond = torch.randn(batch, n_cond, C, generator=gen)
            ts = sorted((torch.rand(steps, generator=gen) * 0.9 + 0.05).tolist(), reverse=True)
            tensors = {"encoder_hidden_states": ehs}
            if mask is not None:
                tensors["encoder_hidden_states_mask"] = mask.long()
            cache = QwenImage21KVCache(len(model.transformer_blocks))
            for i, tv in enumerate(ts):
                hs = torch.cat([cond, torch.randn(batch, T, C, generator=gen)], 1)
                t = torch.full((batch,), tv)
                tensors[f"hidden_states_{i}"] = hs
                tensors[f"timestep_{i}"] = t
                tensors[f"output_{i}"] = call(hs, ehs, mask, t, p, img_mask, kv_cache=cache,
                                              kv_cache_mode="extract" if i == 0 else "cached")
                tensors[f"uncached_{i}"] = call(hs, ehs, mask, t, p, img_mask)
            p["steps"] = steps
            save(tensors, os.path.join(out, "cache.safetensors"))
            case["parts"]["cache"] = p

    case["seconds"] = round(time.time() - t0, 2)
    with open(os.path.join(out, "case.json"), "w", encoding="utf-8") as f:
        json.dump(case, f, indent=2)
    print(f"gen_qwen21_transformer: wrote {out} ({case['seconds']} s)", flush=True)


def save(d, path):
    out = {}
    for k, v in d.items():
        v = v.detach().cpu().contiguous()
        out[k] = v.float() if v.dtype.is_floating_point else v.long()
    save_file(out, path, metadata={"format": "pt"})


if __name__ == "__main__":
    sys.exit(main())
