#!/usr/bin/env python3
"""Writes a FRESH random tiny Qwen-Image model folder (diffusers layout) plus inputs and reference outputs
computed by the real diffusers / transformers code, for the differential tests (tests/reference/*.cpp) and
the CPU benchmark (bench/reference/compare_cpu.py).

    .venv/bin/python tests/reference/gen_random.py OUT --seed S [--parts transformer,vae,text_encoder,t2i]
                                                   [--size tiny|mid] [--threads 1]

OUT/model/              model_index.json, transformer/, vae/, text_encoder/, tokenizer/, scheduler/
                        (weights stored as BF16 or F32, chosen at random; tokenizer + scheduler config copied
                        from the project's fixtures)
OUT/case.json           seed, library versions, the random configuration, per-part parameters
OUT/<part>.safetensors  inputs and reference outputs of each part (float32 / int64)
OUT/t2i_output.png      the reference pipeline's image for the t2i part

All reference computations are float32 on CPU from the stored (BF16-exact when BF16) weights.
"""
import argparse
import json
import math
import os
import random
import shutil
import sys
import time

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE_MODEL = os.path.normpath(os.path.join(HERE, "..", "fixtures", "qwen-tiny", "models", "qwen-image-tiny"))
FIXTURE_EDIT_MODEL = os.path.normpath(
    os.path.join(HERE, "..", "fixtures", "qwen-tiny", "models", "qwen-image-edit-2509-tiny"))

T2I_TEMPLATE = ("<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, "
                "text, spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n{}"
                "<|im_end|>\n<|im_start|>assistant\n")
EDIT_TEMPLATE = ("<|im_start|>system\nDescribe the key features of the input image (color, shape, size, texture, "
                 "objects, background), then explain how the user's text instruction should alter or modify the "
                 "image. Generate a new image that meets the user's requirements while maintaining consistency "
                 "with the original input where appropriate.<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n"
                 "<|im_start|>assistant\n")

WORDS = ("a red cat sits on the blue sofa near window light morning 一只 猫 在 沙发 上 😊 neon sign says "
         "'OPEN 24/7' mountain lake boat sunset watercolor city night rain 東京 夜景 photo of").split()


def rand_prompt(rng, lo=2, hi=14):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


@torch.no_grad()
def randomize(module, gen, embed_std=1.0):
    """Re-draws every parameter so activations stay O(1): W ~ N(0, 1/fan_in), norm weights ~ 1 + 0.1 N,
    biases ~ 0.05 N."""
    for name, p in module.named_parameters():
        if p.dim() >= 2:
            if "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * embed_std)
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
        elif "norm" in name and "bias" not in name:
            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
        else:
            p.copy_(0.05 * torch.randn(p.shape, generator=gen))


def even_split(rng, total, parts=3):
    """Random split of `total` (even) into `parts` even positive numbers."""
    assert total % 2 == 0 and total >= 2 * parts
    cuts = sorted(rng.sample(range(1, total // 2), parts - 1))
    b = [0] + cuts + [total // 2]
    return [2 * (b[i + 1] - b[i]) for i in range(parts)]


def make_configs(rng, size):
    if size == "mid":
        heads, head_dim, layers = 8, 64, 6
        txt_hidden, txt_layers, txt_heads, txt_kv = 256, 2, 4, 2
        base_dim = 16
    else:
        heads = rng.randint(1, 3)
        head_dim = rng.choice([12, 16, 24, 32])
        layers = rng.randint(1, 3)
        txt_heads = rng.choice([1, 2, 4])
        txt_kv = rng.choice([d for d in (1, 2, 4) if txt_heads % d == 0])
        txt_hidden = txt_heads * rng.choice([8, 12, 16])
        txt_layers = rng.randint(1, 3)
        base_dim = rng.choice([4, 8])
    txt_head_dim = txt_hidden // txt_heads
    mrope = [m // 2 for m in even_split(rng, txt_head_dim, 3)]
    transformer = dict(patch_size=2, in_channels=64, out_channels=16, num_layers=layers,
                       attention_head_dim=head_dim, num_attention_heads=heads, joint_attention_dim=txt_hidden,
                       axes_dims_rope=even_split(rng, head_dim, 3), guidance_embeds=False,
                       zero_cond_t=bool(rng.random() < 0.3) if size == "tiny" else False)
    vdepth = rng.randint(1, 3)
    vheads = rng.choice([1, 2])
    vision = dict(depth=vdepth, hidden_size=vheads * rng.choice([8, 16]), num_heads=vheads,
                  intermediate_size=rng.choice([16, 32, 48]), out_hidden_size=txt_hidden,
                  fullatt_block_indexes=sorted(rng.sample(range(vdepth), rng.randint(0, vdepth))),
                  patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                  tokens_per_second=2, in_channels=3, hidden_act="silu")
    text = dict(hidden_size=txt_hidden, num_hidden_layers=txt_layers, num_attention_heads=txt_heads,
                num_key_value_heads=txt_kv, intermediate_size=txt_hidden * rng.choice([2, 3]),
                mrope_section=mrope, rope_theta=1000000.0, rms_norm_eps=1e-6, vocab_size=152064)
    vae = dict(base_dim=base_dim, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=rng.choice([1, 2]),
               attn_scales=[], temperal_downsample=[False, True, True], dropout=0.0)
    storage = rng.choice(["bfloat16", "float32"])
    return dict(transformer=transformer, text=text, vision=vision, vae=vae, storage=storage)


def build_text_encoder(cfg, gen, storage, out_dir):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    base = json.load(open(os.path.join(FIXTURE_MODEL, "text_encoder", "config.json")))
    t = cfg["text"]
    text_config = dict(base["text_config"])
    text_config.update(hidden_size=t["hidden_size"], num_hidden_layers=t["num_hidden_layers"],
                       num_attention_heads=t["num_attention_heads"], num_key_value_heads=t["num_key_value_heads"],
                       intermediate_size=t["intermediate_size"], max_window_layers=t["num_hidden_layers"],
                       layer_types=["full_attention"] * t["num_hidden_layers"],
                       rope_scaling={"mrope_section": t["mrope_section"], "rope_type": "default", "type": "default"})
    top = {k: v for k, v in base.items() if k not in ("text_config", "vision_config", "architectures",
                                                      "transformers_version", "torch_dtype", "model_type")}
    top.update({k: text_config[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                            "num_key_value_heads", "intermediate_size", "max_window_layers",
                                            "rope_scaling")})
    vision_config = dict(base["vision_config"])
    vision_config.update(cfg["vision"])
    vision_config["in_chans"] = 3
    vision_config["spatial_patch_size"] = 14
    conf = Qwen2_5_VLConfig(text_config=text_config, vision_config=vision_config, **top)
    conf._attn_implementation = "eager"
    model = Qwen2_5_VLForConditionalGeneration(conf).eval()
    randomize(model, gen, embed_std=1.0)
    # save_pretrained() of transformers 4.57 writes the legacy key names (model.embed_tokens, visual.*); the
    # real Qwen-Image checkpoint (and the fixtures) use the >= 4.52 module layout: write the state dict as is.
    model.to(getattr(torch, storage))
    model.config.save_pretrained(out_dir)
    model.generation_config.save_pretrained(out_dir)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out_dir, "model.safetensors"),
              metadata={"format": "pt"})
    return Qwen2_5_VLForConditionalGeneration.from_pretrained(out_dir, dtype=torch.float32,
                                                              attn_implementation="eager").eval()


def build_transformer(cfg, gen, storage, out_dir):
    from diffusers import QwenImageTransformer2DModel

    model = QwenImageTransformer2DModel(**cfg["transformer"]).eval()
    randomize(model, gen)
    model.to(getattr(torch, storage)).save_pretrained(out_dir, safe_serialization=True)
    return QwenImageTransformer2DModel.from_pretrained(out_dir, torch_dtype=torch.float32).eval()


def build_vae(cfg, gen, storage, out_dir):
    from diffusers import AutoencoderKLQwenImage

    base = json.load(open(os.path.join(FIXTURE_MODEL, "vae", "config.json")))
    c = dict(cfg["vae"])
    c["latents_mean"] = base["latents_mean"]
    c["latents_std"] = base["latents_std"]
    model = AutoencoderKLQwenImage(**c).eval()
    randomize(model, gen)
    model.to(getattr(torch, storage)).save_pretrained(out_dir, safe_serialization=True)
    return AutoencoderKLQwenImage.from_pretrained(out_dir, torch_dtype=torch.float32).eval()


def save_tensors(d, path):
    out = {}
    for k, v in d.items():
        v = v.detach().cpu().contiguous()
        out[k] = v.float() if v.dtype.is_floating_point else v.long()
    save_file(out, path, metadata={"format": "pt"})


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=None, help="default: from the clock (printed)")
    ap.add_argument("--parts", default="transformer,vae,text_encoder,t2i")
    ap.add_argument("--size", default="tiny", choices=["tiny", "mid"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--storage", default=None, choices=["bfloat16", "float32"])
    ap.add_argument("--model-only", action="store_true", help="write the model folder only")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int(time.time() * 1000) % (2**31)
    print(f"gen_random: seed {seed}", flush=True)
    torch.set_num_threads(args.threads)
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    parts = [p for p in args.parts.split(",") if p]
    out = os.path.abspath(args.out)
    mdir = os.path.join(out, "model")
    os.makedirs(mdir, exist_ok=True)
    t0 = time.time()

    import diffusers
    import transformers
    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImagePipeline
    from transformers import Qwen2Tokenizer

    cfg = make_configs(rng, args.size)
    if args.storage:
        cfg["storage"] = args.storage
    storage = cfg["storage"]
    # Components are drawn in a fixed order (same seed -> same weights); only those a part needs are built.
    need_all = args.model_only or "t2i" in parts
    te = build_text_encoder(cfg, gen, storage, os.path.join(mdir, "text_encoder")) \
        if need_all or "text_encoder" in parts else None
    tr = build_transformer(cfg, gen, storage, os.path.join(mdir, "transformer")) \
        if need_all or "transformer" in parts else None
    vae = build_vae(cfg, gen, storage, os.path.join(mdir, "vae")) if need_all or "vae" in parts else None
    shutil.copytree(os.path.join(FIXTURE_MODEL, "tokenizer"), os.path.join(mdir, "tokenizer"), dirs_exist_ok=True)
    shutil.copytree(os.path.join(FIXTURE_MODEL, "scheduler"), os.path.join(mdir, "scheduler"), dirs_exist_ok=True)
    shutil.copy(os.path.join(FIXTURE_MODEL, "model_index.json"), os.path.join(mdir, "model_index.json"))
    tok = Qwen2Tokenizer.from_pretrained(os.path.join(mdir, "tokenizer"))
    case = dict(seed=seed, size=args.size, config=cfg, parts={},
                versions=dict(torch=torch.__version__, diffusers=diffusers.__version__,
                              transformers=transformers.__version__))
    if args.model_only:
        parts = []

    if "transformer" in parts:
        tc = cfg["transformer"]
        B = rng.randint(1, 2)
        nseg = rng.randint(2, 3) if tc["zero_cond_t"] else rng.randint(1, 2)
        img_shapes = [[1, rng.randint(1, 5), rng.randint(1, 5)] for _ in range(nseg)]
        s_img = sum(f * h * w for f, h, w in img_shapes)
        s_txt = rng.randint(3, 12)
        x = torch.randn(B, s_img, 64, generator=gen)
        ctx = torch.randn(B, s_txt, tc["joint_attention_dim"], generator=gen)
        use_mask = rng.random() < 0.6
        mask = torch.ones(B, s_txt, dtype=torch.long)
        if use_mask:
            for b in range(B):
                n = rng.randint(1, s_txt)
                mask[b, n:] = 0
        t = torch.rand(B, generator=gen)
        y = tr(hidden_states=x, encoder_hidden_states=ctx, encoder_hidden_states_mask=mask if use_mask else None,
               timestep=t, img_shapes=[[tuple(s) for s in img_shapes]] * B, return_dict=False)[0]
        d = dict(hidden_states=x, encoder_hidden_states=ctx, timestep=t, output=y)
        if use_mask:
            d["encoder_hidden_states_mask"] = mask
        save_tensors(d, os.path.join(out, "transformer.safetensors"))
        case["parts"]["transformer"] = dict(img_shapes=img_shapes, mask=use_mask, batch=B, txt_len=s_txt)

    if "vae" in parts:
        H = 8 * rng.randint(2, 6)
        W = 8 * rng.randint(2, 6)
        img = torch.rand(1, 3, 1, H, W, generator=gen) * 2 - 1
        post = vae.encode(img).latent_dist
        z = torch.randn(1, 16, 1, H // 8, W // 8, generator=gen)
        dec = vae.decode(z, return_dict=False)[0]
        dec_mean = vae.decode(post.mean, return_dict=False)[0]
        save_tensors(dict(image=img, mean=post.mean, logvar=post.logvar, latents=z, decoded=dec,
                          decoded_mean=dec_mean), os.path.join(out, "vae.safetensors"))
        case["parts"]["vae"] = dict(height=H, width=W)

    if "text_encoder" in parts:
        prompts = [rand_prompt(rng) for _ in range(rng.randint(1, 3))]
        b = tok([T2I_TEMPLATE.format(p) for p in prompts], padding=True, return_tensors="pt")
        o = te(input_ids=b["input_ids"], attention_mask=b["attention_mask"], output_hidden_states=True)
        pos, _ = te.model.get_rope_index(b["input_ids"], None, None, None, b["attention_mask"])
        d = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"], position_ids=pos,
                 hidden_states=torch.stack(list(o.hidden_states)))
        # Vision path: one or two random images through the slow processor and the whole model.
        from transformers import Qwen2VLProcessor

        proc = Qwen2VLProcessor.from_pretrained(os.path.join(FIXTURE_EDIT_MODEL, "processor"), use_fast=False)
        nimg = rng.randint(1, 2)
        images = []
        for i in range(nimg):
            w, h = 28 * rng.randint(1, 4) + rng.randint(0, 27), 28 * rng.randint(1, 4) + rng.randint(0, 27)
            arr = (torch.rand(h, w, 3, generator=gen) * 255).round().to(torch.uint8).numpy()
            images.append(Image.fromarray(arr, "RGB"))
            images[-1].save(os.path.join(out, f"text_encoder_image_{i}.png"))
        pre = "".join(f"Picture {i + 1}: <|vision_start|><|image_pad|><|vision_end|>" for i in range(nimg))
        vp = rand_prompt(rng)
        mi = proc(text=[EDIT_TEMPLATE.format(pre + vp)], images=images, padding=True, return_tensors="pt")
        ov = te(input_ids=mi["input_ids"], attention_mask=mi["attention_mask"], pixel_values=mi["pixel_values"],
                image_grid_thw=mi["image_grid_thw"], output_hidden_states=True)
        vpos, vdel = te.model.get_rope_index(mi["input_ids"], mi["image_grid_thw"], None, None, mi["attention_mask"])
        d.update(vl_input_ids=mi["input_ids"], vl_attention_mask=mi["attention_mask"],
                 vl_pixel_values=mi["pixel_values"], vl_image_grid_thw=mi["image_grid_thw"],
                 vl_position_ids=vpos, vl_rope_deltas=vdel, vl_last_hidden_state=ov.hidden_states[-1],
                 vl_image_embeds=te.model.visual(mi["pixel_values"], grid_thw=mi["image_grid_thw"]))
        save_tensors(d, os.path.join(out, "text_encoder.safetensors"))
        case["parts"]["text_encoder"] = dict(prompts=prompts, vl_prompt=vp, images=nimg)

    if "t2i" in parts:
        sched = FlowMatchEulerDiscreteScheduler.from_pretrained(os.path.join(mdir, "scheduler"))
        pipe = QwenImagePipeline(scheduler=sched, vae=vae, text_encoder=te, tokenizer=tok, transformer=tr)
        pipe.set_progress_bar_config(disable=True)
        prompt = rand_prompt(rng)
        cfg_on = rng.random() < 0.5
        neg = rand_prompt(rng, 0, 4) if cfg_on else None
        scale = round(rng.uniform(1.5, 5.0), 2) if cfg_on else 1.0
        H, W = 16 * rng.randint(2, 5), 16 * rng.randint(2, 5)
        steps = rng.randint(1, 3) + 1
        pseed = rng.randint(0, 2**31 - 1)
        img = pipe(prompt=prompt, negative_prompt=neg, true_cfg_scale=scale, height=H, width=W,
                   num_inference_steps=steps, generator=torch.Generator().manual_seed(pseed),
                   output_type="np").images[0]
        png = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
        Image.fromarray(png, "RGB").save(os.path.join(out, "t2i_output.png"))
        save_tensors(dict(image=torch.from_numpy(img)), os.path.join(out, "t2i.safetensors"))
        case["parts"]["t2i"] = dict(prompt=prompt, negative_prompt=neg, true_cfg_scale=scale, height=H, width=W,
                                    steps=steps, seed=pseed)

    case["seconds"] = round(time.time() - t0, 2)
    with open(os.path.join(out, "case.json"), "w", encoding="utf-8") as f:
        json.dump(case, f, ensure_ascii=False, indent=2)
    print(f"gen_random: wrote {out} ({case['seconds']} s)", flush=True)


if __name__ == "__main__":
    main()
