// bench_transformer: the Qwen-Image MMDiT with random weights (no checkpoint) at a chosen size and
// precision. Runs N denoising steps (two transformer calls per step with true CFG) and prints
// seconds per step, peak memory and achieved TFLOP/s.
//
//   bench_transformer --device cuda --dtype bfloat16 --width 1328 --height 1328 --steps 5
//   bench_transformer --reduced --width 512 --height 512 --steps 2 --threads 2     (CPU)
//   bench_transformer --device cuda --width 1328 --height 1328 --steps 5 --weights fp8
//                     --fp8-matmul on       (fp8 e4m3 weights multiplied on fp8 tensor cores)
#include "dit_bench.h"

int main(int argc, char** argv) { return qwen::bench::run_dit_bench(argc, argv, /*edit=*/false); }
