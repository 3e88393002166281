// bench_edit: one Qwen-Image-Edit denoising loop on the MMDiT with random weights (no checkpoint):
// the sequence is the target's noise tokens followed by one condition image's latent tokens
// (img_shapes = target, condition), plus the text. Each step runs the transformer on
// [target ; condition], keeps the target tokens, applies true CFG (a second call with the negative
// prompt, unless --no-cfg) and takes an Euler step. Prints seconds per step, peak memory and
// achieved TFLOP/s.
//
//   bench_edit --device cuda --dtype bfloat16 --steps 5                 (1024x1024 edit, 20B)
//   bench_edit --device cuda --dtype bfloat16 --zero-cond-t --no-cfg    (Edit-2511 style)
//   bench_edit --reduced --steps 2 --threads 2                          (CPU: 2 layers x 8 heads)
#include "dit_bench.h"

int main(int argc, char** argv) { return qwen::bench::run_dit_bench(argc, argv, /*edit=*/true); }
