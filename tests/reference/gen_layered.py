#!/usr/bin/env python3
"""Qwen-Image-Layered (issue #16) reference cases: writes a FRESH random tiny Qwen-Image-Layered model folder
(diffusers layout) plus inputs and the outputs of the real diffusers code, for
tests/reference/test_reference_layered.cpp. Also writes the committed fixture model
(tests/fixtures/qwen-tiny/models/qwen-image-layered-tiny) with --fixture.

    .venv/bin/python tests/reference/gen_layered.py OUT --seed S [--parts transformer,layered] [--threads 1]
        [--layers N] [--cfg on|off|random] [--cfg-normalize on|off|random] [--steps N]
    .venv/bin/python tests/reference/gen_layered.py --fixture DIR [--seed S]

Parts:
  transformer  QwenImageTransformer2DModel(use_layer3d_rope, use_additional_t_cond) forward on random packed
               inputs with Layered img_shapes ((layers + 1) generated frames + a condition segment of another
               size), a random text mask and random additional_t_cond.
  layered      QwenImageLayeredPipeline on a random RGBA image (sides not multiples of 16, partly transparent)
               at resolution 640, batch 1, 2 steps. Records the initial latents, the condition (image) latents,
               every transformer call's timestep and prediction (sliced to the noise tokens; CFG: cond then
               uncond), the latents after every step, the prompt embeddings and the RGBA layers (float and
               PNG: OUT/layered_output_<i>.png).

OUT/model/              model_index.json (QwenImageLayeredPipeline), transformer/, vae/ (input_channels 4),
                        text_encoder/, tokenizer/, processor/ (copied from the fixture edit model), scheduler/
                        (the released Layered config: time_shift_type linear, shift_terminal false)
OUT/case.json           seed, versions, configuration, per-part parameters
OUT/<part>.safetensors  inputs and outputs (float32 / int64)

--fixture DIR: a tiny random Layered model whose text_encoder/ and tokenizer/ are relative symlinks to the fixture
qwen-image-tiny model (its text hidden size, 32) and processor/ a symlink to qwen-image-edit-2509-tiny's; only the
transformer and the VAE are new (BF16, well under 1 MB).

All reference computations are float32 on CPU. Prompts are never empty: the reference would caption the image
with Qwen2.5-VL generate, which the engine does not do (it requires a prompt).
"""
import argparse
import json
import os
import random
import shutil
import sys
import time

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_random as gr  # noqa: E402

FIXTURES = os.path.normpath(os.path.join(HERE, "..", "fixtures", "qwen-tiny", "models"))

MODEL_INDEX = {
    "_class_name": "QwenImageLayeredPipeline",
    "_diffusers_version": "0.36.0.dev0",
    "processor": ["transformers", "Qwen2VLProcessor"],
    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
    "text_encoder": ["transformers", "Qwen2_5_VLForConditionalGeneration"],
    "tokenizer": ["transformers", "Qwen2Tokenizer"],
    "transformer": ["diffusers", "QwenImageTransformer2DModel"],
    "vae": ["diffusers", "AutoencoderKLQwenImage"],
}


def write_model_files(mdir):
    """model_index.json and the Layered scheduler config (Qwen-Image's with the two Layered changes)."""
    with open(os.path.join(mdir, "model_index.json"), "w", encoding="utf-8") as f:
        json.dump(MODEL_INDEX, f, indent=2)
    sched = json.load(open(os.path.join(gr.FIXTURE_MODEL, "scheduler", "scheduler_config.json")))
    sched.update(time_shift_type="linear", shift_terminal=False)
    os.makedirs(os.path.join(mdir, "scheduler"), exist_ok=True)
    with open(os.path.join(mdir, "scheduler", "scheduler_config.json"), "w", encoding="utf-8") as f:
        json.dump(sched, f, indent=2, sort_keys=True)


def layered_configs(rng):
    cfg = gr.make_configs(rng, "tiny")
    t = cfg["transformer"]
    t.update(zero_cond_t=False, use_additional_t_cond=True, use_layer3d_rope=True)
    # (layers + 2) frames of ~1600 tokens each at 640^2: keep the transformer and the VAE small.
    t["num_layers"] = min(t["num_layers"], 2)
    t["num_attention_heads"] = min(t["num_attention_heads"], 2)
    cfg["vae"].update(input_channels=4, base_dim=4, num_res_blocks=1)
    return cfg


def rand_rgba(rng, gen, w, h):
    """A random RGB image (gen_random.rand_image) with a smooth random alpha: fully transparent, fully opaque
    and partly transparent regions."""
    rgb = np.asarray(gr.rand_image(rng, gen, w, h))
    coarse = torch.rand(1, 1, rng.randint(2, 5), rng.randint(2, 5), generator=gen).double()
    a = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    a = ((a - 0.3) * 2.5).clamp(0, 1)
    alpha = (a * 255).round().to(torch.uint8).numpy()
    return Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA")


def make_fixture(out, seed):
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    te_cfg = json.load(open(os.path.join(gr.FIXTURE_MODEL, "transformer", "config.json")))
    cfg = dict(transformer=dict(patch_size=2, in_channels=64, out_channels=16, num_layers=2,
                                attention_head_dim=32, num_attention_heads=2,
                                joint_attention_dim=te_cfg["joint_attention_dim"], axes_dims_rope=[8, 12, 12],
                                guidance_embeds=False, zero_cond_t=False, use_additional_t_cond=True,
                                use_layer3d_rope=True),
               vae=dict(base_dim=4, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1, attn_scales=[],
                        temperal_downsample=[False, True, True], dropout=0.0, input_channels=4),
               qk_gain=2.5)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    gr.build_transformer(cfg, gen, "bfloat16", os.path.join(out, "transformer"))
    gr.build_vae(cfg, gen, "bfloat16", os.path.join(out, "vae"))
    write_model_files(out)
    for c, target in (("text_encoder", "../qwen-image-tiny/text_encoder"),
                      ("tokenizer", "../qwen-image-tiny/tokenizer"),
                      ("processor", "../qwen-image-edit-2509-tiny/processor")):
        os.symlink(target, os.path.join(out, c))
    print(f"gen_layered: fixture {out} (seed {seed})", flush=True)
    del rng


def save(d, path):
    gr.save_tensors(d, path)


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?")
    ap.add_argument("--seed", type=int, default=None, help="default: from the clock (printed)")
    ap.add_argument("--parts", default="transformer,layered")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--layers", type=int, default=None, help="layered: number of layers (default: random 2-3)")
    ap.add_argument("--cfg", default="random", choices=["on", "off", "random"])
    ap.add_argument("--cfg-normalize", default="random", choices=["on", "off", "random"])
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--fixture", default=None, help="write the committed fixture model to this folder and exit")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int(time.time() * 1000) % (2**31)
    torch.set_num_threads(args.threads)
    if args.fixture:
        make_fixture(os.path.abspath(args.fixture), seed if args.seed is not None else 16)
        return
    if not args.out:
        ap.error("OUT is required (or --fixture DIR)")
    print(f"gen_layered: seed {seed}", flush=True)
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    parts = [p for p in args.parts.split(",") if p]
    out = os.path.abspath(args.out)
    mdir = os.path.join(out, "model")
    os.makedirs(mdir, exist_ok=True)
    t0 = time.time()

    import diffusers
    import transformers
    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImageLayeredPipeline
    from transformers import Qwen2Tokenizer

    cfg = layered_configs(rng)
    storage = cfg["storage"]
    need_all = "layered" in parts
    te = gr.build_text_encoder(cfg, gen, storage, os.path.join(mdir, "text_encoder"), "checkpoint") \
        if need_all else None
    tr = gr.build_transformer(cfg, gen, storage, os.path.join(mdir, "transformer"))
    vae = gr.build_vae(cfg, gen, storage, os.path.join(mdir, "vae")) if need_all else None
    shutil.copytree(os.path.join(gr.FIXTURE_MODEL, "tokenizer"), os.path.join(mdir, "tokenizer"), dirs_exist_ok=True)
    shutil.copytree(os.path.join(gr.FIXTURE_EDIT_MODEL, "processor"), os.path.join(mdir, "processor"),
                    dirs_exist_ok=True)
    write_model_files(mdir)
    case = dict(seed=seed, config=cfg, parts={},
                versions=dict(torch=torch.__version__, diffusers=diffusers.__version__,
                              transformers=transformers.__version__, numpy=np.__version__))

    if "transformer" in parts:
        tc = cfg["transformer"]
        B = rng.randint(1, 2)
        layers = rng.randint(1, 4)
        fh, fw = rng.randint(1, 5), rng.randint(1, 5)
        ch, cw = rng.randint(1, 5), rng.randint(1, 5)
        img_shapes = [[1, fh, fw]] * (layers + 1) + [[1, ch, cw]]
        s_img = sum(f * h * w for f, h, w in img_shapes)
        s_txt = rng.randint(3, 12)
        x = torch.randn(B, s_img, 64, generator=gen)
        ctx = torch.randn(B, s_txt, tc["joint_attention_dim"], generator=gen)
        use_mask = rng.random() < 0.5
        mask = torch.ones(B, s_txt, dtype=torch.long)
        if use_mask:
            for b in range(B):
                mask[b, rng.randint(1, s_txt):] = 0
        t = torch.rand(B, generator=gen)
        cond = torch.tensor([rng.randint(0, 1) for _ in range(B)], dtype=torch.long)
        y = tr(hidden_states=x, encoder_hidden_states=ctx, encoder_hidden_states_mask=mask if use_mask else None,
               timestep=t, img_shapes=[[tuple(s) for s in img_shapes]] * B, additional_t_cond=cond,
               return_dict=False)[0]
        d = dict(hidden_states=x, encoder_hidden_states=ctx, timestep=t, additional_t_cond=cond, output=y)
        if use_mask:
            d["encoder_hidden_states_mask"] = mask
        save(d, os.path.join(out, "transformer.safetensors"))
        case["parts"]["transformer"] = dict(img_shapes=img_shapes, mask=use_mask, batch=B, txt_len=s_txt)

    if "layered" in parts:
        tok = Qwen2Tokenizer.from_pretrained(os.path.join(mdir, "tokenizer"))
        proc = gr.load_processor(os.path.join(mdir, "processor"), "default")
        sched = FlowMatchEulerDiscreteScheduler.from_pretrained(os.path.join(mdir, "scheduler"))
        pipe = QwenImageLayeredPipeline(scheduler=sched, vae=vae, text_encoder=te, tokenizer=tok, processor=proc,
                                        transformer=tr)
        pipe.set_progress_bar_config(disable=True)
        layers = args.layers if args.layers is not None else rng.randint(2, 3)
        cfg_on = rng.random() < 0.5 if args.cfg == "random" else args.cfg == "on"
        norm = rng.random() < 0.5 if args.cfg_normalize == "random" else args.cfg_normalize == "on"
        iw, ih = gr.off16(rng, 32, 96), gr.off16(rng, 32, 96)
        image = rand_rgba(rng, gen, iw, ih)
        image.save(os.path.join(out, "layered_image.png"))
        p = dict(image="layered_image.png", image_size=[iw, ih], layers=layers, resolution=640,
                 prompt=gr.rand_prompt(rng), negative_prompt=gr.rand_prompt(rng, 1, 4) if cfg_on else None,
                 true_cfg_scale=round(rng.uniform(1.5, 5.0), 2) if cfg_on else 1.0, cfg_normalize=norm,
                 steps=args.steps, seed=rng.randint(0, 2**31 - 1))
        calls, steps = [], []

        def pre(module, a, kw):
            calls.append(dict(hidden_states=kw["hidden_states"].clone(), timestep=kw["timestep"].clone(),
                              additional_t_cond=kw["additional_t_cond"].clone(), img_shapes=kw["img_shapes"]))

        def post(module, a, kw, output):
            calls[-1]["output"] = output[0].clone()

        def on_step(pipe_, i, t, kw):
            steps.append(kw["latents"].clone())
            return {}

        handles = [tr.register_forward_pre_hook(pre, with_kwargs=True),
                   tr.register_forward_hook(post, with_kwargs=True)]
        t = time.time()
        try:
            res = pipe(image=image, prompt=p["prompt"], negative_prompt=p["negative_prompt"],
                       true_cfg_scale=p["true_cfg_scale"], layers=layers, num_inference_steps=p["steps"],
                       generator=torch.Generator().manual_seed(p["seed"]), output_type="np",
                       resolution=p["resolution"], cfg_normalize=norm, callback_on_step_end=on_step)
        finally:
            for h in handles:
                h.remove()
        p["seconds"] = round(time.time() - t, 2)
        imgs = np.asarray(res.images[0])  # [layers, H, W, 4] in [0, 1]
        assert imgs.shape[0] == layers and imgs.shape[-1] == 4, imgs.shape
        for i in range(layers):
            png = np.clip(np.round(imgs[i] * 255), 0, 255).astype(np.uint8)
            Image.fromarray(png, mode="RGBA").save(os.path.join(out, f"layered_output_{i}.png"))
        s_noise = steps[0].shape[1]
        first = calls[0]["hidden_states"]
        p["img_shapes"] = [list(s) for s in calls[0]["img_shapes"][0]]
        p["output_size"] = [imgs.shape[2], imgs.shape[1]]
        p["calls"] = len(calls)
        embeds, embeds_mask = pipe.encode_prompt(prompt=p["prompt"], device="cpu")
        d = dict(initial_latents=first[:, :s_noise], image_latents=first[:, s_noise:],
                 timesteps=torch.stack([c["timestep"] for c in calls]),
                 additional_t_cond=calls[0]["additional_t_cond"],
                 noise_preds=torch.stack([c["output"][:, :s_noise] for c in calls]),
                 step_latents=torch.stack(steps), final_latents=steps[-1], layers=torch.from_numpy(imgs),
                 prompt_embeds=embeds)
        save(d, os.path.join(out, "layered.safetensors"))
        case["parts"]["layered"] = p
        print(f"gen_layered: layered {layers} layers {p['output_size']}, cfg {cfg_on} normalize {norm}, "
              f"{p['seconds']} s", flush=True)

    case["seconds"] = round(time.time() - t0, 2)
    with open(os.path.join(out, "case.json"), "w", encoding="utf-8") as f:
        json.dump(case, f, ensure_ascii=False, indent=2)
    print(f"gen_layered: wrote {out} ({case['seconds']} s)", flush=True)


if __name__ == "__main__":
    main()
