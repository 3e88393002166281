"""Edit-Inpaint reference run: diffusers' QwenImageEditInpaintPipeline on the tiny edit model of the
fixtures (tests/fixtures/qwen-tiny/models/qwen-image-edit-2509-tiny), float32 on the CPU.

    .venv/bin/python tests/reference/gen_edit_inpaint.py OUT_DIR [--seed 11] [--steps 2]

Writes OUT_DIR/image.png (a 96x64 pattern), OUT_DIR/mask.png (white = repaint: the central third),
OUT_DIR/output.png and OUT_DIR/params.json. test_reference_edit_inpaint (QWEN_EDIT_INPAINT_REF=OUT_DIR)
runs the engine on the same inputs and compares the PNGs (within 1 level).
"""

import argparse
import json
import os

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "..", "fixtures", "qwen-tiny", "models", "qwen-image-edit-2509-tiny")


def pattern(w, h):
    # The same pattern as tests/pipelines/test_edit_inpaint.cpp.
    a = np.zeros((h, w, 3), np.uint8)
    for y in range(h):
        for x in range(w):
            a[y, x] = (255 * x // (w - 1), 255 * y // (h - 1), 200 if ((x // 8 + y // 8) % 2) else 40)
    return Image.fromarray(a)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--strength", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from diffusers import QwenImageEditInpaintPipeline

    os.makedirs(a.out, exist_ok=True)
    w, h = 96, 64
    image = pattern(w, h)
    m = np.zeros((h, w), np.uint8)
    m[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3] = 255
    mask = Image.fromarray(m, "L")
    image.save(os.path.join(a.out, "image.png"))
    mask.save(os.path.join(a.out, "mask.png"))
    pipe = QwenImageEditInpaintPipeline.from_pretrained(MODEL, torch_dtype=torch.float32)
    prompt = "Replace the centre with a red ball"
    out = pipe(
        image=image,
        mask_image=mask,
        prompt=prompt,
        negative_prompt=" ",
        true_cfg_scale=4.0,
        num_inference_steps=a.steps,
        strength=a.strength,
        generator=torch.Generator("cpu").manual_seed(a.seed),
    ).images[0]
    out.save(os.path.join(a.out, "output.png"))
    with open(os.path.join(a.out, "params.json"), "w") as f:
        json.dump({"prompt": prompt, "negative_prompt": " ", "true_cfg_scale": 4.0, "steps": a.steps,
                   "strength": a.strength, "seed": a.seed, "size": out.size}, f)
    print("wrote", a.out, out.size)


if __name__ == "__main__":
    main()
