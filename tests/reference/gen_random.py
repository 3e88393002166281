#!/usr/bin/env python3
"""Writes a FRESH random tiny Qwen-Image model folder (diffusers layout) plus inputs and reference outputs
computed by the real diffusers / transformers code, for the differential tests (tests/reference/*.cpp) and
the CPU benchmark (bench/reference/compare_cpu.py).

    .venv/bin/python tests/reference/gen_random.py OUT --seed S [--parts transformer,vae,text_encoder,t2i]
                                                   [--size tiny|mid] [--threads 1]

Parts: transformer, vae, text_encoder (components); t2i, img2img, inpaint (QwenImagePipeline,
QwenImageImg2ImgPipeline, QwenImageInpaintPipeline on OUT/model); edit, edit_plus, edit_inpaint
(QwenImageEditPipeline, QwenImageEditPlusPipeline, QwenImageEditInpaintPipeline on OUT/edit_model);
vision_processor (no model: random images of random sizes and modes through both Qwen2-VL image
processors, the default torchvision one and the PIL one; OUT/vision_processor_image_<i>.png).
formats (issue #12; --formats picks the files): a model whose matrices fit the GGUF blocks (formats_config), its
transformer as city96 GGUF files (Q8_0, Q5_0, Q4_0, Q4_K_M) and ComfyUI fp8 scaled files (comfy_quant, legacy), its text
encoder as a llama.cpp GGUF (Q8_0) and a Comfy fp8 scaled file (quant_formats.py), and one text-to-image job run
by QwenImagePipeline once per file with that component's weights replaced by the file's dequantisation
(OUT/formats/<file>, OUT/formats_<name>.safetensors).

OUT/model/              model_index.json, transformer/, vae/, text_encoder/, tokenizer/, scheduler/
                        (weights stored as BF16 or F32, chosen at random; tokenizer + scheduler config copied
                        from the project's fixtures)
OUT/edit_model/         (edit parts) the same components (symlinks to OUT/model) plus processor/ (copied from
                        the fixture edit model) and an edit model_index.json (QwenImageEditPlusPipeline)
OUT/case.json           seed, library versions, the random configuration, per-part parameters
OUT/<part>.safetensors  inputs and reference outputs of each part (float32 / int64)
OUT/<part>_output.png   the reference pipeline's image of each pipeline part; its input images are
                        OUT/<part>_image_<i>.png and OUT/<part>_mask.png (white = repaint), named in case.json

The edit pipelines and the text_encoder part's vision inputs run with the image processor a plain
from_pretrained gives (--edit-processor default: the torchvision one, transformers 4: Qwen2VLImageProcessorFast,
5: Qwen2VLImageProcessor), which the engine follows by default; --edit-processor pil selects the PIL one
(transformers 4: the slow Qwen2VLImageProcessor, use_fast=False; 5: Qwen2VLImageProcessorPil), the engine's
`vision_processor = pil` (README.md there).

transformers 5 computes Qwen2.5-VL's 3-D M-RoPE positions only when the processor's mm_token_type_ids reach
the model; diffusers (<= 0.42.1) does not pass them (diffusers issue #14194), so out of the box the image
tokens get plain 1-D positions. The model was trained with the 3-D positions (transformers 4 computes them
from input_ids), and the engine implements them: the text encoder gets mm_token_type_ids through a forward
pre-hook, as diffusers' fix (PR #14189) passes them, and every text-encoder call with images is checked to
have used 3-D positions (--mm-token-types omit: the out-of-the-box 1-D behaviour, for measurements only).

Runs under transformers 4.57 / diffusers 0.39 and transformers 5 / diffusers 0.42 alike (same seed, same
weights and inputs: bench/tests compare the two stacks with compare_cases.py).

All reference computations are float32 on CPU from the stored (BF16-exact when BF16) weights.
"""
import argparse
import inspect
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


def transformers_major():
    import transformers

    return int(transformers.__version__.split(".")[0])


def load_processor(path, backend="pil"):
    """Qwen2VLProcessor of `path` with the PIL image processor (backend "pil", what the engine implements:
    transformers 4 `use_fast=False` -> Qwen2VLImageProcessor, transformers 5 Qwen2VLImageProcessorPil; there
    `backend="pil"` fails for the video processor), or what a plain from_pretrained gives ("default": the
    torchvision-based Qwen2VLImageProcessorFast (4) / Qwen2VLImageProcessor (5))."""
    from transformers import Qwen2VLProcessor

    if backend == "default":
        return Qwen2VLProcessor.from_pretrained(path)
    if transformers_major() >= 5:
        from transformers import Qwen2VLImageProcessorPil

        proc = Qwen2VLProcessor.from_pretrained(path, image_processor=Qwen2VLImageProcessorPil.from_pretrained(path))
        expected = "Qwen2VLImageProcessorPil"
    else:
        proc = Qwen2VLProcessor.from_pretrained(path, use_fast=False)
        expected = "Qwen2VLImageProcessor"
    assert type(proc.image_processor).__name__ == expected, type(proc.image_processor)
    return proc


def vision_embeds(te, pixel_values, grid_thw):
    """The merged vision-tower output (transformers 4 returns the tensor, 5 a BaseModelOutputWithPooling)."""
    out = te.model.visual(pixel_values, grid_thw=grid_thw)
    return out.pooler_output if hasattr(out, "pooler_output") else out


class TextEncoderProbe:
    """Hooks on a Qwen2_5_VLForConditionalGeneration that
    - record, for every call, the position ids its language model really rotates with (the argument of the
      rotary embedding: (3, B, S)), the attention mask and the last hidden state;
    - reset the cached rope_deltas before each call (transformers caches them on the model) and read them after;
    - with forward_token_types (transformers >= 5 only: 4.x computes the 3-D positions from input_ids itself),
      add mm_token_type_ids to a call with pixel_values that lacks them, as diffusers' fix for issue #14194
      (PR #14189) forwards the processor's, so that the image tokens get the 3-D M-RoPE positions the model
      was trained with. Without it transformers 5 silently uses 1-D positions for them."""

    def __init__(self, te, proc=None, forward_token_types=True):
        self.te = te
        self.proc = proc
        self.calls = []
        supports = "mm_token_type_ids" in inspect.signature(te.forward).parameters
        self.forward_token_types = forward_token_types and supports
        self.handles = [te.register_forward_pre_hook(self._pre, with_kwargs=True),
                        te.register_forward_hook(self._post, with_kwargs=True),
                        te.model.language_model.rotary_emb.register_forward_hook(self._rotary)]

    def _pre(self, module, args, kwargs):
        assert not args, "text encoder called with positional arguments"
        self.te.model.rope_deltas = None
        images = kwargs.get("pixel_values") is not None
        if images and self.forward_token_types and kwargs.get("mm_token_type_ids") is None:
            ids = kwargs["input_ids"]
            if self.proc is not None:
                types = torch.tensor(self.proc.create_mm_token_type_ids(ids.tolist()), dtype=torch.long)
            else:
                types = (ids == self.te.config.image_token_id).long()
            kwargs = dict(kwargs, mm_token_type_ids=types.to(ids.device))
        self.calls.append(dict(images=images, input_ids=kwargs.get("input_ids"),
                               attention_mask=kwargs.get("attention_mask"),
                               token_types_given=kwargs.get("mm_token_type_ids") is not None))
        return args, kwargs

    def _rotary(self, module, args, output):
        self.calls[-1]["position_ids"] = args[1].detach().clone()

    def _post(self, module, args, kwargs, output):
        c = self.calls[-1]
        c["rope_deltas"] = self.te.model.rope_deltas
        if output.hidden_states is not None:
            c["last_hidden_state"] = output.hidden_states[-1].detach().clone()
        pos = c["position_ids"]
        # 3-D M-RoPE: the h / w rows differ at the image tokens (every image has >= 2x2 merged patches); the
        # 1-D fallback gives three equal rows.
        c["mrope_3d"] = not torch.equal(pos[0], pos[1]) or not torch.equal(pos[0], pos[2])

    def check_3d(self, what):
        """Asserts that every call with images used 3-D positions; returns the number of such calls."""
        img = [c for c in self.calls if c["images"]]
        bad = [i for i, c in enumerate(img) if not c["mrope_3d"]]
        assert not bad, f"{what}: text encoder calls {bad} (of {len(img)} with images) used 1-D positions"
        return len(img)

    def remove(self):
        for h in self.handles:
            h.remove()


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


PIPELINE_PARTS = ("t2i", "img2img", "inpaint", "edit", "edit_plus", "edit_inpaint", "formats")
EDIT_PARTS = ("edit", "edit_plus", "edit_inpaint")


def off16(rng, lo, hi):
    """A random side in [lo, hi] that is not a multiple of 16."""
    while True:
        v = rng.randint(lo, hi)
        if v % 16:
            return v


def rand_image(rng, gen, w, h):
    """A random RGB image: a smooth random colour field plus pixel noise of random strength. In float64, so that
    torch versions (whose float32 bicubic kernels round differently) write the same 8-bit image."""
    coarse = torch.rand(1, 3, rng.randint(2, 6), rng.randint(2, 6), generator=gen).double()
    smooth = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[0]
    noise = torch.rand(3, h, w, generator=gen).double()
    a = rng.choice([0.0, 0.2, 1.0])
    x = ((1 - a) * smooth + a * noise).clamp(0, 1).permute(1, 2, 0)
    return Image.fromarray((x * 255).round().to(torch.uint8).numpy())


def rand_mask(rng, w, h):
    """1-3 random rectangles (mostly 255, sometimes a grey near the 0.5 binarization threshold) on black."""
    m = np.zeros((h, w), np.uint8)
    for _ in range(rng.randint(1, 3)):
        x0, x1 = sorted(rng.sample(range(w + 1), 2))
        y0, y1 = sorted(rng.sample(range(h + 1), 2))
        m[y0:y1, x0:x1] = rng.choice([255, 255, rng.randint(96, 160)])
    return Image.fromarray(m)


def rand_cfg(rng):
    """(negative prompt or None, true_cfg_scale): CFG on half of the time."""
    on = rng.random() < 0.5
    return (rand_prompt(rng, 0, 4) if on else None), (round(rng.uniform(1.5, 5.0), 2) if on else 1.0)


def rand_strength(rng, steps):
    """Strength in [0.2, 1]. Above 1 - 1/steps the job starts from pure noise (the pipelines keep all steps
    and the input image only enters through the inpaint blend / edit condition): 3 of 4 draws stay below."""
    edge = 1.0 - 1.0 / steps
    return round(rng.uniform(0.2, edge) if rng.random() < 0.75 else rng.uniform(edge, 1.0), 2)


def run_pipeline(pipe, out, part, p, **kw):
    """Runs the pipeline of part `part` with the parameters `p` (its case.json entry) plus `kw` (images,
    mask, strength) and writes OUT/<part>.safetensors (the float image) and OUT/<part>_output.png."""
    pipe.set_progress_bar_config(disable=True)
    t = time.time()
    img = pipe(prompt=p["prompt"], negative_prompt=p["negative_prompt"], true_cfg_scale=p["true_cfg_scale"],
               height=p["height"], width=p["width"], num_inference_steps=p["steps"],
               generator=torch.Generator().manual_seed(p["seed"]), output_type="np", **kw).images[0]
    p["seconds"] = round(time.time() - t, 2)
    png = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
    Image.fromarray(png).save(os.path.join(out, f"{part}_output.png"))
    save_tensors(dict(image=torch.from_numpy(img)), os.path.join(out, f"{part}.safetensors"))
    p["output_size"] = [png.shape[1], png.shape[0]]
    print(f"gen_random: {part} {p['output_size'][0]}x{p['output_size'][1]}, {p['seconds']} s", flush=True)


def make_edit_model(mdir, edir):
    """OUT/edit_model: the components of OUT/model (relative symlinks) + processor/ + an edit model_index."""
    os.makedirs(edir, exist_ok=True)
    for c in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        link = os.path.join(edir, c)
        if not os.path.lexists(link):
            os.symlink(os.path.join("..", os.path.basename(mdir), c), link)
    # copytree follows the fixture's vocab.json / merges.txt symlinks: real files here.
    shutil.copytree(os.path.join(FIXTURE_EDIT_MODEL, "processor"), os.path.join(edir, "processor"),
                    dirs_exist_ok=True)
    shutil.copy(os.path.join(FIXTURE_EDIT_MODEL, "model_index.json"), os.path.join(edir, "model_index.json"))


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
    # Gain on the transformer's q/k RMSNorm weights (attention logits scale with its square). With
    # the plain N(0, 1/fan_in) draw the attention over the thousands of tokens of an edit job is
    # nearly uniform, so its output (and the image) hardly depends on the prompt or the condition
    # images: a mirrored input image changed the edit output by < 1 level. A gain of 2-3 makes the
    # attention peaked and the images depend on every input (mirroring: ~35-95 levels at gain 2.95).
    qk_gain = round(rng.uniform(2.0, 3.0), 2) if size == "tiny" else 1.0
    return dict(transformer=transformer, text=text, vision=vision, vae=vae, storage=storage, qk_gain=qk_gain)


def build_text_encoder(cfg, gen, storage, out_dir, te_config_layout="checkpoint"):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    base = json.load(open(os.path.join(FIXTURE_MODEL, "text_encoder", "config.json")))
    t = cfg["text"]
    text_config = dict(base["text_config"])
    text_config.update(hidden_size=t["hidden_size"], num_hidden_layers=t["num_hidden_layers"],
                       num_attention_heads=t["num_attention_heads"], num_key_value_heads=t["num_key_value_heads"],
                       intermediate_size=t["intermediate_size"], max_window_layers=t["num_hidden_layers"],
                       layer_types=["full_attention"] * t["num_hidden_layers"])
    rope = {"mrope_section": t["mrope_section"], "rope_type": "default", "type": "default"}
    if transformers_major() >= 5:
        # transformers 5 reads `rope_parameters` (rope_theta inside) and drops a `rope_scaling` kwarg.
        for k in ("rope_scaling", "rope_theta"):
            text_config.pop(k, None)
        text_config["rope_parameters"] = dict(rope, rope_theta=t["rope_theta"])
        rope_keys = ("rope_parameters",)
    else:
        text_config.update(rope_scaling=rope, rope_theta=t["rope_theta"])
        rope_keys = ("rope_scaling", "rope_theta")
    top = {k: v for k, v in base.items() if k not in ("text_config", "vision_config", "architectures",
                                                      "transformers_version", "torch_dtype", "model_type",
                                                      "rope_scaling", "rope_theta")}
    top.update({k: text_config[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                            "num_key_value_heads", "intermediate_size", "max_window_layers")
                + rope_keys})
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
    if te_config_layout == "checkpoint":
        checkpoint_config_layout(os.path.join(out_dir, "config.json"))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out_dir, "model.safetensors"),
              metadata={"format": "pt"})
    te = Qwen2_5_VLForConditionalGeneration.from_pretrained(out_dir, dtype=torch.float32,
                                                            attn_implementation="eager").eval()
    # The M-RoPE split must survive the round trip (else transformers silently uses [16, 24, 24]).
    rotary = te.model.language_model.rotary_emb
    if hasattr(rotary, "mrope_section"):  # transformers 5
        got = list(rotary.mrope_section)
    else:  # transformers 4: the attention reads config.rope_scaling
        got = list(te.model.language_model.layers[0].self_attn.rope_scaling["mrope_section"])
    assert got == list(t["mrope_section"]), f"mrope_section {got} != {t['mrope_section']}"
    return te


def checkpoint_config_layout(path):
    """Rewrites a text-encoder config.json saved by transformers 5 (`rope_parameters` with rope_theta inside)
    in the layout of the real Qwen-Image checkpoint and of transformers 4 (`rope_scaling` + `rope_theta`), at
    the top level and in text_config. Both transformers 4 and 5 read it."""
    with open(path, encoding="utf-8") as f:
        c = json.load(f)
    changed = False
    for d in (c, c.get("text_config", {})):
        rp = d.pop("rope_parameters", None)
        if rp is None:
            continue
        d["rope_theta"] = rp["rope_theta"]
        d["rope_scaling"] = {k: v for k, v in rp.items() if k != "rope_theta"}
        changed = True
    if not changed:
        return
    with open(path, "w", encoding="utf-8") as f:
        json.dump(c, f, indent=2, sort_keys=True)


def build_transformer(cfg, gen, storage, out_dir):
    from diffusers import QwenImageTransformer2DModel

    model = QwenImageTransformer2DModel(**cfg["transformer"]).eval()
    randomize(model, gen)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.rsplit(".", 2)[-2] in ("norm_q", "norm_k", "norm_added_q", "norm_added_k"):
                p.mul_(cfg.get("qk_gain", 1.0))
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


def vision_processor_part(seed, out, case):
    """Random images (noise or smooth, modes RGB / RGBA / L / LA, sides 20-400 px, some already multiples of 28)
    through both Qwen2-VL image processors of the fixture edit model, one call per image: pixel_values and
    image_grid_thw of each (default_* / pil_*). Draws from its own generators (the other parts' draws do not
    change)."""
    rng = random.Random(seed ^ 0x715)
    nrng = np.random.default_rng(seed ^ 0x715)
    procs = {b: load_processor(os.path.join(FIXTURE_EDIT_MODEL, "processor"), b).image_processor
             for b in ("default", "pil")}
    d, images = {}, []
    for i in range(12):
        if i % 4 == 3:
            w, h = 28 * rng.randint(2, 8), 28 * rng.randint(2, 8)
        else:
            w, h = rng.randint(20, 400), rng.randint(20, 400)
        if i % 2 == 0:
            a = nrng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        else:
            c = torch.from_numpy(nrng.random((1, 4, rng.randint(2, 6), rng.randint(2, 6))))
            sm = torch.nn.functional.interpolate(c, size=(h, w), mode="bicubic", align_corners=False)[0]
            sm = sm.permute(1, 2, 0).numpy() * 0.8 + 0.2 * nrng.random((h, w, 4))
            a = np.clip(np.round(sm * 255), 0, 255).astype(np.uint8)
        mode = ["RGB", "RGBA", "L", "LA"][rng.randint(0, 3)]
        im = Image.fromarray(a, "RGBA")
        im = im.convert(mode) if mode != "LA" else im.convert("LA")
        name = f"vision_processor_image_{i}.png"
        im.save(os.path.join(out, name))
        images.append(dict(file=name, mode=mode, size=[w, h]))
        for b, ip in procs.items():
            r = ip(images=[im], return_tensors="pt")
            d[f"{b}_pixel_values_{i}"] = r["pixel_values"]
            d[f"{b}_image_grid_thw_{i}"] = r["image_grid_thw"]
    save_tensors(d, os.path.join(out, "vision_processor.safetensors"))
    case["parts"]["vision_processor"] = dict(images=images,
                                             processors={b: type(p).__name__ for b, p in procs.items()})


# The formats part (issue #12): quantised single files of the random model, each with the reference image of its
# dequantised weights (write_format; the writers are in quant_formats.py).
FORMATS = ("gguf_Q8_0", "gguf_Q5_0", "gguf_Q4_0", "gguf_Q4_K_M", "gguf_Q2_K", "gguf_IQ4_XS", "fp8_comfy_quant", "fp8_legacy",
           "fp8_e4m3fn", "fp8_e5m2", "comfy_bf16", "comfy_fp16", "te_gguf_Q8_0", "te_fp8_legacy")


# The ggml types each GGUF format must contain (test_reference_formats.cpp checks them too).
FORMAT_TYPES = {"gguf_Q8_0": ["Q8_0"], "gguf_Q5_0": ["Q5_0", "Q5_1"], "gguf_Q4_0": ["Q4_0", "Q4_1"], "gguf_Q4_K_M": ["Q4_K", "Q5_K", "Q6_K"],
                "gguf_Q2_K": ["Q2_K", "Q3_K"], "gguf_IQ4_XS": ["IQ4_XS", "IQ4_NL"],
                "te_gguf_Q8_0": ["Q8_0"]}


def formats_config(rng, cfg):
    """A random tiny configuration whose matrices all fit the GGUF blocks (issue #12 formats part): transformer
    inner dimension 256 (2 or 4 heads; every transformer-block matrix has rows of 256 or 1024 values, so Q4_K /
    Q5_K / Q6_K super-blocks fit, as in the real 3072-wide model), text encoder hidden 32 or 64 (rows of
    multiples of 32: Q8_0 fits every text-encoder matrix, token embedding included)."""
    t = cfg["transformer"]
    heads = rng.choice([2, 4])
    t.update(num_attention_heads=heads, attention_head_dim=256 // heads,
             axes_dims_rope=even_split(rng, 256 // heads, 3))
    te = cfg["text"]
    txt_heads = rng.choice([1, 2, 4])
    hidden = rng.choice([32, 64])
    te.update(hidden_size=hidden, num_attention_heads=txt_heads,
              num_key_value_heads=rng.choice([d for d in (1, 2, 4) if txt_heads % d == 0]),
              intermediate_size=hidden * rng.choice([2, 3, 4]),
              mrope_section=[m // 2 for m in even_split(rng, hidden // txt_heads, 3)])
    t["joint_attention_dim"] = hidden
    cfg["vision"]["out_hidden_size"] = hidden
    cfg["formats"] = True


def write_format(name, rng, fdir, tr, te):
    """Writes format `name` into fdir; returns (component, file name, dequantised state dict, storage counts,
    details)."""
    import quant_formats as qf

    if name.startswith("gguf_"):
        main = name[len("gguf_"):]
        # Q4_K_M: Q4_K matrices, Q6_K down-projections, Q5_K attention in block 0 (city96's lcpp.patch mix).
        kind, layer0 = {"Q4_K_M": ("Q4_K", "Q5_K")}.get(main, (main, None))
        f = f"transformer-{main}.gguf"
        deq, types = qf.transformer_gguf(tr.state_dict(), os.path.join(fdir, f), kind, layer0)
        need = set(FORMAT_TYPES[name]) - set(types)
        assert not need, f"{name}: no tensor of type {sorted(need)} in {types}"
        return "transformer", f, deq, types, dict(layout="city96")
    if name in ("fp8_e4m3fn", "fp8_e5m2"):
        # Plain fp8 (ComfyUI's *_fp8_e4m3fn / e5m2 repacks): 2-D weights fp8 with no scale, the rest BF16,
        # under model.diffusion_model.; dequantised as ComfyUI does, float(w).
        dtype = torch.float8_e4m3fn if name == "fp8_e4m3fn" else torch.float8_e5m2
        f = f"transformer_{name}.safetensors"
        deq, types = qf.fp8_plain(tr.state_dict(), os.path.join(fdir, f), dtype)
        return "transformer", f, deq, types, dict(prefix="model.diffusion_model.")
    if name in ("comfy_bf16", "comfy_fp16"):
        # ComfyUI bf16 / fp16 single files, with or without the model.diffusion_model. prefix (at random).
        # The weights are perturbed (1 % of each tensor's spread) before they are written: a model stored in
        # bf16 / fp16 already would otherwise give a file equal to the folder's weights, and the comparison
        # would not show that the engine read the file.
        dtype = torch.bfloat16 if name == "comfy_bf16" else torch.float16
        prefix = "model.diffusion_model." if rng.random() < 0.5 else ""
        f = f"transformer_{name}.safetensors"
        g = torch.Generator().manual_seed(rng.randint(0, 2**31 - 1))
        sd = {k: v.float() + 0.01 * (v.float().std() if v.numel() > 1 else v.float().abs()).clamp(min=1e-3)
              * torch.randn(v.shape, generator=g) for k, v in tr.state_dict().items()}
        deq, types = qf.half_single_file(sd, os.path.join(fdir, f), dtype, prefix)
        return "transformer", f, deq, types, dict(prefix=prefix)
    if name.startswith("fp8_"):
        scheme = name[len("fp8_"):]
        sd = tr.state_dict()
        f = f"transformer_fp8_{scheme}.safetensors"
        if scheme == "legacy":
            # Every Linear weight fp8, scale [] or [1] (ComfyUI's own / community converters).
            scale_shape = () if rng.random() < 0.5 else (1,)
            deq, types = qf.fp8_scaled(sd, os.path.join(fdir, f), "legacy",
                                       lambda k: k.endswith(".weight") and sd[k].dim() == 2, scale_shape=scale_shape)
            return "transformer", f, deq, types, dict(scale_shape=list(scale_shape))
        # fp8mixed: the transformer-block Linear weights except block 0's modulation; per-layer comfy_quant
        # tensors or the header's _quantization_metadata; the model.diffusion_model. prefix half of the time.
        header = rng.random() < 0.5
        prefix = "model.diffusion_model." if rng.random() < 0.5 else ""
        deq, types = qf.fp8_scaled(
            sd, os.path.join(fdir, f), "comfy_quant",
            lambda k: (k.startswith("transformer_blocks.") and k.endswith(".weight") and sd[k].dim() == 2
                       and not k.startswith(("transformer_blocks.0.img_mod", "transformer_blocks.0.txt_mod"))),
            prefix=prefix, header_metadata=header)
        return "transformer", f, deq, types, dict(header_metadata=header, prefix=prefix)
    if name.startswith("te_gguf_"):
        main = name[len("te_gguf_"):]
        f = f"text_encoder-{main}.gguf"
        deq, types = qf.text_encoder_gguf(te.state_dict(), os.path.join(fdir, f), main)
        assert main in types, f"{name}: no {main} tensor in {types}"
        return "text_encoder", f, deq, types, dict(layout="llama.cpp")
    if name == "te_fp8_legacy":
        # Comfy-Org's qwen_2.5_vl_7b_fp8_scaled layout: transformers-legacy names (model.layers.*, visual.*),
        # the language model's Linear weights fp8 with scale_weight, the rest BF16.
        sd = {}
        for k, v in te.state_dict().items():
            k2 = k.replace("model.language_model.", "model.", 1).replace("model.visual.", "visual.", 1)
            sd[k2] = v
        f = "text_encoder_fp8_scaled.safetensors"
        deq, types = qf.fp8_scaled(sd, os.path.join(fdir, f), "legacy",
                                   lambda k: k.startswith("model.layers.") and k.endswith(".weight") and sd[k].dim() == 2)
        back = {}
        for k, v in deq.items():
            if k.startswith("model."):
                k = "model.language_model." + k[len("model."):]
            elif k.startswith("visual."):
                k = "model." + k
            back[k] = v
        return "text_encoder", f, back, types, dict(layout="transformers-legacy")
    raise SystemExit(f"unknown format {name} (one of {', '.join(FORMATS)})")


def formats_part(args, rng, out, mdir, case, tr, te, vae, tok):
    """One text-to-image job (random prompt, CFG, size, steps, seed), run by diffusers' QwenImagePipeline on the
    model's own weights and once per quantised file with that component's weights replaced by the file's
    dequantisation (gguf.quants.dequantize of the file read back / ComfyUI's float(w) * scale).
    OUT/formats/<file>, OUT/formats_<name>.safetensors (image), case.json parts.formats.files."""
    import copy

    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImagePipeline

    fdir = os.path.join(out, "formats")
    os.makedirs(fdir, exist_ok=True)
    p = dict(prompt=rand_prompt(rng))
    p["negative_prompt"], p["true_cfg_scale"] = rand_cfg(rng)
    p["height"], p["width"] = 16 * rng.randint(2, 5), 16 * rng.randint(2, 5)
    p["steps"] = rng.randint(2, 3)
    p["seed"] = rng.randint(0, 2**31 - 1)

    def run(transformer, text_encoder):
        sched = FlowMatchEulerDiscreteScheduler.from_pretrained(os.path.join(mdir, "scheduler"))
        pipe = QwenImagePipeline(scheduler=sched, vae=vae, text_encoder=text_encoder, tokenizer=tok,
                                 transformer=transformer)
        pipe.set_progress_bar_config(disable=True)
        return pipe(prompt=p["prompt"], negative_prompt=p["negative_prompt"], true_cfg_scale=p["true_cfg_scale"],
                    height=p["height"], width=p["width"], num_inference_steps=p["steps"],
                    generator=torch.Generator().manual_seed(p["seed"]), output_type="np").images[0]

    def levels(img):
        return np.clip(np.round(img * 255), 0, 255).astype(np.int32)

    t = time.time()
    base = levels(run(tr, te))
    p["seconds"] = round(time.time() - t, 2)  # one reference run (the unquantised weights)
    p["files"] = []
    for name in [n for n in args.formats.split(",") if n]:
        t = time.time()
        comp, f, deq, types, details = write_format(name, rng, fdir, tr, te)
        model = copy.deepcopy(tr if comp == "transformer" else te)
        orig = model.state_dict()
        change = max(float((deq[k] - orig[k].float()).abs().max()) for k in orig)
        model.load_state_dict(deq, strict=True)
        img = run(model, te) if comp == "transformer" else run(tr, model)
        save_tensors(dict(image=torch.from_numpy(img)), os.path.join(out, f"formats_{name}.safetensors"))
        e = dict(name=name, component=comp, file=f"formats/{f}", storage=types, max_weight_change=change,
                 levels_vs_unquantised=int(np.abs(levels(img) - base).max()), seconds=round(time.time() - t, 2),
                 bytes=os.path.getsize(os.path.join(fdir, f)), **details)
        p["files"].append(e)
        print(f"gen_random: formats {name}: {f} {e['bytes']} bytes, {types}, weights change <= {change:.3g}, "
              f"image {e['levels_vs_unquantised']} levels from the unquantised one, {e['seconds']} s", flush=True)
        del model
    case["parts"]["formats"] = p


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
    ap.add_argument("--edit-processor", default="default", choices=["pil", "default"],
                    help="image processor of the edit parts and the text_encoder part's vision inputs: what a "
                         "plain from_pretrained gives (torchvision-based; the engine's default), or the PIL one "
                         "(the engine's vision_processor = pil)")
    ap.add_argument("--mm-token-types", default="forward", choices=["forward", "omit"],
                    help="transformers 5: forward mm_token_type_ids to the text encoder in the edit pipelines "
                         "(3-D M-RoPE, as diffusers PR #14189) or omit them as diffusers <= 0.42.1 does (1-D)")
    ap.add_argument("--formats", default=",".join(FORMATS),
                    help="formats part: the quantised files to write and run (comma-separated; " + ", ".join(FORMATS)
                         + ")")
    ap.add_argument("--te-config", default="random", choices=["checkpoint", "native", "random"],
                    help="text-encoder config.json layout: the real checkpoint's (rope_scaling + rope_theta), as "
                         "this transformers saves it (transformers 5: rope_parameters), or one of the two at "
                         "random (default; drawn from its own generator, so the other draws do not change)")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int(time.time() * 1000) % (2**31)
    print(f"gen_random: seed {seed}", flush=True)
    if args.te_config == "random":
        args.te_config = random.Random(seed ^ 0x5EED).choice(["checkpoint", "native"])
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
    if "formats" in parts:
        formats_config(random.Random(seed ^ 0xF0F0), cfg)
    if args.size == "tiny" and any(p in parts for p in EDIT_PARTS):
        # The edit jobs run at ~1 MP whatever the input size (VAE-encoded condition images, the default
        # output size): cap the VAE width and the transformer so that each part stays well under a minute.
        cfg["vae"]["base_dim"] = 4
        cfg["transformer"]["num_layers"] = min(cfg["transformer"]["num_layers"], 2)
        cfg["transformer"]["num_attention_heads"] = min(cfg["transformer"]["num_attention_heads"], 2)
    # Components are drawn in a fixed order (same seed -> same weights); only those a part needs are built.
    need_all = args.model_only or any(p in parts for p in PIPELINE_PARTS)
    te = build_text_encoder(cfg, gen, storage, os.path.join(mdir, "text_encoder"), args.te_config) \
        if need_all or "text_encoder" in parts else None
    tr = build_transformer(cfg, gen, storage, os.path.join(mdir, "transformer")) \
        if need_all or "transformer" in parts else None
    vae = build_vae(cfg, gen, storage, os.path.join(mdir, "vae")) if need_all or "vae" in parts else None
    shutil.copytree(os.path.join(FIXTURE_MODEL, "tokenizer"), os.path.join(mdir, "tokenizer"), dirs_exist_ok=True)
    shutil.copytree(os.path.join(FIXTURE_MODEL, "scheduler"), os.path.join(mdir, "scheduler"), dirs_exist_ok=True)
    shutil.copy(os.path.join(FIXTURE_MODEL, "model_index.json"), os.path.join(mdir, "model_index.json"))
    tok = Qwen2Tokenizer.from_pretrained(os.path.join(mdir, "tokenizer"))
    if any(p in parts for p in EDIT_PARTS):
        make_edit_model(mdir, os.path.join(out, "edit_model"))
    import PIL
    import torchvision

    case = dict(seed=seed, size=args.size, config=cfg, parts={},
                options=dict(edit_processor=args.edit_processor, mm_token_types=args.mm_token_types,
                             te_config=args.te_config),
                versions=dict(torch=torch.__version__, diffusers=diffusers.__version__,
                              transformers=transformers.__version__, torchvision=torchvision.__version__,
                              numpy=np.__version__, pillow=PIL.__version__))
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
        probe = TextEncoderProbe(te)
        o = te(input_ids=b["input_ids"], attention_mask=b["attention_mask"], output_hidden_states=True)
        # The positions the model really used. Padded tokens (right padding): transformers 4 gives them
        # position 1 (get_rope_index on the attention mask), transformers 5 continues the arange; no pipeline
        # reads their hidden states, and the differential test compares the unpadded tokens only.
        pos = probe.calls[-1]["position_ids"]
        d = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"], position_ids=pos,
                 hidden_states=torch.stack(list(o.hidden_states)))
        # Vision path: one or two random images through the processor (--edit-processor) and the whole model,
        # called as transformers documents it (model(**processor outputs): transformers 5 adds
        # mm_token_type_ids).
        proc = load_processor(os.path.join(FIXTURE_EDIT_MODEL, "processor"), args.edit_processor)
        nimg = rng.randint(1, 2)
        images = []
        for i in range(nimg):
            w, h = 28 * rng.randint(1, 4) + rng.randint(0, 27), 28 * rng.randint(1, 4) + rng.randint(0, 27)
            arr = (torch.rand(h, w, 3, generator=gen) * 255).round().to(torch.uint8).numpy()
            images.append(Image.fromarray(arr))
            images[-1].save(os.path.join(out, f"text_encoder_image_{i}.png"))
        pre = "".join(f"Picture {i + 1}: <|vision_start|><|image_pad|><|vision_end|>" for i in range(nimg))
        vp = rand_prompt(rng)
        mi = proc(text=[EDIT_TEMPLATE.format(pre + vp)], images=images, padding=True, return_tensors="pt")
        ov = te(**mi, output_hidden_states=True)
        probe.check_3d("text_encoder part")
        vl = probe.calls[-1]
        probe.remove()
        d.update(vl_input_ids=mi["input_ids"], vl_attention_mask=mi["attention_mask"],
                 vl_pixel_values=mi["pixel_values"], vl_image_grid_thw=mi["image_grid_thw"],
                 vl_position_ids=vl["position_ids"], vl_rope_deltas=vl["rope_deltas"],
                 vl_last_hidden_state=ov.hidden_states[-1],
                 vl_image_embeds=vision_embeds(te, mi["pixel_values"], mi["image_grid_thw"]))
        save_tensors(d, os.path.join(out, "text_encoder.safetensors"))
        case["parts"]["text_encoder"] = dict(prompts=prompts, vl_prompt=vp, images=nimg,
                                             image_processor=type(proc.image_processor).__name__)

    if "vision_processor" in parts:
        vision_processor_part(seed, out, case)

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
        Image.fromarray(png).save(os.path.join(out, "t2i_output.png"))
        save_tensors(dict(image=torch.from_numpy(img)), os.path.join(out, "t2i.safetensors"))
        case["parts"]["t2i"] = dict(prompt=prompt, negative_prompt=neg, true_cfg_scale=scale, height=H, width=W,
                                    steps=steps, seed=pseed)

    def scheduler():
        return FlowMatchEulerDiscreteScheduler.from_pretrained(os.path.join(mdir, "scheduler"))

    # Img2Img / Inpaint on OUT/model: a random input image whose sides are not multiples of 16, resized
    # by the pipeline to a random output size (multiples of 16); random strength; inpaint: a random mask.
    for part in ("img2img", "inpaint"):
        if part not in parts:
            continue
        from diffusers import QwenImageImg2ImgPipeline, QwenImageInpaintPipeline

        cls = QwenImageInpaintPipeline if part == "inpaint" else QwenImageImg2ImgPipeline
        pipe = cls(scheduler=scheduler(), vae=vae, text_encoder=te, tokenizer=tok, transformer=tr)
        iw, ih = off16(rng, 32, 96), off16(rng, 32, 96)
        image = rand_image(rng, gen, iw, ih)
        p = dict(images=[f"{part}_image_0.png"], image_sizes=[[iw, ih]])
        image.save(os.path.join(out, p["images"][0]))
        kw = dict(image=image)
        if part == "inpaint":
            kw["mask_image"] = rand_mask(rng, iw, ih)
            p["mask"] = f"{part}_mask.png"
            kw["mask_image"].save(os.path.join(out, p["mask"]))
        p["prompt"] = rand_prompt(rng)
        p["negative_prompt"], p["true_cfg_scale"] = rand_cfg(rng)
        p["height"], p["width"] = 16 * rng.randint(2, 5), 16 * rng.randint(2, 5)
        p["steps"] = rng.randint(2, 4)
        p["strength"] = kw["strength"] = rand_strength(rng, p["steps"])
        p["seed"] = rng.randint(0, 2**31 - 1)
        case["parts"][part] = p
        run_pipeline(pipe, out, part, p, **kw)

    # Edit / Edit-Plus / Edit-Inpaint on OUT/edit_model with the PIL image processor (--edit-processor) and the
    # text encoder's 3-D M-RoPE (--mm-token-types; TextEncoderProbe).
    if any(p in parts for p in EDIT_PARTS):
        from diffusers import QwenImageEditInpaintPipeline, QwenImageEditPipeline, QwenImageEditPlusPipeline

        case["edit_model"] = "edit_model"
        proc = load_processor(os.path.join(out, "edit_model", "processor"), args.edit_processor)
        case["edit_image_processor"] = type(proc.image_processor).__name__
    for part in EDIT_PARTS:
        if part not in parts:
            continue
        cls = dict(edit=QwenImageEditPipeline, edit_plus=QwenImageEditPlusPipeline,
                   edit_inpaint=QwenImageEditInpaintPipeline)[part]
        pipe = cls(scheduler=scheduler(), vae=vae, text_encoder=te, tokenizer=tok, processor=proc, transformer=tr)
        nimg = rng.randint(1, 3) if part == "edit_plus" else 1
        sizes = []
        while len(sizes) < nimg:
            size = [off16(rng, 32, 96), off16(rng, 32, 96)]
            if size not in sizes:
                sizes.append(size)
        images = [rand_image(rng, gen, w, h) for w, h in sizes]
        p = dict(images=[f"{part}_image_{i}.png" for i in range(nimg)], image_sizes=sizes)
        for im, name in zip(images, p["images"]):
            im.save(os.path.join(out, name))
        kw = dict(image=images if part == "edit_plus" else images[0])
        if part == "edit_inpaint":
            kw["mask_image"] = rand_mask(rng, *sizes[0])
            p["mask"] = f"{part}_mask.png"
            kw["mask_image"].save(os.path.join(out, p["mask"]))
        p["prompt"] = rand_prompt(rng)
        p["negative_prompt"], p["true_cfg_scale"] = rand_cfg(rng)
        # Edit / Edit-Plus: an explicit small output size half of the time, else (null) the reference's
        # default, ~1024x1024 of the input's / last input's aspect ratio (Edit-Inpaint: always). Three
        # images: always a small output size and 2 steps (else ~16k image tokens per step).
        p["height"] = p["width"] = None
        if part != "edit_inpaint" and (nimg == 3 or rng.random() < 0.5):
            p["height"], p["width"] = 16 * rng.randint(2, 5), 16 * rng.randint(2, 5)
        p["steps"] = 2 if nimg == 3 else rng.randint(2, 3)
        if part == "edit_inpaint":
            p["strength"] = kw["strength"] = rand_strength(rng, p["steps"])
        p["seed"] = rng.randint(0, 2**31 - 1)
        case["parts"][part] = p
        probe = TextEncoderProbe(te, proc, forward_token_types=args.mm_token_types == "forward")
        extra = {}
        try:
            run_pipeline(pipe, out, part, p, **kw)
            calls = [c for c in probe.calls if c["images"]]
            p["text_encoder_calls"] = len(calls)
            p["mrope_3d"] = [c["mrope_3d"] for c in calls]
            if args.mm_token_types == "forward":
                probe.check_3d(part)
            # The prompt encodings (last hidden state of each call with images: prompt, negative prompt), for
            # comparisons between stacks and options (compare_cases.py); the C++ test reads `image` only.
            for i, c in enumerate(calls):
                extra[f"text_encoder_last_hidden_state_{i}"] = c["last_hidden_state"]
                extra[f"text_encoder_position_ids_{i}"] = c["position_ids"]
        finally:
            probe.remove()
        if extra:
            path = os.path.join(out, f"{part}.safetensors")
            from safetensors.torch import load_file

            save_tensors(dict(load_file(path), **extra), path)

    if "formats" in parts:
        formats_part(args, rng, out, mdir, case, tr, te, vae, tok)

    case["seconds"] = round(time.time() - t0, 2)
    with open(os.path.join(out, "case.json"), "w", encoding="utf-8") as f:
        json.dump(case, f, ensure_ascii=False, indent=2)
    print(f"gen_random: wrote {out} ({case['seconds']} s)", flush=True)


if __name__ == "__main__":
    main()
