#!/usr/bin/env python3
"""CPU speed: the engine (`qwen-image generate`) vs the reference (diffusers' QwenImagePipeline) on the same
mid-size random model folder, same size, steps, seed and thread count, in one run.

    .venv/bin/python bench/reference/compare_cpu.py --cli build/daemon/cli/qwen-image \
        [--threads 2] [--width 512 --height 512] [--steps 2,6] [--cfg 1.0] [--seed 1234] [--repeat 3]
        [--work DIR]

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


class Reference:
    """diffusers' QwenImagePipeline, loaded once."""

    def __init__(self, model, args):
        import torch
        from diffusers import QwenImagePipeline

        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)
        self.args = args
        self.pipe = QwenImagePipeline.from_pretrained(model, torch_dtype=torch.float32)
        self.pipe.set_progress_bar_config(disable=True)

    def run(self, steps):
        import numpy as np
        import torch

        args = self.args
        stamps = []

        def cb(p, i, t, kw):
            stamps.append(time.perf_counter())
            return kw

        t0 = time.perf_counter()
        c0 = time.process_time()
        with torch.no_grad():
            img = self.pipe(prompt=PROMPT, negative_prompt=" " if args.cfg > 1 else None,
                            true_cfg_scale=args.cfg, width=args.width, height=args.height,
                            num_inference_steps=steps, generator=torch.Generator().manual_seed(args.seed),
                            output_type="np", callback_on_step_end=cb).images[0]
        total = time.perf_counter() - t0
        return dict(total=total, cpu=time.process_time() - c0,
                    step_intervals=[b - a for a, b in zip(stamps, stamps[1:])],
                    image=np.clip(np.round(img * 255), 0, 255).astype(np.uint8))


def run_cli(cli, model, args, steps, work):
    out = os.path.join(work, f"engine_{steps}.png")
    cmd = [cli, "generate", "--model", model, "--prompt", PROMPT, "--steps", str(steps), "--width",
           str(args.width), "--height", str(args.height), "--seed", str(args.seed), "--threads",
           str(args.threads), "--device", "cpu", "--dtype", "float32", "--quiet", "--output", out]
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
    return dict(total=total, cpu=cpu, output=out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "daemon", "cli", "qwen-image"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--steps", default="2,6", help="two step counts A < B (>= 2: one step gives NaN sigmas)")
    ap.add_argument("--cfg", type=float, default=1.0, help="true_cfg_scale (> 1 adds a negative prompt ' ')")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--model-seed", type=int, default=20251124)
    ap.add_argument("--work", default=None, help="folder for the model and outputs (default: a temp dir)")
    ap.add_argument("--reference-only", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds; medians are reported")
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
    if not args.reference_only and not os.path.exists(args.cli):
        sys.exit(f"engine CLI not found: {args.cli} (build the qwen-image target)")

    # Interleaved rounds (reference A, B, engine A, B), so that a machine whose speed drifts
    # affects both alike; per-step = (T_B - T_A) / (B - A) in each round; medians are reported.
    ref = Reference(model, args)
    ref.run(a)  # warm-up
    rows = []
    for r in range(args.repeat):
        ra, rb = ref.run(a), ref.run(b)
        row = dict(ref_wall=(rb["total"] - ra["total"]) / (b - a), ref_cpu=(rb["cpu"] - ra["cpu"]) / (b - a),
                   ref_cb=statistics.median(rb["step_intervals"]) if rb["step_intervals"] else float("nan"))
        ref_img = rb["image"]
        if not args.reference_only:
            if r == 0:
                run_cli(args.cli, model, args, a, work)  # warm-up (page cache)
            ea, eb = run_cli(args.cli, model, args, a, work), run_cli(args.cli, model, args, b, work)
            row.update(eng_wall=(eb["total"] - ea["total"]) / (b - a), eng_cpu=(eb["cpu"] - ea["cpu"]) / (b - a))
            eng_out = eb["output"]
            print(f"round {r + 1}/{args.repeat}: reference {row['ref_wall']:.3f} s/step, engine "
                  f"{row['eng_wall']:.3f} s/step, ratio {row['eng_wall'] / row['ref_wall']:.3f}", flush=True)
        else:
            print(f"round {r + 1}/{args.repeat}: reference {row['ref_wall']:.3f} s/step", flush=True)
        rows.append(row)

    med = {k: statistics.median(row[k] for row in rows) for k in rows[0]}
    print(f"reference (diffusers QwenImagePipeline): {med['ref_wall']:.3f} s/step wall, {med['ref_cpu']:.3f} "
          f"CPU-s/step (median callback interval {med['ref_cb']:.3f} s); median of {args.repeat} rounds")
    if args.reference_only:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
        return
    print(f"engine (qwen-image generate):            {med['eng_wall']:.3f} s/step wall, {med['eng_cpu']:.3f} "
          f"CPU-s/step; median of {args.repeat} rounds")
    ratios = sorted(row["eng_wall"] / row["ref_wall"] for row in rows)
    print(f"ratio engine/reference per step: wall {med['eng_wall'] / med['ref_wall']:.3f}, CPU "
          f"{med['eng_cpu'] / med['ref_cpu']:.3f} (medians; per-round wall ratios "
          f"{', '.join(f'{x:.3f}' for x in ratios)}; goal <= 1)")
    try:
        import numpy as np
        from PIL import Image

        e = np.asarray(Image.open(eng_out).convert("RGB")).astype(int)
        r = ref_img.astype(int)
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
