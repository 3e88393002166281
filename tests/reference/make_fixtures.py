#!/usr/bin/env python3
"""Regenerates the tokenizer / text-encoder / vision cases of tests/fixtures/qwen-tiny with the REAL libraries
(transformers' Qwen2Tokenizer (4.x: slow + fast; 5.x has one, tokenizers-backed), Qwen2VLProcessor with the PIL
image processor (4.x: slow Qwen2VLImageProcessor, 5.x: Qwen2VLImageProcessorPil), Qwen2_5_VLForConditionalGeneration
in float32, diffusers' Qwen-Image pipelines for the prompt encoding) and compares every tensor with the committed
fixtures. Runs under transformers 4.57 / diffusers 0.39 and transformers 5 / diffusers 0.42.

With transformers 5 the edit prompt encodings get the processor's mm_token_type_ids (gen_random.TextEncoderProbe,
as diffusers PR #14189 forwards them: the 3-D M-RoPE of transformers 4 and of the engine); what diffusers 0.42.1
computes out of the box (1-D positions for the image tokens, diffusers issue #14194), with the PIL and with the
default (torchvision) image processor, is reported as extra rows.

    .venv/bin/python tests/reference/make_fixtures.py OUT_DIR [--fixtures tests/fixtures/qwen-tiny]

Writes OUT_DIR/cases/<case>/ in the committed format (inputs.json copied, tensors regenerated),
OUT_DIR/compare.json (per tensor: max abs diff or exact/not exact) and OUT_DIR/compare.md. Never writes into
the fixture folder. Extra comparisons that are not part of the fixture format (fast tokenizer, fast image
processor, sdpa attention) are reported under "extra" in compare.json.
"""
import argparse
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_FIXTURES = os.path.normpath(os.path.join(HERE, "..", "fixtures", "qwen-tiny"))


def versions():
    import diffusers
    import transformers

    return {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "pillow": Image.__version__,
    }


class Comparer:
    def __init__(self):
        self.rows = []  # (case, name, kind, value, shape_ok, note)

    def tensor(self, case, name, new, old, note=""):
        new = new.detach().cpu()
        if old is None:
            self.rows.append((case, name, "missing-in-fixture", None, None, note))
            return
        old = old.detach().cpu()
        if tuple(new.shape) != tuple(old.shape):
            self.rows.append((case, name, "shape", f"{list(new.shape)} vs {list(old.shape)}", False, note))
            return
        if new.dtype.is_floating_point or old.dtype.is_floating_point:
            d = (new.double() - old.double()).abs()
            m = float(d.max()) if d.numel() else 0.0
            ref = float(old.double().abs().max()) if old.numel() else 0.0
            self.rows.append((case, name, "max_abs", m, True, note or f"|ref|max {ref:.3g}"))
        else:
            ne = int((new.long() != old.long()).sum())
            self.rows.append((case, name, "exact", ne == 0, True, note or (f"{ne} of {old.numel()} differ" if ne else "")))

    def ids(self, case, name, new, old, note=""):
        same = new == old
        self.rows.append((case, name, "exact", same, True, note))

    def to_json(self):
        return [dict(case=c, tensor=n, kind=k, value=v, shape_ok=s, note=no) for c, n, k, v, s, no in self.rows]

    def to_md(self):
        out = ["| case | tensor | result | note |", "|---|---|---|---|"]
        for c, n, k, v, s, no in self.rows:
            if k == "max_abs":
                r = f"max abs {v:.3g}"
            elif k == "exact":
                r = "ids exact" if v else "**NOT exact**"
            elif k == "shape":
                r = f"**shape differs** {v}"
            else:
                r = k
            out.append(f"| {c} | `{n}` | {r} | {no} |")
        return "\n".join(out)


def load_json(p):
    with open(p, encoding="utf-8") as f:
        return json.load(f)


def dump_json(obj, p):
    with open(p, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="output folder (created; must not be the fixture folder)")
    ap.add_argument("--fixtures", default=DEFAULT_FIXTURES)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--attn", default="eager", choices=["eager", "sdpa"],
                    help="attention implementation of the text encoder (fixtures: math formulation = eager)")
    ap.add_argument("--skip-edit", action="store_true", help="skip the (slower) ~1 MP edit case")
    args = ap.parse_args()

    fx = os.path.abspath(args.fixtures)
    out = os.path.abspath(args.out)
    if os.path.realpath(out).startswith(os.path.realpath(fx)):
        sys.exit("refusing to write into the fixture folder")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    os.makedirs(os.path.join(out, "cases"), exist_ok=True)

    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2Tokenizer, Qwen2TokenizerFast

    from gen_random import TextEncoderProbe, load_processor, transformers_major, vision_embeds

    tf5 = transformers_major() >= 5

    t0 = time.time()
    cmp = Comparer()
    extra = {}
    t2i_dir = os.path.join(fx, "models", "qwen-image-tiny")
    edit_dir = os.path.join(fx, "models", "qwen-image-edit-2509-tiny")
    # transformers 5 has one Qwen2Tokenizer (tokenizers-backed; Qwen2TokenizerFast is the same class): "slow"
    # is then that tokenizer too.
    tok_slow = Qwen2Tokenizer.from_pretrained(os.path.join(t2i_dir, "tokenizer"))
    tok_fast = Qwen2TokenizerFast.from_pretrained(os.path.join(t2i_dir, "tokenizer"))
    extra["tokenizer_classes"] = [f"{type(t).__module__}.{type(t).__name__}" for t in (tok_slow, tok_fast)]

    def case_dir(name):
        d = os.path.join(out, "cases", name)
        os.makedirs(d, exist_ok=True)
        src = os.path.join(fx, "cases", name)
        for f in os.listdir(src):
            if f.endswith(".json") and f != "expected.json":
                shutil.copy(os.path.join(src, f), d)
        return src, d

    # ---------------------------------------------------------------- tokenizer_corpus
    src, dst = case_dir("tokenizer_corpus")
    texts = load_json(os.path.join(src, "inputs.json"))["texts"]
    old = load_json(os.path.join(src, "expected.json"))["input_ids"]
    slow = [tok_slow.encode(t, add_special_tokens=False) for t in texts]
    fast = [tok_fast.encode(t, add_special_tokens=False) for t in texts]
    dump_json({"input_ids": slow}, os.path.join(dst, "expected.json"))
    dump_json({"input_ids": fast}, os.path.join(dst, "expected_fast.json"))
    bad_slow = [i for i in range(len(texts)) if slow[i] != old[i]]
    bad_fast = [i for i in range(len(texts)) if fast[i] != old[i]]
    cmp.ids("tokenizer_corpus", "input_ids (slow Qwen2Tokenizer)", not bad_slow,
            True, f"{len(bad_slow)} of {len(texts)} strings differ" + (f": {bad_slow[:10]}" if bad_slow else ""))
    cmp.ids("tokenizer_corpus", "input_ids (Qwen2TokenizerFast)", not bad_fast,
            True, f"{len(bad_fast)} of {len(texts)} strings differ" + (f": {bad_fast[:10]}" if bad_fast else ""))
    extra["tokenizer_corpus_differences"] = [
        {"index": i, "text": texts[i], "fixture": old[i], "slow": slow[i], "fast": fast[i]}
        for i in sorted(set(bad_slow) | set(bad_fast))]

    # ---------------------------------------------------------------- tokenizer_templates
    src, dst = case_dir("tokenizer_templates")
    inp = load_json(os.path.join(src, "inputs.json"))
    new_inp = dict(inp)
    new_cases = []
    for i, c in enumerate(inp["cases"]):
        for tname, tok in (("slow", tok_slow), ("fast", tok_fast)):
            ids = tok(c["text"])["input_ids"]
            cmp.ids("tokenizer_templates", f"cases[{i}].input_ids ({c['kind']}, {tname})", ids == c["input_ids"],
                    True, "" if ids == c["input_ids"] else f"len {len(ids)} vs {len(c['input_ids'])}")
            cmp.ids("tokenizer_templates", f"cases[{i}].template_prefix_ids ({tname})",
                    ids[:c["drop_idx"]] == c["template_prefix_ids"], True)
            if tname == "slow":
                nc = dict(c)
                nc["input_ids"] = ids
                nc["template_prefix_ids"] = ids[:c["drop_idx"]]
                new_cases.append(nc)
    new_inp["cases"] = new_cases
    dump_json(new_inp, os.path.join(dst, "inputs.json"))
    oldb = load_file(os.path.join(src, "batch.safetensors"))
    for tname, tok in (("slow", tok_slow), ("fast", tok_fast)):
        b = tok(inp["batch_texts"], max_length=1058, padding=True, truncation=True, return_tensors="pt")
        if tname == "slow":
            save_file({"input_ids": b["input_ids"].long().contiguous(),
                       "attention_mask": b["attention_mask"].long().contiguous()},
                      os.path.join(dst, "batch.safetensors"), metadata={"format": "pt"})
        for k in ("input_ids", "attention_mask"):
            cmp.tensor("tokenizer_templates", f"batch.{k} ({tname})", b[k], oldb[k])

    # ---------------------------------------------------------------- text encoder (shared)
    te = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        os.path.join(t2i_dir, "text_encoder"), dtype=torch.float32, attn_implementation=args.attn).eval()
    torch.set_grad_enabled(False)
    # Records the positions the model really used (the calls below pass mm_token_type_ids themselves, or
    # through a second probe in edit_case).
    probe = TextEncoderProbe(te, forward_token_types=False)

    from diffusers import QwenImageEditPipeline, QwenImageEditPlusPipeline, QwenImagePipeline

    # ---------------------------------------------------------------- text_encoder_t2i
    src, dst = case_dir("text_encoder_t2i")
    inp = load_json(os.path.join(src, "inputs.json"))
    old = load_file(os.path.join(src, "tensors.safetensors"))
    texts = [inp["template"].format(p) for p in inp["prompts"]]
    b = tok_slow(texts, **inp["tokenizer_call"], return_tensors="pt")
    o = te(input_ids=b["input_ids"], attention_mask=b["attention_mask"], output_hidden_states=True)
    pos = probe.calls[-1]["position_ids"]
    hs = torch.stack(list(o.hidden_states))
    pipe = QwenImagePipeline.from_pretrained(t2i_dir, text_encoder=te, torch_dtype=torch.float32)
    pe, pm = pipe._get_qwen_prompt_embeds(inp["prompts"], device=torch.device("cpu"))
    epe, epm = pipe.encode_prompt(inp["prompts"], device=torch.device("cpu"), num_images_per_prompt=1,
                                  max_sequence_length=inp["encode_prompt_max_sequence_length"])
    new = {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"], "position_ids": pos,
           "hidden_states": hs, "prompt_embeds": pe, "prompt_embeds_mask": pm,
           "encode_prompt_embeds": epe}
    if epm is not None:
        new["encode_prompt_mask"] = epm
    extra["text_encoder_t2i_encode_prompt_mask_is_none"] = epm is None
    for k, v in new.items():
        cmp.tensor("text_encoder_t2i", k, v, old.get(k))
    # The padded tokens' positions / hidden states changed in transformers 5 (continued arange instead of 1);
    # no pipeline reads them: the unpadded tokens alone.
    valid = b["attention_mask"].bool()
    if old.get("position_ids") is not None and not valid.all():
        cmp.tensor("text_encoder_t2i", "position_ids (unpadded tokens)", pos[:, valid], old["position_ids"][:, valid])
        cmp.tensor("text_encoder_t2i", "hidden_states (unpadded tokens)", hs[:, valid], old["hidden_states"][:, valid])
    save_tensors(new, os.path.join(dst, "tensors.safetensors"))
    del pipe

    # ---------------------------------------------------------------- vision_processor
    src, dst = case_dir("vision_processor")
    inp = load_json(os.path.join(src, "inputs.json"))
    old = load_file(os.path.join(src, "tensors.safetensors"))
    imgs = [Image.open(os.path.join(src, f)).convert("RGB") for f in inp["images"]]
    for f in inp["images"]:
        shutil.copy(os.path.join(src, f), dst)
    proc_dir = os.path.join(edit_dir, "processor")
    proc_pil = load_processor(proc_dir, "pil")
    proc_default = load_processor(proc_dir, "default")
    extra["default_image_processor"] = type(proc_default.image_processor).__name__
    pv = proc_pil.image_processor(images=imgs, return_tensors="pt")
    vis = te.model.visual
    grid = pv["image_grid_thw"]
    rot = rot_pos_emb(vis, grid)
    widx, cuw = window_index(vis, grid)
    cus = torch.nn.functional.pad(torch.repeat_interleave(grid[:, 1] * grid[:, 2], grid[:, 0]).cumsum(0), (1, 0))
    emb = vision_embeds(te, pv["pixel_values"].float(), grid)
    new = {"pixel_values": pv["pixel_values"], "image_grid_thw": grid, "rotary_pos_emb": rot,
           "window_index": widx, "cu_window_seqlens": cuw, "cu_seqlens": cus, "image_embeds": emb}
    for k, v in new.items():
        cmp.tensor("vision_processor", k, v, old.get(k))
    save_tensors(new, os.path.join(dst, "tensors.safetensors"))
    name = type(proc_default.image_processor).__name__
    pvf = proc_default.image_processor(images=imgs, return_tensors="pt")
    cmp.tensor("vision_processor", f"pixel_values (default: {name})", pvf["pixel_values"], old["pixel_values"])
    cmp.tensor("vision_processor", f"image_embeds (from the {name} pixel_values)",
               vision_embeds(te, pvf["pixel_values"].float(), pvf["image_grid_thw"]), old["image_embeds"])

    # ---------------------------------------------------------------- edit / edit plus text encoding
    from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus import calculate_dimensions

    def edit_case(name, pipe_cls, area):
        src, dst = case_dir(name)
        inp = load_json(os.path.join(src, "inputs.json"))
        old = load_file(os.path.join(src, "tensors.safetensors"))
        pipe = pipe_cls.from_pretrained(edit_dir, text_encoder=te, torch_dtype=torch.float32)
        extra[f"{name}_default_processor"] = (type(pipe.processor.image_processor).__name__,
                                              type(pipe.processor.tokenizer).__name__)
        default_processor = pipe.processor
        # The fixtures use the PIL image processor; force it.
        pipe.processor = load_processor(proc_dir, "pil")
        extra[f"{name}_used_processor"] = (type(pipe.processor.image_processor).__name__,
                                           type(pipe.processor.tokenizer).__name__)
        conds = []
        for i, f in enumerate(inp["images"]):
            shutil.copy(os.path.join(src, f), dst)
            img = Image.open(os.path.join(src, f)).convert("RGB")
            w, h = calculate_dimensions(area, img.size[0] / img.size[1])
            c = pipe.image_processor.resize(img, h, w)
            c.save(os.path.join(dst, f"condition_image_{i}.png"))
            oldc = np.asarray(Image.open(os.path.join(src, inp["condition_images"][i])).convert("RGB"))
            newc = np.asarray(c)
            if oldc.shape != newc.shape:
                cmp.rows.append((name, f"condition_image_{i}.png", "shape", f"{newc.shape} vs {oldc.shape}", False, ""))
            else:
                dd = np.abs(oldc.astype(int) - newc.astype(int))
                cmp.rows.append((name, f"condition_image_{i}.png", "max_abs", float(dd.max()), True,
                                 f"pixels (0-255), {int((dd > 0).sum())} values differ"))
            conds.append(c)
        img_arg = conds if pipe_cls is QwenImageEditPlusPipeline else conds[0]
        pil_proc = pipe.processor

        def encode(proc, forward_token_types):
            """_get_qwen_prompt_embeds with `proc`; transformers 5: with / without mm_token_type_ids."""
            pipe.processor = proc
            p = TextEncoderProbe(te, proc, forward_token_types=forward_token_types)
            try:
                pe, pm = pipe._get_qwen_prompt_embeds(inp["prompt"], img_arg, device=torch.device("cpu"))
                three_d = all(c["mrope_3d"] for c in p.calls if c["images"])
            finally:
                p.remove()
                pipe.processor = pil_proc
            return pe, pm, three_d

        # What else a diffusers user may get: the default (torchvision) processor, and (transformers 5,
        # diffusers <= 0.42.1 out of the box) 1-D positions for the image tokens.
        dname = type(default_processor.image_processor).__name__
        variants = [(f"default processor {dname}, 3-D M-RoPE", default_processor, True)]
        if tf5:
            variants += [("PIL processor, 1-D positions (diffusers 0.42.1 out of the box)", pil_proc, False),
                         (f"default processor {dname}, 1-D positions (diffusers 0.42.1 out of the box)",
                          default_processor, False)]
        for label, proc, fwd in variants:
            pe_v, _, three_d = encode(proc, fwd)
            cmp.tensor(name, f"prompt_embeds ({label})", pe_v, old["prompt_embeds"],
                       note="3-D positions" if three_d else "1-D positions")
        mi = pil_proc(text=[inp["text"]], images=conds, padding=True, return_tensors="pt")
        o = te(**mi, output_hidden_states=True)
        call = probe.calls[-1]
        assert call["mrope_3d"], "the image tokens did not get 3-D positions"
        pos, deltas = call["position_ids"], call["rope_deltas"]
        pe, pm, three_d = encode(pil_proc, True)
        assert three_d
        p = mi["pixel_values"].double()
        new = {"input_ids": mi["input_ids"], "attention_mask": mi["attention_mask"],
               "image_grid_thw": mi["image_grid_thw"], "position_ids": pos, "rope_deltas": deltas,
               "last_hidden_state": o.hidden_states[-1], "pixel_values_head": mi["pixel_values"][:64],
               "pixel_values_row_sum": p.sum(1).float(), "pixel_values_row_abs_sum": p.abs().sum(1).float(),
               "prompt_embeds": pe, "prompt_embeds_mask": pm}
        for k, v in new.items():
            cmp.tensor(name, k, v, old.get(k))
        save_tensors(new, os.path.join(dst, "tensors.safetensors"))

    edit_case("text_encoder_edit_plus", QwenImageEditPlusPipeline, 384 * 384)
    if not args.skip_edit:
        edit_case("text_encoder_edit", QwenImageEditPipeline, 1024 * 1024)

    vers = versions()
    dump_json({"reference": vers, "attn_implementation": args.attn, "fixtures": fx, "rows": cmp.to_json(),
               "extra": extra, "seconds": round(time.time() - t0, 1)}, os.path.join(out, "compare.json"))
    md = (f"Regenerated with torch {vers['torch']}, diffusers {vers['diffusers']}, transformers "
          f"{vers['transformers']} (attention: {args.attn}) vs the committed fixtures.\n\n" + cmp.to_md() + "\n")
    with open(os.path.join(out, "compare.md"), "w", encoding="utf-8") as f:
        f.write(md)
    print(md)
    for k, v in extra.items():
        if k != "tokenizer_corpus_differences":
            print(f"{k}: {v}")
    for d in extra.get("tokenizer_corpus_differences", []):
        print("corpus diff:", json.dumps(d, ensure_ascii=False))
    print(f"done in {time.time() - t0:.1f} s -> {out}")


def rot_pos_emb(vis, grid):
    """The vision tower's rotary angles (N, head_dim / 2) in patch order: transformers 4 `rot_pos_emb`; 5 has
    the h / w position ids (vision_utils.get_vision_position_ids) times the axial inverse frequencies."""
    if hasattr(vis, "rot_pos_emb"):
        return vis.rot_pos_emb(grid)
    from transformers.vision_utils import get_vision_position_ids

    pos = get_vision_position_ids(grid, vis.spatial_merge_size)
    return (pos[..., None].float() * vis.rotary_pos_emb.inv_freq).flatten(1)


def window_index(vis, grid):
    """(window_index, cu_window_seqlens without repeats) of transformers 4 `get_window_index` / 5
    vision_utils.get_vision_window_index."""
    if hasattr(vis, "get_window_index"):
        widx, cuw = vis.get_window_index(grid)
        return widx, torch.unique_consecutive(torch.tensor(cuw, dtype=torch.long))
    from transformers.vision_utils import get_vision_window_index

    widx, cuw = get_vision_window_index(grid, vis.spatial_merge_size, vis.window_size, vis.patch_size)
    return widx, torch.unique_consecutive(cuw.long())


def save_tensors(d, path):
    out = {}
    for k, v in d.items():
        v = v.detach().cpu().contiguous()
        out[k] = v.float() if v.dtype.is_floating_point else v.long()
    save_file(out, path, metadata={"format": "pt"})


if __name__ == "__main__":
    main()
