// Reference layers (issue #17): which layers go to the daemon after the edited picture, and the
// model's limits on them.
#include "references.h"

#include <algorithm>

namespace qwen::plugin {

namespace ipc = qwen::ipc;

namespace {

std::string quoted(const std::string& name) { return "'" + name + "'"; }

std::string ordinal_of(size_t i, const std::string& name) {
  return "reference layer " + std::to_string(i + 1) + " (" + quoted(name) + ")";
}

}  // namespace

std::vector<Reference> read_references(Host& host, Proc proc, const Settings& s) {
  std::vector<Reference> refs;
  if (proc != Proc::EditLayer && proc != Proc::EditSelection) return refs;
  constexpr int kMax = int(sizeof s.references / sizeof s.references[0]);
  if (s.num_references < 0 || s.num_references > kMax)
    throw UserError("Qwen-Image: " + std::to_string(s.num_references) +
                    " reference layers given; at most " + std::to_string(kMax) +
                    " can be sent (Qwen-Image-2.1 takes 10 pictures in all, Edit-2509/2511 3). "
                    "Choose fewer reference layers.");
  // Every reference is checked before any is read.
  for (int i = 0; i < s.num_references; ++i) {
    const int id = s.references[i];
    const int image = id > 0 ? host.image_of_item(id) : -1;
    if (image < 0)
      throw UserError("Qwen-Image: reference layer " + std::to_string(i + 1) + " (item " +
                      std::to_string(id) +
                      ") is not an item of an open image (was its image closed?). Choose the "
                      "reference layers again.");
    const std::string name = host.item_name(id);
    const int layer = host.layer_of(id);
    if (layer < 0)
      throw UserError("Qwen-Image: " + ordinal_of(size_t(i), name) +
                      " is not a layer (a channel or path?); choose a layer of an open image "
                      "as reference.");
    if (host.is_indexed(image))
      throw UserError("Qwen-Image: " + ordinal_of(size_t(i), name) +
                      " is in an indexed image; convert that image with Image → Mode → RGB "
                      "first, or choose another layer.");
    if (host.layer_rect(layer).empty())
      throw UserError("Qwen-Image: " + ordinal_of(size_t(i), name) +
                      " is empty (0 pixels); choose a layer with pixels.");
    Reference ref;
    ref.layer = layer;
    ref.name = layer == id ? name : host.item_name(layer);
    refs.push_back(std::move(ref));
  }
  // The whole layers, at their own size: the pipelines resize every picture themselves
  // (Edit-2509: calculate_dimensions to ~1 MP for the VAE and 384^2 for the vision encoder; 2.1:
  // the output_resolution area), as the CLI's --image does.
  for (Reference& ref : refs) {
    const Rect r = host.layer_rect(ref.layer);
    ref.rgba = host.read_drawable(ref.layer, {0, 0, r.w, r.h});
  }
  return refs;
}

void check_reference_limit(const std::vector<Reference>& refs, const ipc::ModelCaps& caps,
                           const std::string& model_name) {
  if (refs.empty()) return;
  const std::string model = model_name.empty() ? "the daemon's default model" : quoted(model_name);
  const std::string family = caps.family.empty() ? "" : " (" + caps.family + ")";
  if (caps.known && caps.max_references <= 1)
    throw UserError("Qwen-Image: " + model + family +
                    " edits one picture and takes no reference layers. Choose "
                    "Qwen-Image-Edit-2509/2511 (3 pictures in all) or Qwen-Image-2.1 (10) in the "
                    "dialog, or clear the reference layers.");
  const size_t total = refs.size() + 1;
  size_t limit = size_t(ipc::kMaxJobImages);  // what a version-4 job carries
  std::string why = "a job carries at most " + std::to_string(limit) + " pictures";
  if (caps.known && size_t(caps.max_references) < limit) {
    limit = size_t(caps.max_references);
    why = model + family + " takes at most " + std::to_string(limit) +
          " pictures in all (the edited one and " + std::to_string(limit - 1) + " references)";
  }
  if (total > limit) {
    std::string extra;
    for (size_t i = limit - 1; i < refs.size(); ++i)
      extra += (extra.empty() ? "" : ", ") + quoted(refs[i].name);
    throw UserError("Qwen-Image: " + std::to_string(refs.size()) +
                    " reference layers and the edited picture make " + std::to_string(total) +
                    " pictures, but " + why + ". Remove " + std::to_string(total - limit) +
                    " reference layer" + (total - limit > 1 ? "s" : "") + " (" + extra + ").");
  }
}

ipc::ModelCaps caps_of_model(const ipc::DaemonStatus& st, const std::string& name) {
  for (size_t i = 0; i < st.models.size() && i < st.model_caps.size(); ++i)
    if (st.models[i] == name) return st.model_caps[i];
  return {};
}

std::string reference_params(const std::vector<Reference>& refs) {
  std::string out;
  for (size_t i = 0; i < refs.size(); ++i)
    out += "\nreference" + std::to_string(i + 1) + "=" + refs[i].name;
  return out;
}

}  // namespace qwen::plugin
