// `qwen-image ... --daemon`: runs a job through qwen-imaged instead of in-process. Torch-free.
#pragma once

#include <string>
#include <vector>

#include "pipelines/engine.h"

namespace qwen::cli {

// Sends `params` to the daemon serving `instance` ("" = $QWEN_IMAGE_INSTANCE or "default") and
// returns the RGB images the engine would have returned in-process (decompose: the RGBA layers,
// RunParams::layers / resolution / cfg_normalize sent along). `model` names one of the
// daemon's models by name or folder ("" = its default). `progress` is called as steps complete;
// returning false cancels (CancelledError). Every other failure (no daemon, daemon died,
// rejected request, failed job) throws EngineError with a message that says which.
// `pipeline`: the protocol's pipeline name to send instead of params.pipeline's (e.g. "edit-auto").
std::vector<ImageU8> run_via_daemon(const RunParams& params, const std::string& instance,
                                    const ProgressFn& progress = {}, const std::string& model = "",
                                    const std::string& pipeline = "");

}  // namespace qwen::cli
