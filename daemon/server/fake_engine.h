// TEST AID: a deterministic stand-in for qwen::Engine, selected with the hidden `qwen-imaged
// --fake-engine` flag. It loads nothing and needs no torch; the transport and daemon tests use it
// to check results, cancellation and crash handling without a model.
//   generate: a pattern computed from the seed, the prompt and the image index (64x48 by default)
//   with input images: the first input image (as RGB), unchanged
//   prompt "fail": throws EngineError; every step sleeps `step_ms` and reports progress, with a
//   small preview every other step.
#pragma once

#include <memory>
#include <vector>

#include "pipelines/engine.h"

namespace qwen::server {

// The images FakeEngine::run returns for `params` (tests compare against this).
std::vector<ImageU8> fake_results(const RunParams& params);

std::unique_ptr<Engine> make_fake_engine(const EngineOptions& options, int step_ms);

}  // namespace qwen::server
