// One set of request limits (issue #17 "One vocabulary over the wire"): the values the engine
// accepts, checked by the daemon when a job is submitted (proto::validate_job), by the engine
// (daemon/pipelines/engine.cpp, prompt_encoding.cpp, engine_qwen21.cpp) and by the CLI, so a job
// the engine would refuse is Rejected at submission with the same range. Torch-free, Boost-free.
#pragma once

#include <cstdint>

namespace qwen::ipc {

// Prompt tokens kept (the reference's tokenizer_max_length; max_sequence_length must be in
// [1, kMaxSequenceLength]).
inline constexpr int kMaxSequenceLength = 1024;
// Denoising steps.
inline constexpr int kMaxSteps = 1000;
// "The model's default" for a job's steps and true_cfg_scale (protocol version 5; shift: unset):
// the engine then runs what it runs without --steps / --true-cfg-scale, the model's values (50
// steps and CFG 4; Qwen-Image-2.1: 40 steps, its Turbo the count of its sigmas, and no CFG) or,
// with a Lightning LoRA (by name or metadata) or the lightning flag, Lightning's 4 or 8 steps and
// CFG 1 (daemon/pipelines/engine.cpp QwenEngine::run, the one rule for the CLI and the daemon).
inline constexpr int kModelDefaultSteps = 0;
inline constexpr float kModelDefaultTrueCfgScale = -1.0f;
// Output size asked for: 0 = the pipeline's default, else kMinOutputSide..kMaxOutputSide pixels a
// side and at most kMaxOutputPixels in all.
inline constexpr int kMinOutputSide = 16;
inline constexpr int kMaxOutputSide = 8192;
inline constexpr int64_t kMaxOutputPixels = 64LL * 1024 * 1024;
// Results per job (prompts x images per prompt, x layers for decompose).
inline constexpr int kMaxJobResults = 16;
// LoRAs per job and their strengths (finite, in [-kMaxLoraStrength, kMaxLoraStrength]).
inline constexpr int kMaxJobLoras = 8;
inline constexpr float kMaxLoraStrength = 10.0f;
// true_cfg_scale in [0, kMaxTrueCfgScale].
inline constexpr float kMaxTrueCfgScale = 100.0f;
// Qwen-Image-2.1's output_resolution (0 on the wire = the model's default).
inline constexpr int kMinOutputResolution = 32;
inline constexpr int kMaxOutputResolution = 8192;
inline constexpr int kDefaultOutputResolution = 1024;

}  // namespace qwen::ipc
