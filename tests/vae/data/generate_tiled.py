#!/usr/bin/env python3
"""Golden tensors for the VAE's tiled encode/decode (the qwen-tiny fixtures cover only the untiled
paths). Run with the project's venv (diffusers installed):

    .venv/bin/python tests/vae/data/generate_tiled.py

Loads the tiny VAE of tests/fixtures/qwen-tiny in float32 on CPU, enables tiling with small tiles
(32 px tiles, 24 px stride -> latent tiles 4, stride 3, blend 8 px / 1 latent) and stores:
  image            [1,3,1,64,96]  VaeImageProcessor.preprocess(cases/vae/image.png)
  tiled_mean       [1,16,1,8,12]  encode(image).latent_dist.mean with tiling
  tiled_logvar     [1,16,1,8,12]
  latents          [1,16,1,8,12]  random (seed 5)
  tiled_decoded    [1,3,1,64,96]  decode(latents) with tiling (no clamp on this path)
"""
import os

import torch
from diffusers import AutoencoderKLQwenImage
from diffusers.image_processor import VaeImageProcessor
from PIL import Image
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "..", "fixtures", "qwen-tiny")

vae = AutoencoderKLQwenImage.from_pretrained(os.path.join(FIX, "models", "qwen-image-tiny", "vae"),
                                             torch_dtype=torch.float32).eval()
vae.enable_tiling(tile_sample_min_height=32, tile_sample_min_width=32,
                  tile_sample_stride_height=24, tile_sample_stride_width=24)
proc = VaeImageProcessor(vae_scale_factor=16)
img = Image.open(os.path.join(FIX, "cases", "vae", "image.png")).convert("RGB")
x = proc.preprocess(img, 64, 96).unsqueeze(2)
with torch.no_grad():
    post = vae.encode(x).latent_dist
    g = torch.Generator().manual_seed(5)
    z = torch.randn((1, 16, 1, 8, 12), generator=g)
    dec = vae.decode(z).sample
save_file({"image": x.contiguous(), "tiled_mean": post.mean.contiguous(),
           "tiled_logvar": post.logvar.contiguous(), "latents": z.contiguous(),
           "tiled_decoded": dec.contiguous()}, os.path.join(HERE, "tiled.safetensors"))
print("wrote tiled.safetensors", dec.shape, float(dec.abs().max()))
