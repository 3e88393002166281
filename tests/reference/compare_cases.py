#!/usr/bin/env python3
"""Compares two folders written by gen_random.py for the same seed and parts, e.g. under two reference stacks
(old / new pins) or two options (--edit-processor, --mm-token-types), tensor by tensor and image by image.

    python tests/reference/compare_cases.py A B [--md OUT.md] [--json OUT.json]

Checks first that both drew the same case (same configuration, part parameters, model weights and input
images); then, per part: every common tensor of OUT/<part>.safetensors (float: max abs difference and the
largest |value| of A; integer: exact or how many differ), the text encoder's hidden states / position ids also
on the unpadded tokens only, and the output PNG (max level difference, share of values that differ).
Needs numpy, pillow, safetensors (either venv).
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np
from PIL import Image
from safetensors.numpy import load_file


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights(root):
    out = {}
    mdir = os.path.join(root, "model")
    for comp in sorted(os.listdir(mdir)) if os.path.isdir(mdir) else []:
        d = os.path.join(mdir, comp)
        if os.path.isdir(d):
            for f in sorted(os.listdir(d)):
                if f.endswith(".safetensors"):
                    out[f"{comp}/{f}"] = sha(os.path.join(d, f))
    return out


def strip(p):
    return {k: v for k, v in p.items() if k not in ("seconds", "output_size", "text_encoder_calls", "mrope_3d")}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--md", help="also write the table here")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    ca = json.load(open(os.path.join(args.a, "case.json"), encoding="utf-8"))
    cb = json.load(open(os.path.join(args.b, "case.json"), encoding="utf-8"))
    problems = []
    if ca["seed"] != cb["seed"] or ca["config"] != cb["config"]:
        problems.append("different seed or configuration")
    wa, wb = weights(args.a), weights(args.b)
    if wa != wb:
        problems.append(f"model weights differ: {sorted(k for k in set(wa) | set(wb) if wa.get(k) != wb.get(k))}")
    rows = []
    for part in ca["parts"]:
        if part not in cb["parts"]:
            problems.append(f"part {part} missing in B")
            continue
        pa, pb = ca["parts"][part], cb["parts"][part]
        if strip(pa) != strip(pb):
            problems.append(f"{part}: different parameters")
        inputs = pa["images"] if isinstance(pa.get("images"), list) else \
            [f"{part}_image_{i}.png" for i in range(pa.get("images", 0))]
        for name in inputs + ([pa["mask"]] if isinstance(pa.get("mask"), str) else []):
            if sha(os.path.join(args.a, name)) != sha(os.path.join(args.b, name)):
                problems.append(f"{part}: input {name} differs")
        ta = load_file(os.path.join(args.a, f"{part}.safetensors"))
        tb = load_file(os.path.join(args.b, f"{part}.safetensors"))
        mask = ta.get("attention_mask")
        for k in sorted(set(ta) | set(tb)):
            if k not in ta or k not in tb:
                rows.append(dict(part=part, tensor=k, result=f"only in {'A' if k in ta else 'B'}"))
                continue
            x, y = ta[k], tb[k]
            if x.shape != y.shape:
                rows.append(dict(part=part, tensor=k, result=f"shape {list(x.shape)} vs {list(y.shape)}"))
                continue
            r = dict(part=part, tensor=k, shape=list(x.shape))
            if np.issubdtype(x.dtype, np.floating):
                d = np.abs(x.astype(np.float64) - y.astype(np.float64))
                r.update(max_abs=float(d.max()) if d.size else 0.0, ref=float(np.abs(x).max()) if x.size else 0.0)
                if k == "image" and part != "vae":
                    la, lb = (np.clip(np.round(v * 255), 0, 255).astype(int) for v in (x, y))
                    r.update(levels=int(np.abs(la - lb).max()), differ=float((la != lb).mean()))
            else:
                n = int((x != y).sum())
                r.update(exact=n == 0, differ_count=n)
            # Text encoder: the unpadded tokens (attention_mask (B, S)) of the hidden states / positions.
            if part == "text_encoder" and mask is not None and k in ("hidden_states", "position_ids") and \
                    mask.min() == 0:
                sel = mask.astype(bool)
                xs, ys = (v[..., sel, :] if k == "hidden_states" else v[:, sel] for v in (x, y))
                if np.issubdtype(xs.dtype, np.floating):
                    r["unpadded_max_abs"] = float(np.abs(xs.astype(np.float64) - ys).max())
                else:
                    r["unpadded_exact"] = bool((xs == ys).all())
            rows.append(r)
        png = os.path.join(args.a, f"{part}_output.png")
        if os.path.exists(png):
            ia = np.asarray(Image.open(png)).astype(int)
            ib = np.asarray(Image.open(os.path.join(args.b, f"{part}_output.png"))).astype(int)
            d = np.abs(ia - ib)
            rows.append(dict(part=part, tensor=f"{part}_output.png", levels=int(d.max()), differ=float((d > 0).mean())))

    def fmt(r):
        if "result" in r:
            return r["result"]
        out = []
        if "max_abs" in r:
            out.append(f"max abs {r['max_abs']:.3g} (|A| max {r['ref']:.3g})")
        if "exact" in r:
            out.append("exact" if r["exact"] else f"**{r['differ_count']} differ**")
        if "levels" in r:
            out.append(f"{r['levels']} levels, {100 * r['differ']:.3g} % of values differ")
        if "unpadded_max_abs" in r:
            out.append(f"unpadded tokens: max abs {r['unpadded_max_abs']:.3g}")
        if "unpadded_exact" in r:
            out.append("unpadded tokens: " + ("exact" if r["unpadded_exact"] else "**differ**"))
        return "; ".join(out)

    va, vb = ca.get("versions", {}), cb.get("versions", {})
    lines = [f"A: {args.a} ({json.dumps(va)}, options {json.dumps(ca.get('options', {}))})",
             f"B: {args.b} ({json.dumps(vb)}, options {json.dumps(cb.get('options', {}))})",
             f"seed {ca['seed']}; same case (configuration, parameters, weights, inputs): "
             + ("yes" if not problems else "NO: " + "; ".join(problems)), "",
             "| part | tensor | A vs B |", "|---|---|---|"]
    lines += [f"| {r['part']} | `{r['tensor']}` | {fmt(r)} |" for r in rows]
    md = "\n".join(lines) + "\n"
    print(md)
    if args.md:
        with open(args.md, "w", encoding="utf-8") as f:
            f.write(md)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(a=args.a, b=args.b, problems=problems, rows=rows), f, indent=1)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
