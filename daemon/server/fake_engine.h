// TEST AID: a deterministic stand-in for qwen::Engine, selected with the hidden `qwen-imaged
// --fake-engine` flag. It loads nothing and needs no torch; the transport and daemon tests use it
// to check results, cancellation and crash handling without a model.
//   generate: a pattern computed from the seed, the prompt and the image index (64x48 by default)
//   with input images: the first input image (as RGB), unchanged
//   decompose (a model whose model_type is qwen-image-layered or whose model_index.json names
//   QwenImageLayeredPipeline; such a model only decomposes): `layers` RGBA layers at the
//   reference's output size (decompose_size); layer i holds horizontal band i of `layers` of the
//   picture (nearest-neighbour resized), transparent elsewhere, so the composite is the picture
//   and each layer shows where it belongs in the stack (layer 0 = bottom = the top band).
//   Qwen-Image-2.1 (model_index.json names QwenImage21Pipeline): the same pictures as RGBA, with
//   the first input's alpha (edits) or a left-to-right alpha ramp (generate).
//   prompt "fail": throws EngineError; every step sleeps `step_ms` and reports progress, with a
//   small preview every other step.
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "pipelines/engine.h"

namespace qwen::server {

// The images FakeEngine::run returns for `params` (tests compare against this).
std::vector<ImageU8> fake_results(const RunParams& params);
// The output size of QwenImageLayeredPipeline for a width x height picture at `resolution`.
std::pair<int, int> decompose_size(int width, int height, int resolution);

std::unique_ptr<Engine> make_fake_engine(const EngineOptions& options, int step_ms);

}  // namespace qwen::server
