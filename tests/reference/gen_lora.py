"""LoRA reference cases (issue #14) on a model folder written by gen_random.py (--model-only): FRESH random LoRA
files in every key style, loaded by the real diffusers code (`load_lora_weights` + peft, `set_adapters` with the
strengths) into the diffusers pipelines, whose images the C++ test (test_reference_lora.cpp) compares with
the engine's.

    .venv/bin/python tests/reference/gen_lora.py OUT --seed S [--cases styles,stacked,lightning,edit_plus]

OUT/model must exist (gen_random.py OUT --model-only). Writes OUT/loras/*.safetensors, OUT/lora_<case>.safetensors
(the float image), OUT/lora_<case>_image_<i>.png (edit inputs) and OUT/lora_case.json (per case: the job and its
LoRA list). Styles: diffusers/PEFT with and without lora_adapter_metadata, ai-toolkit, DiffSynth, kohya/musubi,
lightx2v (with `.alpha`: diffusers does not recognise a bare file without it); random rank (1-4), alpha, dtype
(fp32/bf16/fp16), module subset (every Linear, top-level ones and img_mod/txt_mod included, half of the time)
and strength (negative included), B drawn so that the LoRA's term is about half the layer's own. Every case
also runs without the LoRAs; a case whose LoRAs change the image by < 2 levels is drawn again with stronger
LoRAs (3 times, then the script fails: such a case would prove nothing).
"""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_random as G  # noqa: E402

STYLES = ["diffusers_peft", "diffusers_peft_meta", "aitoolkit", "diffsynth", "kohya", "lightx2v"]

# diffusers' Qwen-Image-Lightning scheduler (the model card / diffusers docs): a fixed shift ln 3.
LIGHTNING_SCHEDULER = {
    "base_image_seq_len": 256, "base_shift": math.log(3), "invert_sigmas": False, "max_image_seq_len": 8192,
    "max_shift": math.log(3), "num_train_timesteps": 1000, "shift": 1.0, "shift_terminal": None,
    "stochastic_sampling": False, "time_shift_type": "exponential", "use_beta_sigmas": False,
    "use_dynamic_shifting": True, "use_exponential_sigmas": False, "use_karras_sigmas": False,
}


def linear_names(tr):
    return [n for n, m in tr.named_modules() if isinstance(m, torch.nn.Linear)]


def make_lora(rng, gen, tr, style, path, gain=1.0):
    """A random LoRA of `style` on `tr`, written to `path`; returns its description. B is drawn so that
    gain * (alpha / r) * B @ A is about half the size of the layer's own product (whatever alpha, r)."""
    names = linear_names(tr)
    mods = names if rng.random() < 0.5 else sorted(rng.sample(names, rng.randint(1, len(names))))
    rank = rng.randint(1, 4)
    dtype = rng.choice([torch.float32, torch.bfloat16, torch.float16])
    alpha = None
    if style in ("kohya", "lightx2v"):
        alpha = rng.choice([1.0, float(rank), rank / 2, 2.0 * rank, 3.0])
    elif style == "diffusers_peft_meta":
        alpha = rng.choice([float(rank), 2.0 * rank, 1.0, 3.0])
    factor = (alpha if alpha is not None else rank) / rank
    sd = {}
    for m in mods:
        lin = tr.get_submodule(m)
        a = (torch.randn(rank, lin.in_features, generator=gen) / math.sqrt(lin.in_features)).to(dtype)
        b = (torch.randn(lin.out_features, rank, generator=gen) * 0.5 * gain / (factor * math.sqrt(rank))).to(dtype)
        if style in ("diffusers_peft", "diffusers_peft_meta"):
            sd[f"transformer.{m}.lora_A.weight"], sd[f"transformer.{m}.lora_B.weight"] = a, b
        elif style == "aitoolkit":
            sd[f"diffusion_model.{m}.lora_A.weight"], sd[f"diffusion_model.{m}.lora_B.weight"] = a, b
        elif style == "diffsynth":
            sd[f"{m}.lora_A.default.weight"], sd[f"{m}.lora_B.default.weight"] = a, b
        else:
            base = "lora_unet_" + m.replace(".", "_") if style == "kohya" else m
            sd[f"{base}.lora_down.weight"], sd[f"{base}.lora_up.weight"] = a, b
            sd[f"{base}.alpha"] = torch.tensor(alpha, dtype=dtype)
    metadata = {"format": "pt"}
    if style == "diffusers_peft_meta":
        cfg = {"r": rank, "lora_alpha": alpha, "target_modules": mods, "use_rslora": rng.random() < 0.3,
               "rank_pattern": {}, "alpha_pattern": {}, "lora_dropout": 0.0, "init_lora_weights": True,
               "bias": "none", "use_dora": False}
        metadata["lora_adapter_metadata"] = json.dumps({f"transformer.{k}": v for k, v in cfg.items()})
    save_file({k: v.contiguous() for k, v in sd.items()}, path, metadata=metadata)
    return dict(style=style, rank=rank, alpha=alpha, dtype=str(dtype).replace("torch.", ""), modules=len(mods),
                all_modules=len(mods) == len(names))


class TooWeak(Exception):
    pass


def strength(rng):
    return round(rng.choice([-1, 1]) * rng.uniform(0.3, 1.5), 3)


def run(pipe, p, loras, out, name, **kw):
    """Runs the pipeline with `loras` ([(file, adapter, strength)]) and without; writes OUT/lora_<name>.safetensors."""
    pipe.set_progress_bar_config(disable=True)

    def call():
        return pipe(prompt=p["prompt"], negative_prompt=p["negative_prompt"],
                    true_cfg_scale=p["true_cfg_scale"] if p["true_cfg_scale"] is not None else 1.0,
                    height=p["height"], width=p["width"], num_inference_steps=p["steps"],
                    generator=torch.Generator().manual_seed(p["seed"]), output_type="np", **kw).images[0]

    base = call()
    for f, adapter, _ in loras:
        pipe.load_lora_weights(f, adapter_name=adapter)
    pipe.set_adapters([a for _, a, _ in loras], adapter_weights=[s for _, _, s in loras])
    t = time.time()
    img = call()
    p["seconds"] = round(time.time() - t, 2)
    pipe.unload_lora_weights()
    levels = int(np.abs(np.round(img * 255) - np.round(base * 255)).max())
    p["levels_vs_no_lora"] = levels
    if levels < 2:
        raise TooWeak(f"gen_lora: case {name}: the LoRAs changed the image by {levels} levels only")
    G.save_tensors(dict(image=torch.from_numpy(img)), os.path.join(out, f"lora_{name}.safetensors"))
    print(f"gen_lora: {name}: {len(loras)} LoRA(s), {levels} levels from the image without, {p['seconds']} s",
          flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--cases", default="styles,stacked,lightning")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed ^ 0x10BA)
    gen = torch.Generator().manual_seed(args.seed ^ 0x10BA)
    out = os.path.abspath(args.out)
    mdir = os.path.join(out, "model")
    ldir = os.path.join(out, "loras")
    os.makedirs(ldir, exist_ok=True)
    cases = [c for c in args.cases.split(",") if c]

    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImagePipeline

    pipe = QwenImagePipeline.from_pretrained(mdir, torch_dtype=torch.float32)
    tr = pipe.transformer
    result = dict(seed=args.seed, cases={})

    def job(steps=None):
        neg, cfg = G.rand_cfg(rng)
        return dict(prompt=G.rand_prompt(rng), negative_prompt=neg, true_cfg_scale=cfg,
                    height=16 * rng.randint(2, 4), width=16 * rng.randint(2, 4),
                    steps=steps or rng.randint(2, 3), seed=rng.randint(0, 2**31 - 1))

    n = 0

    def new_lora(style, name=None, gain=1.0):
        nonlocal n
        n += 1
        path = os.path.join(ldir, name or f"{n}_{style}.safetensors")
        desc = make_lora(rng, gen, tr, style, path, gain)
        return path, f"a{n}", desc

    def attempt(make_case):
        """A case whose LoRAs leave the image (nearly) unchanged proves nothing: drawn again, stronger."""
        for i in range(4):
            try:
                return make_case(2.0 ** i)
            except TooWeak as e:
                print(f"{e}; drawing it again", flush=True)
                if i == 3:
                    raise SystemExit(str(e))

    if "styles" in cases:
        for style in STYLES:
            def case(gain, style=style):
                path, adapter, desc = new_lora(style, gain=gain)
                p = job()
                s = strength(rng)
                p["loras"] = [dict(file=os.path.relpath(path, out), strength=s, **desc)]
                result["cases"][style] = p
                run(pipe, p, [(path, adapter, s)], out, style)
            attempt(case)
    if "stacked" in cases:
        def case(gain):
            a, b = rng.sample(STYLES, 2)
            la, lb = new_lora(a, gain=gain), new_lora(b, gain=gain)
            sa, sb = abs(strength(rng)), -abs(strength(rng))
            p = job()
            p["loras"] = [dict(file=os.path.relpath(la[0], out), strength=sa, **la[2]),
                          dict(file=os.path.relpath(lb[0], out), strength=sb, **lb[2])]
            result["cases"]["stacked"] = p
            run(pipe, p, [(la[0], la[1], sa), (lb[0], lb[1], sb)], out, "stacked")
        attempt(case)
    if "lightning" in cases:
        # A Lightning LoRA (lightx2v layout, named like the released ones): the engine recognises it and
        # takes CFG 1 and shift 3 by itself (true_cfg_scale null = unset); the reference runs diffusers'
        # Lightning scheduler config with true_cfg_scale 1.
        sched = pipe.scheduler
        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(LIGHTNING_SCHEDULER)

        def case(gain):
            path, adapter, desc = new_lora("lightx2v", "Qwen-Image-Lightning-4steps-V1.0-random.safetensors", gain)
            p = job(steps=4)
            p["true_cfg_scale"] = None
            p["loras"] = [dict(file=os.path.relpath(path, out), strength=1.0, **desc)]
            result["cases"]["lightning"] = p
            run(pipe, p, [(path, adapter, 1.0)], out, "lightning")
        attempt(case)
        pipe.scheduler = sched
    if "edit_plus" in cases:
        from diffusers import QwenImageEditPlusPipeline

        edir = os.path.join(out, "edit_model")
        G.make_edit_model(mdir, edir)
        proc = G.load_processor(os.path.join(edir, "processor"), "default")
        epipe = QwenImageEditPlusPipeline(scheduler=pipe.scheduler, vae=pipe.vae, text_encoder=pipe.text_encoder,
                                          tokenizer=pipe.tokenizer, processor=proc, transformer=tr)
        nimg = rng.randint(1, 2)
        sizes = [[G.off16(rng, 32, 64), G.off16(rng, 32, 64)] for _ in range(nimg)]
        images = [G.rand_image(rng, gen, w, h) for w, h in sizes]
        p = job(steps=2)
        p["images"] = [f"lora_edit_plus_image_{i}.png" for i in range(nimg)]
        for im, name in zip(images, p["images"]):
            im.save(os.path.join(out, name))
        probe = G.TextEncoderProbe(pipe.text_encoder, proc, forward_token_types=True)

        def case(gain):
            la, lb = new_lora(rng.choice(STYLES), gain=gain), new_lora(rng.choice(STYLES), gain=gain)
            sa, sb = strength(rng), strength(rng)
            p["loras"] = [dict(file=os.path.relpath(la[0], out), strength=sa, **la[2]),
                          dict(file=os.path.relpath(lb[0], out), strength=sb, **lb[2])]
            result["cases"]["edit_plus"] = p
            run(epipe, p, [(la[0], la[1], sa), (lb[0], lb[1], sb)], out, "edit_plus", image=images)
        try:
            attempt(case)
        finally:
            probe.remove()
    with open(os.path.join(out, "lora_case.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=2)
    print(f"gen_lora: wrote {out}", flush=True)


if __name__ == "__main__":
    main()
