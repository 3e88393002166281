#!/usr/bin/env python3
"""Qwen-Image-2.1 (issue #15) pipeline reference cases: builds a FRESH random tiny QwenImage21Pipeline model folder
(model_index.json, transformer, vae, text_encoder, processor with its tokenizer, scheduler) and runs the real
diffusers 0.42.1 pipeline (pipelines/qwenimage21/pipeline_qwenimage21.py) on it, for
tests/reference/test_reference_qwen21_pipeline.cpp.

    .venv/bin/python tests/reference/gen_qwen21_pipeline.py OUT --seed S [--parts pipeline|model] [--threads 1]

--parts model writes the random tiny model folders only (OUT/model, OUT/model_turbo, OUT/case.json without
cases): the engine tests that compare the engine with itself (memory modes, LoRAs) load it.
--parts lora (issue #14 on 2.1): a FRESH random diffusers/PEFT LoRA (OUT/lora_q21.safetensors: rank 1-4, half of
the transformer's Linear modules, top-level ones included, no alpha metadata = scaling 1) loaded by the real
`load_lora_weights` + peft with a random strength (`set_adapters`), text to image and an edit with one RGBA
reference: OUT/qwen21_lora.safetensors <case>_image [B, H, W, 4] levels, case.json cases.lora_t2i / lora_edit.

Cases (each run with use_kv_cache True and False, 2-3 steps, float32 on CPU):
  batch  text to image with 2 prompts of different lengths (padding, prompt_embeds_mask)
  t2i    text to image at output_resolution (64 or 96), or a given width / height not a multiple of 32 (floored)
  edit   edit with 2 references, one RGBA with transparent pixels (composited over white for the text encoder,
         4 VAE channels), the other RGB, at other sizes than the output; the output size from the last one
  cfg    true CFG (true_cfg_scale > 1, a negative prompt) with 1 reference
  turbo  the same components with model_index.json `sample_sigmas` (OUT/model_turbo): a num_inference_steps
         that the pipeline ignores

OUT/model/, OUT/model_turbo/ (model_index.json + symlinks to ../model's components)
OUT/case.json                 seed, versions, configuration, per-case arguments
OUT/ref_<i>.png               the reference images, as the pipeline read them
OUT/qwen21_pipeline.safetensors  <case>_<kv|nokv>_{latents,image}: final packed latents [B, h*w, C] and the
                              output PNG levels [B, H, W, 4] (float32)
"""
import argparse
import json
import os
import random
import sys
import time

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gen_qwen21 import randomize as randomize_vae  # noqa: E402
from gen_qwen21 import vae_config  # noqa: E402
from gen_qwen21_text_encoder import build_processor as build_te_processor  # noqa: E402
from gen_qwen21_text_encoder import build_text_encoder, make_config, rand_rgba  # noqa: E402
from gen_qwen21_transformer import rand_axes  # noqa: E402
from gen_qwen21_transformer import randomize as randomize_transformer  # noqa: E402
from gen_random import rand_image, rand_prompt, save_tensors  # noqa: E402


def build_processor(out_dir):
    """Qwen3-VL's processor with a small min_pixels, so the tiny reference images keep their size in the text
    encoder (one <|image_pad|> per 2x2 latent tokens, as at the released sizes)."""
    return build_te_processor(out_dir, min_pixels=1024)


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--parts", default="pipeline")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int(time.time() * 1000) % (2**31)
    print(f"gen_qwen21_pipeline: seed {seed}", flush=True)
    torch.set_num_threads(args.threads)
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    out = os.path.abspath(args.out)
    mdir = os.path.join(out, "model")
    os.makedirs(mdir, exist_ok=True)

    import diffusers
    import transformers
    from diffusers import (AutoencoderKLQwenImage21, FlowMatchEulerDiscreteScheduler, QwenImage21Pipeline,
                           QwenImage21Transformer2DModel)

    # Text encoder + processor (tokenizer inside processor/).
    te_cfg = make_config(rng)
    te_cfg["storage"] = "float32"
    te = build_text_encoder(te_cfg, gen, os.path.join(mdir, "text_encoder"), rng.choice(["checkpoint", "native"]))
    proc = build_processor(os.path.join(mdir, "processor"))

    # VAE: 16x, RGBA, z channels = the transformer's in_channels.
    z = rng.choice([8, 16])
    vcfg = vae_config(rng, gen)
    vcfg.update(z_dim=z, latents_mean=[round(v, 4) for v in (torch.randn(z, generator=gen) * 0.5).tolist()],
                latents_std=[round(v, 4) for v in (0.5 + 1.5 * torch.rand(z, generator=gen)).tolist()])
    vae = AutoencoderKLQwenImage21(**vcfg).eval()
    randomize_vae(vae, gen)

    head_dim = rng.choice([8, 16])
    tcfg = dict(patch_size=1, in_channels=z, out_channels=None, num_layers=rng.randint(1, 2),
                attention_head_dim=head_dim, num_attention_heads=rng.randint(1, 2),
                context_in_dim=te_cfg["text"]["hidden_size"], mlp_ratio=rng.randint(1, 3),
                axes_dims_rope=rand_axes(rng, head_dim), eps=1e-6, causal_condition=True)
    transformer = QwenImage21Transformer2DModel(**tcfg).eval()
    randomize_transformer(transformer, gen)
    # Small weights keep the tiny model's predictions O(1).
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
        base_image_seq_len=256, max_image_seq_len=8192, shift_terminal=0.02, time_shift_type="exponential")

    pipe = QwenImage21Pipeline(scheduler=scheduler, vae=vae, text_encoder=te, processor=proc,
                               transformer=transformer)
    pipe.save_pretrained(mdir)
    # A Turbo folder: the same components, sample_sigmas in model_index.json.
    tdir = os.path.join(out, "model_turbo")
    os.makedirs(tdir, exist_ok=True)
    turbo_sigmas = sorted([1.0] + [round(rng.uniform(0.3, 0.99), 6) for _ in range(rng.randint(1, 2))],
                          reverse=True)
    index = json.load(open(os.path.join(mdir, "model_index.json")))
    index["sample_sigmas"] = turbo_sigmas
    json.dump(index, open(os.path.join(tdir, "model_index.json"), "w"), indent=2)
    for part in ("transformer", "vae", "text_encoder", "processor", "scheduler"):
        os.symlink(os.path.join("..", "model", part), os.path.join(tdir, part))
    turbo = QwenImage21Pipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_config(scheduler.config), vae=vae,
                                text_encoder=te, processor=proc, transformer=transformer,
                                sample_sigmas=turbo_sigmas)

    parts = args.parts.split(",")
    if "lora" in parts:
        from safetensors.torch import save_file

        names = [n for n, m in transformer.named_modules() if isinstance(m, torch.nn.Linear)]
        chosen = sorted(rng.sample(names, max(1, len(names) // 2)))
        r = rng.randint(1, 4)
        sd = {}
        for n in chosen:
            m = transformer.get_submodule(n)
            # The LoRA's term about half the layer's own: A ~ N(0, 1/in), B scaled by W's size.
            a = torch.randn(r, m.in_features, generator=gen) / m.in_features ** 0.5
            b = torch.randn(m.out_features, r, generator=gen) * float(m.weight.std()) * (m.in_features / r) ** 0.5 * 0.5
            sd[f"transformer.{n}.lora_A.weight"] = a.contiguous()
            sd[f"transformer.{n}.lora_B.weight"] = b.contiguous()
        lpath = os.path.join(out, "lora_q21.safetensors")
        save_file(sd, lpath)
        strength = round(rng.choice([-1, 1]) * rng.uniform(0.6, 1.5), 3)
        pipe.load_lora_weights(lpath, adapter_name="q21")
        pipe.set_adapters(["q21"], [strength])
        w, h = rng.randint(40, 150), rng.randint(40, 150)
        ref_img = rand_rgba(rng, gen, w, h)
        ref_path = os.path.join(out, "lora_ref.png")
        ref_img.save(ref_path)
        ref_img = Image.open(ref_path)
        ref_img.load()
        res = rng.choice([64, 96])
        cases = {
            "lora_t2i": dict(prompt=rand_prompt(rng, 2, 8), output_resolution=res, num_inference_steps=2,
                             seed=rng.randint(0, 10**6)),
            "lora_edit": dict(prompt=rand_prompt(rng, 2, 8), output_resolution=res, num_inference_steps=2,
                              seed=rng.randint(0, 10**6), images=["lora_ref.png"]),
        }
        d = {}
        for name, c in cases.items():
            kw = {k: v for k, v in c.items() if k not in ("images", "seed")}
            if "images" in c:
                kw["image"] = [ref_img]
            res_ = pipe(**kw, generator=torch.Generator().manual_seed(c["seed"]), output_type="pil")
            d[name + "_image"] = torch.stack([torch.from_numpy(np.array(im)).float() for im in res_.images])
            c["size"] = list(res_.images[0].size)
            c["lora"] = dict(file="lora_q21.safetensors", strength=strength, rank=r, modules=len(chosen))
        save_tensors(d, os.path.join(out, "qwen21_lora.safetensors"))
        case = dict(seed=seed, cases=cases, config=dict(text_encoder=te_cfg, vae=vcfg, transformer=tcfg),
                    versions=dict(torch=torch.__version__, transformers=transformers.__version__,
                                  diffusers=diffusers.__version__))
        json.dump(case, open(os.path.join(out, "case.json"), "w"), indent=2)
        print(json.dumps(cases), flush=True)
        return
    if "pipeline" not in parts:
        case = dict(seed=seed, cases={}, turbo_sigmas=turbo_sigmas,
                    config=dict(text_encoder=te_cfg, vae=vcfg, transformer=tcfg),
                    versions=dict(torch=torch.__version__, transformers=transformers.__version__,
                                  diffusers=diffusers.__version__))
        json.dump(case, open(os.path.join(out, "case.json"), "w"), indent=2)
        return

    # Reference images as PNG files (what the engine reads).
    refs = []
    for i, mode in enumerate(["RGBA", "RGB"]):
        w, h = rng.randint(40, 150), rng.randint(40, 150)
        img = rand_rgba(rng, gen, w, h) if mode == "RGBA" else rand_image(rng, gen, w, h)
        path = os.path.join(out, f"ref_{i}.png")
        img.save(path)
        refs.append(Image.open(path))
        refs[-1].load()

    res = rng.choice([64, 96])
    cases = {
        "t2i": dict(prompt=rand_prompt(rng, 2, 8), output_resolution=res, num_inference_steps=rng.randint(2, 3),
                    seed=rng.randint(0, 10**6)),
        "edit": dict(prompt=rand_prompt(rng, 2, 8), images=[0, 1], output_resolution=res,
                     num_inference_steps=2, seed=rng.randint(0, 10**6)),
        "cfg": dict(prompt=rand_prompt(rng, 2, 8), negative_prompt=rand_prompt(rng, 1, 4), true_cfg_scale=3.0,
                    images=[1], output_resolution=res, num_inference_steps=2, seed=rng.randint(0, 10**6)),
        # Two prompts of different lengths: the padded batch (prompt_embeds_mask) path.
        "batch": dict(prompt=[rand_prompt(rng, 1, 2), rand_prompt(rng, 8, 14)], output_resolution=res,
                      num_inference_steps=2, seed=rng.randint(0, 10**6)),
        "turbo": dict(prompt=rand_prompt(rng, 2, 8), output_resolution=res, num_inference_steps=7,
                      seed=rng.randint(0, 10**6)),
    }
    if rng.random() < 0.5:
        cases["t2i"].update(width=res + rng.randint(1, 31), height=res + 32 + rng.randint(0, 31))

    d = {}
    for name, c in cases.items():
        p = turbo if name == "turbo" else pipe
        for kv in (True, False):
            kw = {k: v for k, v in c.items() if k not in ("images", "seed", "size")}
            if "images" in c:
                kw["image"] = [refs[i] for i in c["images"]]
            last = {}

            def grab(pl, i, t, ck):
                last["latents"] = ck["latents"].clone()
                return {}

            r = p(**kw, generator=torch.Generator().manual_seed(c["seed"]), use_kv_cache=kv, output_type="pil",
                  callback_on_step_end=grab, callback_on_step_end_tensor_inputs=["latents"])
            assert all(img.mode == "RGBA" for img in r.images)
            tag = f"{name}_{'kv' if kv else 'nokv'}"
            d[tag + "_latents"] = last["latents"].float()
            d[tag + "_image"] = torch.stack([torch.from_numpy(np.array(img)).float() for img in r.images])
            c["size"] = list(r.images[0].size)
    case = dict(seed=seed, cases=cases, turbo_sigmas=turbo_sigmas,
                config=dict(text_encoder=te_cfg, vae=vcfg, transformer=tcfg),
                versions=dict(torch=torch.__version__, transformers=transformers.__version__,
                              diffusers=diffusers.__version__))
    save_tensors(d, os.path.join(out, "qwen21_pipeline.safetensors"))
    json.dump(case, open(os.path.join(out, "case.json"), "w"), indent=2)
    print(json.dumps(case["cases"]), flush=True)


if __name__ == "__main__":
    main()
