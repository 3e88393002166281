#!/usr/bin/env python3
"""Qwen-Image-2.1 (issue #15) VAE reference cases: writes a FRESH random tiny AutoencoderKLQwenImage21 (diffusers
0.42.1, models/autoencoders/autoencoder_kl_qwenimage21.py) plus RGBA inputs and the outputs of the real diffusers
code, for tests/reference/test_reference_qwen21_vae.cpp.

    .venv/bin/python tests/reference/gen_qwen21.py OUT --seed S [--parts vae,vae_file] [--threads 1]

Parts:
  vae       A random residual configuration with the released model's 5 levels (16x spatial compression) and
            random widths, dim_mult, temporal flags, residual-block count, z_dim and latent statistics; a batch
            of 1-2 RGBA images (8-bit levels mapped to [-1, 1] as the pipeline does; sides random multiples
            of 16, odd multiples included, non-square) with fully transparent rectangles (alpha -1; their
            colour black, as Pillow's premultiplied resize leaves it, or random), encoded (posterior mean and
            logvar; the pipeline's normalised latents (mean - latents_mean) / latents_std) and decoded the
            pipeline's way (random normalised latents * std + mean -> decode, clamped; and the round trip
            of the encoded image).
  vae_tiled diffusers' tiled path (enable_tiling with random small tiles: tile_sample_min 32 or 48, stride 16
            or 32) on another RGBA batch larger than one tile: posterior mean / logvar and the decode of random
            latents.
  vae_bf16  The vae part's computation in bfloat16 (the model loaded with torch_dtype=bfloat16, the image and the
            pipeline's latents cast to it, as QwenImage21Pipeline runs on a GPU): mean / logvar and the decode.
  vae_file  The same weights as one single file in the original / ComfyUI layout (Wan 2.2 VAE names:
            encoder.conv1, encoder.downsamples.N.downsamples.M.residual.K, decoder.upsamples.N.upsamples.M,
            middle, head, conv1/conv2; every convolution stored as a 3-D kernel with a temporal size of 1)
            in OUT/vae21_original.safetensors. The layout is the one third-party loaders report for
            `qwen_image_2.1_vae_bf16.safetensors` (ComfyUI tells the file apart by its head conv's temporal
            size of 1); it was not checked against the released file here (no model hub).

OUT/model/vae/          config.json + diffusion_pytorch_model.safetensors (weights stored as BF16 or F32, at random)
OUT/case.json           seed, versions, configuration, per-part parameters
OUT/<part>.safetensors  inputs and reference outputs (float32)

All reference computations are float32 on CPU from the stored (BF16-exact when BF16) weights.
"""
import argparse
import json
import math
import os
import random
import re
import time

import torch
from safetensors.torch import save_file


def randomize(module, gen):
    """W ~ N(0, 1/fan_in), norm gammas ~ 1 + 0.1 N, biases ~ 0.05 N (activations stay O(1))."""
    for name, p in module.named_parameters():
        if p.dim() >= 2 and "gamma" not in name:
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel()))
        elif "gamma" in name:
            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
        else:
            p.copy_(0.05 * torch.randn(p.shape, generator=gen))


def vae_config(rng, gen):
    dim_mult = rng.choice([[1, 2, 4, 8, 8], [1, 1, 2, 2, 2], [1, 2, 2, 4, 4], [1, 2, 4, 4, 4], [1, 1, 1, 2, 2]])
    z = rng.choice([4, 8, 16])
    return dict(base_dim=rng.choice([4, 6, 8]), decoder_base_dim=rng.choice([4, 6, 8, None]), z_dim=z,
                dim_mult=dim_mult, num_res_blocks=rng.randint(1, 2), attn_scales=[],
                temperal_downsample=[rng.random() < 0.6 for _ in range(4)], dropout=0.0,
                latents_mean=[round(v, 4) for v in (torch.randn(z, generator=gen) * 1.5).tolist()],
                latents_std=[round(v, 4) for v in (0.5 + 3.5 * torch.rand(z, generator=gen)).tolist()],
                is_residual=True, in_channels=4, out_channels=4, patch_size=None)


def rgba_batch(rng, gen, b, h, w):
    """Random RGBA 8-bit levels (smooth field + noise) with 1-3 fully transparent rectangles, as 2 * v / 255 - 1."""
    coarse = torch.rand(b, 4, rng.randint(2, 5), rng.randint(2, 5), generator=gen).double()
    smooth = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    a = rng.choice([0.0, 0.3, 1.0])
    x = ((1 - a) * smooth + a * torch.rand(b, 4, h, w, generator=gen).double()).clamp(0, 1)
    levels = (x * 255).round()
    levels[:, 3] = torch.where(levels[:, 3] < 128, levels[:, 3] + 128, levels[:, 3])  # mostly opaque ...
    rects = []
    for i in range(b):
        for _ in range(rng.randint(1, 3)):  # ... with fully transparent rectangles
            y0, y1 = sorted(rng.sample(range(h + 1), 2))
            x0, x1 = sorted(rng.sample(range(w + 1), 2))
            levels[i, 3, y0:y1, x0:x1] = 0
            if rng.random() < 0.5:
                levels[i, :3, y0:y1, x0:x1] = 0  # premultiplied resize: colour lost
            rects.append([i, y0, y1, x0, x1])
    return (2.0 * (levels / 255.0) - 1.0).float().unsqueeze(2), rects


RES = {"norm1.gamma": "residual.0.gamma", "conv1.": "residual.2.", "norm2.gamma": "residual.3.gamma",
       "conv2.": "residual.6.", "conv_shortcut.": "shortcut."}


def to_original_key(k, num_res_blocks):
    """diffusers AutoencoderKLQwenImage21 key -> Wan 2.2 / original layout key."""
    def res(t):
        for a, b in RES.items():
            if t.startswith(a):
                return b + t[len(a):]
        return t
    if k.startswith("quant_conv."):
        return "conv1." + k[len("quant_conv."):]
    if k.startswith("post_quant_conv."):
        return "conv2." + k[len("post_quant_conv."):]
    side, r = k[:8], k[8:]
    for a, b in (("conv_in.", "conv1."), ("norm_out.", "head.0."), ("conv_out.", "head.2."),
                 ("mid_block.attentions.0.", "middle.1.")):
        if r.startswith(a):
            return side + b + r[len(a):]
    m = re.match(r"mid_block\.resnets\.(\d)\.(.*)", r)
    if m:
        return side + ("middle.0." if m.group(1) == "0" else "middle.2.") + res(m.group(2))
    m = re.match(r"(down|up)_blocks\.(\d+)\.(.*)", r)
    assert m, k
    outer = "downsamples" if m.group(1) == "down" else "upsamples"
    rest = m.group(3)
    if rest.startswith("resnets."):
        j, t = rest[len("resnets."):].split(".", 1)
        return f"{side}{outer}.{m.group(2)}.{outer}.{j}.{res(t)}"
    for a in ("downsampler.", "upsampler."):
        if rest.startswith(a):
            j = num_res_blocks if a == "downsampler." else num_res_blocks + 1
            return f"{side}{outer}.{m.group(2)}.{outer}.{j}.{rest[len(a):]}"
    raise AssertionError(k)


def save_tensors(d, path):
    save_file({k: v.detach().cpu().contiguous().float() for k, v in d.items()}, path, metadata={"format": "pt"})


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=None, help="default: from the clock (printed)")
    ap.add_argument("--parts", default="vae")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--storage", default=None, choices=["bfloat16", "float32"])
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int(time.time() * 1000) % (2**31)
    print(f"gen_qwen21: seed {seed}", flush=True)
    torch.set_num_threads(args.threads)
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - {"vae", "vae_file", "vae_tiled", "vae_bf16"}
    if unknown:
        raise SystemExit(f"gen_qwen21: unknown parts {sorted(unknown)} (vae, vae_file, vae_tiled, vae_bf16)")
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)

    import diffusers
    from diffusers import AutoencoderKLQwenImage21

    storage = args.storage or rng.choice(["bfloat16", "float32"])
    cfg = vae_config(rng, gen)
    case = dict(seed=seed, config=dict(vae=cfg, storage=storage), parts={},
                versions=dict(torch=torch.__version__, diffusers=diffusers.__version__))
    vdir = os.path.join(out, "model", "vae")
    model = AutoencoderKLQwenImage21(**cfg).eval()
    randomize(model, gen)
    model.to(getattr(torch, storage)).save_pretrained(vdir, safe_serialization=True)
    vae = AutoencoderKLQwenImage21.from_pretrained(vdir, torch_dtype=torch.float32).eval()
    z_dim = cfg["z_dim"]
    mean = torch.tensor(cfg["latents_mean"]).view(1, z_dim, 1, 1, 1)
    std = torch.tensor(cfg["latents_std"]).view(1, z_dim, 1, 1, 1)

    if "vae" in parts or "vae_file" in parts or "vae_bf16" in parts:
        b = rng.randint(1, 2)
        h, w = 16 * rng.randint(1, 5), 16 * rng.randint(1, 5)
        if h == w:
            w += 16
        image, rects = rgba_batch(rng, gen, b, h, w)
        post = vae.encode(image).latent_dist
        lat_norm = (post.mode() - mean) / std  # QwenImage21Pipeline._encode_vae_image
        z = torch.randn(b, z_dim, 1, h // 16, w // 16, generator=gen)
        decoded = vae.decode(z * std + mean, return_dict=False)[0]  # the pipeline's decode
        roundtrip = vae.decode(lat_norm * std + mean, return_dict=False)[0]
        save_tensors(dict(image=image, mean=post.mean, logvar=post.logvar, latents_norm=lat_norm, latents=z,
                          decoded=decoded, roundtrip=roundtrip), os.path.join(out, "vae.safetensors"))
        case["parts"]["vae"] = dict(batch=b, height=h, width=w, transparent=rects)

    if "vae_bf16" in parts:
        bf = torch.bfloat16
        vae_b = AutoencoderKLQwenImage21.from_pretrained(vdir, torch_dtype=bf).eval()
        post_b = vae_b.encode(image.to(bf)).latent_dist
        lat = z.to(bf)  # the pipeline: latents.to(vae.dtype), statistics .to(latents.dtype)
        decoded_b = vae_b.decode(lat * std.to(bf) + mean.to(bf), return_dict=False)[0]
        save_tensors(dict(mean=post_b.mean, logvar=post_b.logvar, decoded=decoded_b),
                     os.path.join(out, "vae_bf16.safetensors"))
        case["parts"]["vae_bf16"] = dict(dtype="bfloat16")

    if "vae_tiled" in parts:
        tmin = rng.choice([32, 48])
        stride = rng.choice([s for s in (16, 32) if s < tmin])
        b = rng.randint(1, 2)
        h, w = 16 * rng.randint(tmin // 16 + 1, 6), 16 * rng.randint(2, 6)  # taller than one tile
        if rng.random() < 0.5:
            h, w = w, h
        image, rects = rgba_batch(rng, gen, b, h, w)
        z = torch.randn(b, z_dim, 1, h // 16, w // 16, generator=gen)
        vae.enable_tiling(tile_sample_min_height=tmin, tile_sample_min_width=tmin, tile_sample_stride_height=stride,
                          tile_sample_stride_width=stride)
        post = vae.encode(image).latent_dist
        decoded = vae.decode(z, return_dict=False)[0]
        vae.disable_tiling()
        save_tensors(dict(image=image, mean=post.mean, logvar=post.logvar, latents=z, decoded=decoded),
                     os.path.join(out, "vae_tiled.safetensors"))
        case["parts"]["vae_tiled"] = dict(batch=b, height=h, width=w, tile_sample_min=tmin, tile_sample_stride=stride)

    if "vae_file" in parts:
        sd = {}
        for k, v in model.state_dict().items():  # stored dtype
            if v.dim() == 4 and k.endswith(".weight") and not re.search(r"(to_qkv|proj|resample\.1)\.weight$", k):
                v = v.unsqueeze(2)  # [out, in, 1, k, k]
            sd[to_original_key(k, cfg["num_res_blocks"])] = v.contiguous()
        path = os.path.join(out, "vae21_original.safetensors")
        save_file(sd, path, metadata={"format": "pt"})
        case["parts"]["vae_file"] = dict(file=path, tensors=len(sd))

    with open(os.path.join(out, "case.json"), "w") as f:
        json.dump(case, f, indent=1)
    print(f"gen_qwen21: wrote {out}", flush=True)


if __name__ == "__main__":
    main()
