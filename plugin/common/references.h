// Reference layers (issue #17): other layers, of this image or of any open image, that Edit Layer
// and Edit Selection send after the edited picture as additional input images ("put the jacket
// from picture 2 on the person"), and what the chosen model allows (ipc::ModelCaps).
#pragma once

#include <string>
#include <vector>

#include "frontend.h"

namespace qwen::plugin {

struct Reference {
  int layer = -1;    // the layer (a layer mask given as reference stands for its layer)
  std::string name;  // the layer's name, for messages and the parameters parasite
  Pixels rgba;       // the whole layer, R'G'B'A u8
};

// Checks and reads s.references (s.num_references of them, in order) before anything is started:
// each must be a layer of an open RGB or grayscale image. Generate and Decompose take none (their
// references are ignored). Throws UserError naming the layer and what to do.
std::vector<Reference> read_references(Host& host, Proc proc, const Settings& s);

// The model's limit, from its typed capabilities: the edited picture plus `refs` must fit
// caps.max_references (Edit-2509/2511: 3 images in all, Qwen-Image-2.1: 10) and the wire's image
// limit. `caps.known == false` (an older daemon, or a model not loaded yet whose type cannot be
// inferred) passes: the daemon then says what is wrong. Throws UserError.
void check_reference_limit(const std::vector<Reference>& refs, const qwen::ipc::ModelCaps& caps,
                           const std::string& model_name);

// The typed capabilities of model `name` in the daemon's status ({} = unknown: not listed, or a
// daemon older than protocol version 3).
qwen::ipc::ModelCaps caps_of_model(const qwen::ipc::DaemonStatus& st, const std::string& name);

// Qwen-Image-2.1 (issue #15): RGBA in and out, edits with 1-10 pictures, no inpaint pipeline and
// no masks. Known from the typed capabilities: the only edit-capable family that is RGBA.
inline bool is_rgba_editor(const qwen::ipc::ModelCaps& caps) {
  return caps.known && caps.rgba && caps.can_edit;
}

// "\nreference1=<name>\nreference2=<name>..." appended to the "qwen-image-params" parasite
// ("" for none).
std::string reference_params(const std::vector<Reference>& refs);

}  // namespace qwen::plugin
