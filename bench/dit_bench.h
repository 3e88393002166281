// The MMDiT denoising benchmark behind bench_transformer (text to image) and bench_edit (an edit:
// the target's noise tokens followed by one condition image's latent tokens).
#pragma once

namespace qwen::bench {

// Parses the command line, builds the transformer with random weights (no checkpoint) at the
// chosen configuration, precision and device, runs warm-up + N denoising steps (two transformer
// calls per step with true CFG) and prints seconds per step, achieved TFLOP/s and peak memory.
// Returns the process exit code.
int run_dit_bench(int argc, char** argv, bool edit);

}  // namespace qwen::bench
