#!/usr/bin/env python3
"""Writes a FRESH random tiny Qwen3-VL text encoder (the Qwen-Image-2.1 one, issue #15) plus inputs and reference
outputs computed by transformers' Qwen3VLForConditionalGeneration / Qwen3VLProcessor and by diffusers'
QwenImage21Pipeline.encode_prompt, for tests/reference/test_reference_qwen21_text_encoder.cpp.

    .venv/bin/python tests/reference/gen_qwen21_text_encoder.py OUT --seed S [--parts text_encoder] [--threads 1]
                                                              [--te-config random|checkpoint|native]

Every run draws a random configuration: text hidden size, layers, heads / KV heads, an explicit head_dim that is
not always hidden / heads, the interleaved M-RoPE sections and theta, vision depth / width / heads, the learned
position grid (num_position_embeddings) and the deepstack_visual_indexes; storage dtype BF16 or F32.

OUT/model/text_encoder/   config.json (rope_scaling + rope_theta as the released checkpoint, or rope_parameters as
                          transformers 5 writes it: --te-config) + model.safetensors (with the unused lm_head)
OUT/model/processor/      Qwen3VLProcessor.save_pretrained (the fixture Qwen2 tokenizer files, Qwen3-VL's image
                          processor settings: patch 16, mean/std 0.5, size 65536..16777216 pixels) + a
                          preprocessor_config.json as the released repositories have (left out 30 % of runs)
OUT/case.json             seed, versions, configuration, prompts, image names
OUT/qwen21_text_encoder.safetensors
    text batch (2-3 random prompts in the 2.1 t2i template, left padding as the pipeline):
      input_ids, attention_mask, position_ids (what the rotary embedding got), hidden_states
      [layers + 1, B, L, H] (input of decoder layer i; [layers] = input of the final norm = what the pipeline
      reads), last_hidden_state (after the norm), prompt_embeds / prompt_embeds_mask (all ones when the pipeline
      returns None) / image_pad_mask of encode_prompt
    image batch (1-2 prompts x 1-3 images, RGB and RGBA, OUT/image_<i>.png as given to encode_prompt):
      vl_* : the processor's input_ids, attention_mask, pixel_values, image_grid_thw, position_ids, the vision
      tower's merged embeds and deepstack features, hidden_states as above, and encode_prompt's outputs.

comfy_file part: a second random model whose shape-invisible settings are those of the released Qwen3-VL (head_dim
128, interleaved M-RoPE [24, 20, 20] so that every section is non-trivial, rope_theta 5e6, 16 vision heads, vision
depth 24 or 27 with its DeepStack layers), written as a ComfyUI-layout single file OUT/qwen3vl_comfy.safetensors
(comfy/text_encoders/qwen3vl.py's module tree: `model.*` for the language model (comfy's Llama2_), `visual.*`, and
the unused lm_head as transformers' `lm_head.weight` or as `model.lm_head.weight` where comfy's Llama2_ keeps it;
case.json comfy_lm_head), plain or fp8 scaled (legacy scale_weight or comfy_quant; case.json comfy_format; the
reference then runs the dequantised weights), AND as the folder OUT/comfy_model/{text_encoder,processor} holding the
weights the reference ran. OUT/comfy_file.safetensors: a left-padded text batch (input_ids, attention_mask,
hidden_states as above) and an edit prompt batch with 2 non-square reference images (OUT/comfy_image_<i>.png, one
RGBA) through encode_prompt (the 2.1 template): the vl_* tensors of the images part, plus what the same reference
gives with the M-RoPE sections NOT interleaved (vl_chunked_*: Qwen2-VL's contiguous [t | h | w] split) and with the
image tokens' h/w positions ignored (vl_t_only_*): the last hidden state before the final norm and prompt_embeds,
to show that the comparison would catch either mistake.

gguf_file part: the same kind of model's language model alone as a llama.cpp-named GGUF (arch qwen3vl, Q8_0 / Q4_K /
Q6_K / Q5_0 with F16 / F32 where llama.cpp keeps them), OUT/qwen3vl_text.gguf, and OUT/gguf_file.safetensors: a
left-padded text batch (input_ids, attention_mask, hidden_states) from the file's dequantised weights.

All reference computations are float32 on CPU from the stored (BF16-exact when BF16) weights.
"""
import argparse
import json
import os
import random
import shutil
import sys
import time

import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gen_random import FIXTURE_MODEL, rand_image, rand_prompt, randomize, save_tensors  # noqa: E402

SYS_PROMPT = "Comprehend and analyze the provided prompt."
# QwenImage21Pipeline.prompt_template_t2i (the raw template string the pipeline formats).
T2I_TEMPLATE = ("<|im_start|>system\n" + SYS_PROMPT + "<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n"
                "<|im_start|>assistant\n")
# Enough of Qwen3-VL's chat template for what the pipeline asks of it (the system message, to count drop_idx).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def make_config(rng):
    heads = rng.choice([2, 4])
    kv = rng.choice([d for d in (1, 2, 4) if heads % d == 0])
    # Up to 64 wide, so that the M-RoPE sections are several frequency pairs each (8: [2, 1, 1]).
    head_dim = rng.choice([8, 16, 32, 64])
    hidden = rng.choice([32, 48, 64])
    half = head_dim // 2
    # Interleaved M-RoPE: H takes indices 1, 4, ... < 3 * h, W 2, 5, ... < 3 * w, T the rest.
    while True:
        h = rng.randint(1, half // 3 + 1)
        w = rng.randint(1, half // 3 + 1)
        t = half - h - w
        if t >= 1:
            break
    layers = rng.randint(2, 4)
    depth = rng.randint(2, 4)
    vheads = rng.choice([2, 4])
    vhidden = vheads * rng.choice([8, 16])
    ndeep = rng.randint(1, min(3, depth, layers))
    text = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                head_dim=head_dim, intermediate_size=rng.choice([48, 64, 96]), mrope_section=[t, h, w],
                rope_theta=rng.choice([10000.0, 500000.0, 5000000.0]), rms_norm_eps=1e-6, vocab_size=151936)
    vision = dict(depth=depth, hidden_size=vhidden, num_heads=vheads, intermediate_size=rng.choice([32, 64, 96]),
                  out_hidden_size=hidden, num_position_embeddings=rng.choice([9, 16, 36, 64]),
                  deepstack_visual_indexes=sorted(rng.sample(range(depth), ndeep)), patch_size=16,
                  temporal_patch_size=2, spatial_merge_size=2, in_channels=3, hidden_act="gelu_pytorch_tanh")
    return dict(text=text, vision=vision, storage=rng.choice(["bfloat16", "float32"]))


def build_text_encoder(cfg, gen, out_dir, layout):
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    t = dict(cfg["text"])
    rope = dict(mrope_interleaved=True, mrope_section=t.pop("mrope_section"), rope_type="default")
    theta = t.pop("rope_theta")
    conf = Qwen3VLConfig(text_config=dict(t, rope_parameters=dict(rope, rope_theta=theta), attention_bias=False,
                                          hidden_act="silu"),
                         vision_config=dict(cfg["vision"]), tie_word_embeddings=False)
    model = Qwen3VLForConditionalGeneration(conf).eval()
    randomize(model, gen, embed_std=1.0)
    model.to(getattr(torch, cfg["storage"]))
    os.makedirs(out_dir, exist_ok=True)
    model.config.save_pretrained(out_dir)
    path = os.path.join(out_dir, "config.json")
    c = json.load(open(path))
    if layout == "checkpoint":
        # The released checkpoint's layout (transformers 4.57): rope_scaling + rope_theta in text_config.
        tc = c["text_config"]
        rp = tc.pop("rope_parameters")
        tc["rope_theta"] = rp.pop("rope_theta")
        tc["rope_scaling"] = rp
        c["text_config"] = tc
    json.dump(c, open(path, "w"), indent=2)
    from safetensors.torch import save_file

    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    assert "lm_head.weight" in sd
    save_file(sd, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    te = Qwen3VLForConditionalGeneration.from_pretrained(out_dir, dtype=torch.float32,
                                                         attn_implementation="eager").eval()
    rot = te.model.language_model.rotary_emb
    assert list(rot.mrope_section) == list(rope["mrope_section"]), (rot.mrope_section, rope)
    assert te.config.text_config.rope_parameters["rope_theta"] == theta, te.config.text_config.rope_parameters
    return te


def build_processor(out_dir, min_pixels=65536):
    """Qwen3VLProcessor with the fixture tokenizer and Qwen3-VL's image processor settings; `min_pixels` 65536 as
    released (gen_qwen21_pipeline.py passes a smaller one so its tiny images keep their size)."""
    from transformers import Qwen2TokenizerFast, Qwen2VLImageProcessor, Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    tok = Qwen2TokenizerFast.from_pretrained(os.path.join(FIXTURE_MODEL, "tokenizer"))
    # Qwen/Qwen3-VL-8B-Instruct preprocessor_config.json values.
    ip = Qwen2VLImageProcessor(size={"shortest_edge": min_pixels, "longest_edge": 16777216}, patch_size=16,
                               temporal_patch_size=2, merge_size=2, image_mean=[0.5, 0.5, 0.5],
                               image_std=[0.5, 0.5, 0.5])
    proc = Qwen3VLProcessor(image_processor=ip, tokenizer=tok, video_processor=Qwen3VLVideoProcessor(),
                            chat_template=CHAT_TEMPLATE)
    proc.save_pretrained(out_dir)
    # The released repositories (Qwen/Qwen3-VL-8B-Instruct) ship the image processor's own file too.
    ip.to_json_file(os.path.join(out_dir, "preprocessor_config.json"))
    return proc


class Probe:
    """Records the inputs of every decoder layer and of the final norm (the pipeline's hidden state), and the
    position ids the rotary embedding got, for the last call."""

    def __init__(self, te):
        lm = te.model.language_model
        self.handles = [lm.rotary_emb.register_forward_hook(self._rot)]
        for layer in lm.layers:
            self.handles.append(layer.register_forward_pre_hook(self._inp))
        self.handles.append(lm.norm.register_forward_pre_hook(self._inp))
        self.reset()

    def reset(self):
        self.inputs, self.pos = [], None

    def _rot(self, module, args, output):
        self.pos = args[1].detach().clone()

    def _inp(self, module, args):
        self.inputs.append(args[0].detach().clone())

    def remove(self):
        for h in self.handles:
            h.remove()


def run_encoder(te, probe, inputs):
    probe.reset()
    te.model.rope_deltas = None  # cached on the model by transformers
    o = te(**inputs, output_hidden_states=True)
    n = len(te.model.language_model.layers) + 1
    assert len(probe.inputs) == n, len(probe.inputs)
    return dict(position_ids=probe.pos, hidden_states=torch.stack(probe.inputs),
                last_hidden_state=o.hidden_states[-1])


class Recomposition:
    """Replaces the text rotary embedding's interleaved M-RoPE recomposition for a sensitivity check: "chunked" =
    Qwen2-VL's contiguous [t | h | w] sections, "t_only" = every frequency from the t axis (the image tokens' h / w
    positions ignored)."""

    def __init__(self, te, mode):
        self.rot, self.mode = te.model.language_model.rotary_emb, mode

    def __enter__(self):
        sec = list(self.rot.mrope_section)
        sec[0] = self.rot.inv_freq.numel() - sec[1] - sec[2]  # t takes the rest, as in the interleaved layout

        def chunked(freq):
            f = torch.cat([p[i] for i, p in enumerate(freq.split(sec, dim=-1))], dim=-1)
            return torch.cat((f, f), dim=-1)

        def t_only(freq):
            return torch.cat((freq[0], freq[0]), dim=-1)

        self.rot.recomposition_frequencies = chunked if self.mode == "chunked" else t_only

    def __exit__(self, *exc):
        del self.rot.recomposition_frequencies


def encode(pipe, prompts, images):
    pe, mask, img = pipe.encode_prompt(prompt=prompts, image=images, device=torch.device("cpu"))
    return dict(prompt_embeds=pe, prompt_embeds_mask=torch.ones(pe.shape[:2], dtype=torch.long) if mask is None
                else mask.long(), prompt_embeds_mask_none=torch.tensor(mask is None).long(), image_pad_mask=img.long())


def rand_rgba(rng, gen, w, h):
    img = rand_image(rng, gen, w, h).convert("RGBA")
    a = torch.randint(0, 256, (h, w), generator=gen, dtype=torch.uint8)
    a[: h // 3] = 0
    a[h // 3: h // 2] = 255
    img.putalpha(Image.fromarray(a.numpy()))
    return img


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--parts", default="text_encoder")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--te-config", default="random", choices=["random", "checkpoint", "native"])
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int(time.time() * 1000) % (2**31)
    print(f"gen_qwen21_text_encoder: seed {seed}", flush=True)
    torch.set_num_threads(args.threads)
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    layout = args.te_config if args.te_config != "random" else rng.choice(["checkpoint", "native"])
    out = os.path.abspath(args.out)
    mdir = os.path.join(out, "model")
    os.makedirs(mdir, exist_ok=True)

    import diffusers
    import transformers

    parts = [p for p in args.parts.split(",") if p]
    case = dict(seed=seed, te_config=layout, parts={},
                versions=dict(torch=torch.__version__, transformers=transformers.__version__,
                              diffusers=diffusers.__version__, pillow=Image.__version__))
    if "comfy_file" in parts:
        comfy_file_part(random.Random(seed ^ 0xC0F1), torch.Generator().manual_seed(seed ^ 0xC0F1), out, case)
    if "gguf_file" in parts:
        gguf_file_part(random.Random(seed ^ 0x6607), torch.Generator().manual_seed(seed ^ 0x6607), out, case)
    if "text_encoder" in parts:
        text_encoder_part(rng, gen, layout, out, mdir, case)
    json.dump(case, open(os.path.join(out, "case.json"), "w"), indent=2)


def text_encoder_part(rng, gen, layout, out, mdir, case):
    from diffusers import QwenImage21Pipeline

    cfg = make_config(rng)
    case["config"] = cfg
    te = build_text_encoder(cfg, gen, os.path.join(mdir, "text_encoder"), layout)
    proc = build_processor(os.path.join(mdir, "processor"))
    if rng.random() < 0.3:
        # As transformers 5's save_pretrained leaves it: the image processor only inside processor_config.json.
        os.remove(os.path.join(mdir, "processor", "preprocessor_config.json"))
        case["processor_files"] = "processor_config.json"
    pipe = QwenImage21Pipeline(scheduler=None, vae=None, text_encoder=te, processor=proc, transformer=None)
    assert pipe._drop_idx == 14, pipe._drop_idx
    d = {}
    probe = Probe(te)

    # Text only: a left-padded batch in the t2i template (the empty prompt becomes " " in the pipeline).
    n = rng.randint(2, 3)
    prompts = [rand_prompt(rng, 1, 3), rand_prompt(rng, 8, 14)] + [rand_prompt(rng, 1, 14) for _ in range(n - 2)]
    if rng.random() < 0.3:
        prompts[0] = ""
    rng.shuffle(prompts)
    texts = [pipe.prompt_template_t2i.format(p if p else " ") for p in prompts]
    mi = proc(text=texts, padding=True, padding_side="left", return_tensors="pt")
    r = run_encoder(te, probe, dict(input_ids=mi["input_ids"], attention_mask=mi["attention_mask"],
                                    mm_token_type_ids=mi.get("mm_token_type_ids")))
    d.update(input_ids=mi["input_ids"], attention_mask=mi["attention_mask"], **r)
    d.update(encode(pipe, prompts, None))
    case["parts"]["text"] = dict(prompts=prompts)

    # Images: 1-3 condition images (RGB / RGBA) at sizes the pipeline gives (multiples of 32, >= 65536 pixels)
    # or not (the processor's smart_resize then resizes), 1-2 prompts, each with every image.
    nimg = rng.randint(1, 3)
    images, names = [], []
    for i in range(nimg):
        if rng.random() < 0.7:
            w, h = 32 * rng.randint(8, 11), 32 * rng.randint(8, 11)
        else:
            w, h = rng.randint(200, 330), rng.randint(200, 330)
        img = rand_rgba(rng, gen, w, h) if rng.random() < 0.5 else rand_image(rng, gen, w, h)
        names.append(f"image_{i}.png")
        img.save(os.path.join(out, names[-1]))
        images.append(img)
    vprompts = [rand_prompt(rng, 1, 8) for _ in range(rng.randint(1, 2))]
    d.update(image_case(pipe, proc, te, probe, vprompts, images))
    probe.remove()
    case["parts"]["images"] = dict(prompts=vprompts, images=names,
                                   sizes=[list(im.size) for im in images], modes=[im.mode for im in images],
                                   image_processor=type(proc.image_processor).__name__)
    save_tensors(d, os.path.join(out, "qwen21_text_encoder.safetensors"))
    print(json.dumps(case["config"]), flush=True)


def image_case(pipe, proc, te, probe, prompts, images, perturb=()):
    """encode_prompt of `prompts` with every image, and the same processor inputs run piecewise: the vl_* tensors
    (processor outputs, vision embeds, DeepStack features, positions, hidden states, encode_prompt's outputs). For
    each Recomposition mode in `perturb`, vl_<mode>_last_hidden (the input of the final norm) and
    vl_<mode>_prompt_embeds."""
    # The processor call of _get_qwen_prompt_embeds, captured to run the model piecewise.
    calls = []
    orig = type(proc).__call__

    def capture(self, *a, **k):
        res = orig(self, *a, **k)
        calls.append(res)
        return res

    type(proc).__call__ = capture
    try:
        enc = encode(pipe, prompts, images)
    finally:
        type(proc).__call__ = orig
    vi = calls[-1]
    r = run_encoder(te, probe, dict(vi))
    vis = te.model.visual(vi["pixel_values"], grid_thw=vi["image_grid_thw"])
    d = dict(vl_input_ids=vi["input_ids"], vl_attention_mask=vi["attention_mask"],
             vl_pixel_values=vi["pixel_values"], vl_image_grid_thw=vi["image_grid_thw"],
             vl_image_embeds=vis.pooler_output, **{"vl_" + k: v for k, v in r.items()},
             **{"vl_" + k: v for k, v in enc.items()})
    for i, f in enumerate(vis.deepstack_features):
        d[f"vl_deepstack_{i}"] = f
    for mode in perturb:
        with Recomposition(te, mode):
            d[f"vl_{mode}_last_hidden"] = run_encoder(te, probe, dict(vi))["hidden_states"][-1]
            d[f"vl_{mode}_prompt_embeds"] = encode(pipe, prompts, images)["prompt_embeds"]
    return d


def gguf_file_part(rng, gen, out, case):
    """The language model alone as a llama.cpp-named GGUF (general.architecture qwen3vl; llama.cpp puts the vision
    tower into a separate mmproj file), quantised; the reference runs the file's dequantised weights on a left-padded
    text batch."""
    import quant_formats as qf

    cfg = make_config(rng)
    cfg["text"].update(head_dim=128, mrope_section=[24, 20, 20], rope_theta=5000000.0)
    cfg["vision"].update(depth=2, deepstack_visual_indexes=[0])
    main = rng.choice(["Q8_0", "Q4_K", "Q6_K", "Q5_0"])
    case["gguf_config"], case["gguf_type"] = cfg, main
    tdir = os.path.join(out, "gguf_model", "text_encoder")
    te = build_text_encoder(cfg, gen, tdir, "checkpoint")
    block = {"self_attn.q_norm.": "attn_q_norm.", "self_attn.k_norm.": "attn_k_norm."}
    tensors, names = [], {}
    for k, x in te.state_dict().items():
        if k.startswith("model.visual."):
            continue
        n = None
        for a, b in block.items():
            if a in k:
                layer, _ = k[len("model.language_model.layers."):].split(".", 1)
                n = f"blk.{layer}.{b}{k.split(a, 1)[1]}"
        n = n or qf.llama_name(k)
        names[n] = k
        tensors.append((n, x.float().numpy(), qf.text_encoder_gguf_type(n, list(x.shape), main)))
    path = os.path.join(out, "qwen3vl_text.gguf")
    qf.write_gguf(path, "qwen3vl", tensors, qf.FILE_TYPES[main])
    deq, types = qf.read_gguf_dequantized(path)
    case["gguf_types"] = qf.count(types.values())
    missing, unexpected = te.load_state_dict({names[n]: v for n, v in deq.items()}, strict=False)
    assert not unexpected and all(m.startswith("model.visual.") for m in missing), (missing, unexpected)
    proc = build_processor(os.path.join(out, "gguf_model", "processor"))
    probe = Probe(te)
    prompts = [rand_prompt(rng, 1, 3), rand_prompt(rng, 6, 12), rand_prompt(rng, 2, 8)]
    template = T2I_TEMPLATE
    mi = proc(text=[template.format(p) for p in prompts], padding=True, padding_side="left", return_tensors="pt")
    r = run_encoder(te, probe, dict(input_ids=mi["input_ids"], attention_mask=mi["attention_mask"]))
    probe.remove()
    save_tensors(dict(input_ids=mi["input_ids"], attention_mask=mi["attention_mask"], hidden_states=r["hidden_states"]),
                 os.path.join(out, "gguf_file.safetensors"))
    shutil.rmtree(os.path.join(out, "gguf_model"))
    print("gguf_file", main, json.dumps(cfg), flush=True)


def comfy_file_part(rng, gen, out, case):
    from diffusers import QwenImage21Pipeline
    from safetensors.torch import load_file, save_file

    cfg = make_config(rng)
    t, v = cfg["text"], cfg["vision"]
    # The released encoder's shape-invisible settings (a single file cannot tell others): 64 frequency pairs, h and
    # w 20 each, interleaved, so the vision tokens' t / h / w positions all reach the attention.
    t.update(head_dim=128, mrope_section=[24, 20, 20], rope_theta=5000000.0)
    depth = rng.choice([24, 27])
    v.update(depth=depth, num_heads=16, hidden_size=64,
             deepstack_visual_indexes=[8, 16, 24] if depth == 27 else [5, 11, 17])
    case["comfy_config"] = cfg
    mdir = os.path.join(out, "comfy_model")
    tdir = os.path.join(mdir, "text_encoder")
    te = build_text_encoder(cfg, gen, tdir, "checkpoint")

    sd = load_file(os.path.join(tdir, "model.safetensors"))
    # comfy/text_encoders/qwen3vl.py: Qwen3VL.model = Llama2_ (the language model), Qwen3VL.visual = the vision tower;
    # comfy's Llama2_ holds the lm_head itself (model.lm_head), transformers' checkpoints keep it at the top.
    lm_head = rng.choice(["lm_head.weight", "model.lm_head.weight"])
    case["comfy_lm_head"] = lm_head
    comfy = {}
    for k, x in sd.items():
        if k.startswith("model.language_model."):
            k = "model." + k[len("model.language_model."):]
        elif k.startswith("model.visual."):
            k = "visual." + k[len("model.visual."):]
        elif k == "lm_head.weight":
            k = lm_head
        comfy[k] = x
    path = os.path.join(out, "qwen3vl_comfy.safetensors")
    fmt = rng.choice(["plain", "fp8_scaled/legacy", "fp8_scaled/comfy_quant"])
    case["comfy_format"] = fmt
    if fmt == "plain":
        save_file(comfy, path)
    else:
        # Comfy-Org's *_fp8_scaled layout: the language model's Linear weights float8_e4m3fn with a scale, the
        # rest BF16; the reference (and the folder) run with the file's dequantised weights.
        import quant_formats as qf

        deq, _ = qf.fp8_scaled(comfy, path, fmt.split("/")[1],
                               lambda k: k.startswith("model.layers.") and k.endswith(".weight") and comfy[k].dim() == 2)
        back = {}
        for k, x in deq.items():
            if k.startswith("visual."):
                k = "model." + k
            elif k == lm_head:
                k = "lm_head.weight"
            elif k.startswith("model."):
                k = "model.language_model." + k[len("model."):]
            back[k] = x
        missing, unexpected = te.load_state_dict(back, strict=False)
        assert not unexpected and not [m for m in missing if not m.startswith("lm_head")], (missing, unexpected)
        save_file({k: x.contiguous() for k, x in te.state_dict().items()}, os.path.join(tdir, "model.safetensors"),
                  metadata={"format": "pt"})
    proc = build_processor(os.path.join(mdir, "processor"))
    pipe = QwenImage21Pipeline(scheduler=None, vae=None, text_encoder=te, processor=proc, transformer=None)
    probe = Probe(te)
    prompts = [rand_prompt(rng, 1, 3), rand_prompt(rng, 6, 12)]
    mi = proc(text=[T2I_TEMPLATE.format(p) for p in prompts], padding=True, padding_side="left", return_tensors="pt")
    r = run_encoder(te, probe, dict(input_ids=mi["input_ids"], attention_mask=mi["attention_mask"]))
    d = dict(input_ids=mi["input_ids"], attention_mask=mi["attention_mask"], hidden_states=r["hidden_states"])
    # Two non-square references (one RGBA) of different shapes: their h / w positions differ from t and from each
    # other's (grids 16 x 20 and 20 x 16 patches, i.e. 8 x 10 and 10 x 8 vision tokens).
    images, names = [], []
    for i, (w, h) in enumerate([(320, 256), (256, 320)]):
        img = rand_rgba(rng, gen, w, h) if i == 1 else rand_image(rng, gen, w, h)
        names.append(f"comfy_image_{i}.png")
        img.save(os.path.join(out, names[-1]))
        images.append(img)
    vprompts = [rand_prompt(rng, 1, 8), rand_prompt(rng, 4, 10)]
    d.update(image_case(pipe, proc, te, probe, vprompts, images, perturb=("chunked", "t_only")))
    probe.remove()
    case["parts"]["comfy_file"] = dict(prompts=vprompts, images=names)
    save_tensors(d, os.path.join(out, "comfy_file.safetensors"))
    print("comfy_file", fmt, lm_head, json.dumps(cfg), flush=True)


if __name__ == "__main__":
    main()
