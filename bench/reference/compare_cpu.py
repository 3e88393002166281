#!/usr/bin/env python3
"""CPU speed: the engine (`qwen-image generate`) vs the reference (diffusers' QwenImagePipeline) on the same
mid-size random model folder, same size, steps, seed and thread count, in one run.

    .venv/bin/python bench/reference/compare_cpu.py --cli build-ref/daemon/cli/qwen-image \
        [--threads 2] [--width 512 --height 512] [--steps 2,6] [--cfg 1.0] [--seed 1234] [--work DIR]

Time per denoising step is measured the same way for both: the run is done with two step counts A < B and
per-step = (T_B - T_A) / (B - A) (wall clock of the whole generate call: model load excluded for the reference,
included-but-cancelling for the CLI since both CLI runs load the same folder), so prompt encoding, VAE decoding
and loading cancel out. The reference also reports the median of its per-step callback intervals.
The model folder is written by tests/reference/gen_random.py --size mid (transformer 6 layers x 8 heads x 64,
text encoder 2 layers x 256, VAE base_dim 16, BF16 weights).
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
PROMPT = "A red fox sitting in a snowy forest at sunrise, watercolor"


def run_reference(model, args, steps_list):
    import numpy as np
    import torch
    from diffusers import QwenImagePipeline

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    pipe = QwenImagePipeline.from_pretrained(model, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    res = {}
    images = {}
    for steps in [min(steps_list)] + list(steps_list):  # first call is a warm-up
        stamps = []

        def cb(p, i, t, kw):
            stamps.append(time.perf_counter())
            return kw

        t0 = time.perf_counter()
        c0 = time.process_time()
        with torch.no_grad():
            img = pipe(prompt=PROMPT, negative_prompt=" " if args.cfg > 1 else None, true_cfg_scale=args.cfg,
                       width=args.width, height=args.height, num_inference_steps=steps,
                       generator=torch.Generator().manual_seed(args.seed), output_type="np",
                       callback_on_step_end=cb).images[0]
        total = time.perf_counter() - t0
        res[steps] = dict(total=total, cpu=time.process_time() - c0,
                          step_intervals=[b - a for a, b in zip(stamps, stamps[1:])])
        images[steps] = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
    return res, images


def run_cli(cli, model, args, steps_list, work):
    res = {}
    for steps in [min(steps_list)] + list(steps_list):
        out = os.path.join(work, f"engine_{steps}.png")
        cmd = [cli, "generate", "--model", model, "--prompt", PROMPT, "--steps", str(steps), "--width",
               str(args.width), "--height", str(args.height), "--seed", str(args.seed), "--threads",
               str(args.threads), "--device", "cpu", "--dtype", "float32", "--output", out]
        if args.cfg > 1:
            cmd += ["--negative-prompt", " ", "--true-cfg-scale", str(args.cfg)]
        t0 = time.perf_counter()
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        p = subprocess.run(cmd, capture_output=True, text=True)
        total = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
        if p.returncode != 0:
            sys.exit(f"engine failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
        res[steps] = dict(total=total, cpu=cpu, output=out, log=(p.stdout + p.stderr)[-2000:])
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", default=os.path.join(ROOT, "build-ref", "daemon", "cli", "qwen-image"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--steps", default="2,6", help="two step counts A < B (>= 2: one step gives NaN sigmas)")
    ap.add_argument("--cfg", type=float, default=1.0, help="true_cfg_scale (> 1 adds a negative prompt ' ')")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--model-seed", type=int, default=20251124)
    ap.add_argument("--work", default=None, help="folder for the model and outputs (default: a temp dir)")
    ap.add_argument("--reference-only", action="store_true")
    args = ap.parse_args()
    steps_list = [int(s) for s in args.steps.split(",")]
    assert len(steps_list) == 2 and steps_list[0] < steps_list[1]
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    work = args.work or tempfile.mkdtemp(prefix="qwen-bench-")
    model = os.path.join(work, "model")
    if not os.path.exists(os.path.join(model, "model_index.json")):
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "reference", "gen_random.py"), work, "--seed",
                        str(args.model_seed), "--size", "mid", "--model-only", "--storage", "bfloat16",
                        "--threads", str(args.threads)], check=True)
    cfg = json.load(open(os.path.join(model, "transformer", "config.json")))
    print(f"model: {model}\n  transformer {cfg['num_layers']} layers x {cfg['num_attention_heads']} heads x "
          f"{cfg['attention_head_dim']}; image {args.width}x{args.height} "
          f"({(args.width // 16) * (args.height // 16)} tokens); cfg {args.cfg}; threads {args.threads}")
    a, b = steps_list

    ref, ref_imgs = run_reference(model, args, steps_list)
    ref_step = (ref[b]["total"] - ref[a]["total"]) / (b - a)
    ref_cpu = (ref[b]["cpu"] - ref[a]["cpu"]) / (b - a)
    ref_med = statistics.median(ref[b]["step_intervals"]) if ref[b]["step_intervals"] else float("nan")
    print(f"reference (diffusers QwenImagePipeline): total {a} steps {ref[a]['total']:.2f} s, {b} steps "
          f"{ref[b]['total']:.2f} s -> {ref_step:.3f} s/step wall, {ref_cpu:.3f} CPU-s/step "
          f"(median callback interval {ref_med:.3f} s)")
    if args.reference_only:
        return
    if not os.path.exists(args.cli):
        sys.exit(f"engine CLI not found: {args.cli} (build the qwen-image target)")
    eng = run_cli(args.cli, model, args, steps_list, work)
    eng_step = (eng[b]["total"] - eng[a]["total"]) / (b - a)
    eng_cpu = (eng[b]["cpu"] - eng[a]["cpu"]) / (b - a)
    print(f"engine (qwen-image generate):            total {a} steps {eng[a]['total']:.2f} s, {b} steps "
          f"{eng[b]['total']:.2f} s -> {eng_step:.3f} s/step wall, {eng_cpu:.3f} CPU-s/step")
    print(f"ratio engine/reference per step: wall {eng_step / ref_step:.3f}, CPU {eng_cpu / ref_cpu:.3f}  "
          f"(goal <= 1)")
    try:
        import numpy as np
        from PIL import Image

        e = np.asarray(Image.open(eng[b]["output"]).convert("RGB")).astype(int)
        r = ref_imgs[b].astype(int)
        if e.shape == r.shape:
            d = np.abs(e - r)
            print(f"output images ({b} steps): max |engine - reference| = {d.max()} levels, "
                  f"{(d > 1).mean() * 100:.3f} % of values differ by > 1")
        else:
            print(f"output shapes differ: engine {e.shape}, reference {r.shape}")
    except Exception as ex:  # the comparison is informative only
        print(f"image comparison skipped: {ex}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
