#!/usr/bin/env python3
"""Generates the expected outputs of tests/image (run from anywhere; needs numpy + Pillow).

  resize/src_*.png          source images (deterministic noise + gradients + hard edges)
  resize/<src>_<filter>_<W>x<H>.png   PIL resize of that source, horizontal pass then vertical pass
                            (see pil_resize below)
  png/*.png + png/*.raw     PNG files in many layouts and the 8-bit interleaved pixels PIL
                            (+ the documented conversion) gives for them; manifest.json lists them
"""
import json
import os
import struct
import zlib

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(1234)


def source(w, h, channels):
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x + y) * 7) % 256], -1)
    noise = rng.integers(0, 256, size=(h, w, 3))
    img = np.where(((x // 5 + y // 4) % 3 == 0)[..., None], noise, base)
    img[h // 3: h // 3 + 3, :, :] = 255  # hard edges provoke clipping / ringing
    img[:, w // 2: w // 2 + 2, :] = 0
    img = img.astype(np.uint8)
    if channels == 1:
        return Image.fromarray(img[..., 0], "L")
    if channels == 3:
        return Image.fromarray(img, "RGB")
    alpha = rng.integers(0, 256, size=(h, w)).astype(np.uint8)
    alpha[:, :3] = 0
    alpha[:3, :] = 255
    return Image.fromarray(np.dstack([img, alpha]), "RGBA")


def pil_resize(im, size, f):
    """Image.resize(size, f) as Pillow <= 12.x computes it: horizontal pass, then vertical pass.

    Pillow 13 sometimes runs the vertical pass first (e.g. when widening while shrinking the
    height), which changes some pixels by 1. A resize along one axis only runs that single pass, so
    two single-axis calls reproduce the classic order exactly with any Pillow version. (Checked:
    every expected file equals a single Image.resize call of Pillow 11.3.)"""
    if im.size == size:
        return im.copy()
    if im.mode in ("LA", "RGBA"):
        pm = im.convert({"LA": "La", "RGBA": "RGBa"}[im.mode])
        return pil_resize(pm, size, f).convert(im.mode)
    out = im.resize((size[0], im.size[1]), f) if size[0] != im.size[0] else im
    return out.resize(size, f) if size[1] != im.size[1] else out


def gen_resize():
    out = os.path.join(HERE, "resize")
    os.makedirs(out, exist_ok=True)
    cases = []
    sources = {"rgb": source(61, 41, 3), "gray": source(37, 23, 1), "rgba": source(29, 31, 4)}
    sizes = [(20, 13), (7, 5), (125, 90), (61, 17), (33, 41), (90, 11), (3, 64), (1, 1)]
    filters = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
               "bilinear": Image.Resampling.BILINEAR, "box": Image.Resampling.BOX,
               "hamming": Image.Resampling.HAMMING}
    for name, im in sources.items():
        im.save(os.path.join(out, f"src_{name}.png"))
        for fname, f in filters.items():
            for (w, h) in sizes:
                if fname not in ("bicubic", "lanczos") and (w, h) not in [(20, 13), (125, 90)]:
                    continue
                if name == "rgba" and fname not in ("bicubic", "lanczos"):
                    continue
                if (w, h) == (61, 17) and name != "rgb":
                    continue
                r = pil_resize(im, (w, h), f)
                fn = f"{name}_{fname}_{w}x{h}.png"
                r.save(os.path.join(out, fn))
                cases.append({"source": f"src_{name}.png", "filter": fname, "width": w, "height": h,
                              "expected": fn})
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(cases, f, indent=1)


def write_png_raw(path, w, h, bit_depth, color_type, rows_bytes, plte=None, trns=None):
    def chunk(t, d):
        c = struct.pack(">I", len(d)) + t + d
        return c + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    data = b"".join(b"\x00" + r for r in rows_bytes)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0))
    if plte is not None:
        png += chunk(b"PLTE", plte)
    if trns is not None:
        png += chunk(b"tRNS", trns)
    png += chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def gen_png():
    out = os.path.join(HERE, "png")
    os.makedirs(out, exist_ok=True)
    manifest = []

    def add(name, expected, channels, expected16=None):
        expected = np.ascontiguousarray(expected, dtype=np.uint8)
        expected.tofile(os.path.join(out, name + ".raw"))
        e = {"file": name + ".png", "raw": name + ".raw", "channels": channels,
             "width": int(expected.shape[1]), "height": int(expected.shape[0])}
        if expected16 is not None:
            np.ascontiguousarray(expected16, dtype="<u2").tofile(os.path.join(out, name + ".raw16"))
            e["raw16"] = name + ".raw16"
            e["channels16"] = int(expected16.shape[2]) if expected16.ndim == 3 else 1
        manifest.append(e)

    w, h = 13, 7
    rgb = np.array(source(w, h, 3))
    rgba = np.array(source(w, h, 4))
    gray = rgb[..., 0]
    Image.fromarray(rgb, "RGB").save(os.path.join(out, "rgb8.png"))
    add("rgb8", rgb, 3)
    Image.fromarray(rgba, "RGBA").save(os.path.join(out, "rgba8.png"))
    add("rgba8", rgba, 4)
    Image.fromarray(gray, "L").save(os.path.join(out, "gray8.png"))
    add("gray8", gray, 1)
    la = Image.fromarray(np.dstack([gray, rgba[..., 3]]), "LA")
    la.save(os.path.join(out, "gray_alpha8.png"))
    add("gray_alpha8", np.array(la.convert("RGBA")), 4)
    # interlaced RGB
    Image.fromarray(rgb, "RGB").save(os.path.join(out, "rgb8_interlaced.png"), interlace=1)
    if Image.open(os.path.join(out, "rgb8_interlaced.png")).info.get("interlace"):
        add("rgb8_interlaced", rgb, 3)
    else:
        os.remove(os.path.join(out, "rgb8_interlaced.png"))
    # 1-bit and 4-bit gray
    bits1 = Image.fromarray(gray > 128).convert("1")
    bits1.save(os.path.join(out, "gray1.png"))
    add("gray1", np.array(bits1.convert("L")), 1)
    g4 = (gray >> 4).astype(np.uint8)
    rows = []
    for y in range(h):
        row = g4[y]
        if w % 2:
            row = np.append(row, 0)
        rows.append(bytes((row[0::2] << 4) | row[1::2]))
    write_png_raw(os.path.join(out, "gray4.png"), w, h, 4, 0, rows)
    add("gray4", np.array(Image.open(os.path.join(out, "gray4.png")).convert("L")), 1)
    # palette without / with transparency
    pal = Image.fromarray(rgb, "RGB").quantize(colors=16)
    pal.save(os.path.join(out, "palette.png"))
    add("palette", np.array(Image.open(os.path.join(out, "palette.png")).convert("RGB")), 3)
    pal.info["transparency"] = bytes([0, 128] + [255] * 14)
    pal.save(os.path.join(out, "palette_trns.png"), transparency=bytes([0, 128] + [255] * 14))
    add("palette_trns", np.array(Image.open(os.path.join(out, "palette_trns.png")).convert("RGBA")), 4)
    # 16-bit RGB / RGBA / gray written by hand: PIL keeps the high byte
    v16 = rng.integers(0, 65536, size=(h, w, 4)).astype(np.uint16)
    write_png_raw(os.path.join(out, "rgb16.png"), w, h, 16, 2,
                  [v16[y, :, :3].astype(">u2").tobytes() for y in range(h)])
    add("rgb16", np.array(Image.open(os.path.join(out, "rgb16.png")).convert("RGB")), 3, v16[..., :3])
    write_png_raw(os.path.join(out, "rgba16.png"), w, h, 16, 6,
                  [v16[y].astype(">u2").tobytes() for y in range(h)])
    add("rgba16", np.array(Image.open(os.path.join(out, "rgba16.png")).convert("RGBA")), 4, v16)
    write_png_raw(os.path.join(out, "gray16.png"), w, h, 16, 0,
                  [v16[y, :, 0].astype(">u2").tobytes() for y in range(h)])
    add("gray16", (v16[..., 0] >> 8).astype(np.uint8), 1, v16[..., 0])
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    gen_resize()
    gen_png()
    import PIL
    print("Pillow", PIL.__version__)
