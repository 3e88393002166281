// The three procedures: which pixels go to the daemon, and how results come back as layers.
#include <algorithm>

#include "frontend.h"
#include "preview.h"
#include "procedures.h"
#include "references.h"

namespace qwen::plugin {

namespace ipc = qwen::ipc;

namespace {

std::string layer_name(const Settings& s, int variant, int variants) {
  gchar* head = g_utf8_substring(s.prompt, 0, std::min<glong>(g_utf8_strlen(s.prompt, -1), 60));
  std::string name = *head ? head : "Qwen-Image";
  g_free(head);
  if (variants > 1) name += " #" + std::to_string(variant + 1);
  return name;
}

ipc::ImageView view_of(const Pixels& p) {
  ipc::ImageView v;
  v.width = p.width;
  v.height = p.height;
  v.format = p.channels == 1   ? ipc::PixelFormat::GRAY8
             : p.channels == 3 ? ipc::PixelFormat::RGB8
                               : ipc::PixelFormat::RGBA8;
  v.data = p.data.data();
  return v;
}

// The daemon's models: name -> folder (from its status), their capabilities, and the default
// (first) name.
struct Models {
  std::string default_name;
  std::vector<std::pair<std::string, std::string>> dirs;
  std::vector<std::pair<std::string, ipc::ModelCaps>> caps;
  std::string dir_of(const std::string& name) const {
    for (auto& [n, d] : dirs)
      if (n == name) return d;
    return "";
  }
  ipc::ModelCaps caps_of(const std::string& name) const {
    for (auto& [n, c] : caps)
      if (n == name) return c;
    return {};  // unknown (an old daemon)
  }
  // Edit model by the daemon's typed capabilities; the old name guess only when they are unknown.
  bool can_edit(const std::string& name) const {
    return model_can_edit(name, dir_of(name), caps_of(name));
  }
};
Models daemon_models(ipc::Client& client) {
  auto st = client.status();
  Models m;
  if (!st.models.empty()) m.default_name = st.models.front();
  for (auto& line : st.model_states) {  // name<TAB>state<TAB>dir
    auto a = line.find('\t'), b = line.rfind('\t');
    if (a != std::string::npos && b != std::string::npos && b > a)
      m.dirs.emplace_back(line.substr(0, a), line.substr(b + 1));
  }
  for (size_t i = 0; i < st.models.size() && i < st.model_caps.size(); ++i)
    m.caps.emplace_back(st.models[i], st.model_caps[i]);
  return m;
}

}  // namespace

void set_masked_repaint(ipc::JobRequest& req, const Pixels& input, const Pixels& mask, Size model,
                        bool edit_model, MaskedRepaint& keep) {
  req.pipeline = edit_model ? "edit-inpaint" : "inpaint";
  keep.image = resize(input, model.w, model.h);
  keep.mask = binary_mask(resize(mask, model.w, model.h));
  req.images = {view_of(keep.image)};
  req.mask = view_of(keep.mask);
}

std::string validate(const Settings& s) {
  if (s.steps < 1 || s.steps > 1000) return "steps must be between 1 and 1000";
  if (s.true_cfg_scale < 0 || s.true_cfg_scale > 100) return "true-cfg-scale must be in 0..100";
  if (s.strength <= 0 || s.strength > 1) return "strength must be in (0, 1]";
  if (s.layers < ipc::kMinLayers || s.layers > ipc::kMaxLayers)
    return "layers must be between " + std::to_string(ipc::kMinLayers) + " and " +
           std::to_string(ipc::kMaxLayers);
  if (!ipc::valid_decompose_resolution(s.resolution)) return "resolution must be 640 or 1024";
  if (auto bad = parse_loras(s.loras, nullptr); !bad.empty()) return bad;
  return "";
}

std::vector<int> run_procedure(Host& host, Proc proc, int image, int drawable, const Settings& s,
                               const PluginConfig& config) {
  if (proc == Proc::Decompose) return run_decompose(host, image, drawable, s, config);
  if (proc == Proc::ExpandCanvas) return run_expand(host, image, drawable, s, config);
  if (host.is_indexed(image))
    throw UserError(
        "Qwen-Image works on RGB and grayscale images; convert this indexed image "
        "with Image → Mode → RGB first.");
  drawable = host.layer_of(drawable);
  if (drawable < 0)
    throw UserError("Qwen-Image: select a layer (not a channel or path) and run it again.");
  if (!*s.prompt) throw UserError("Qwen-Image: the prompt is empty; describe what you want.");
  // Reference layers (issue #17), checked and read before anything is started.
  const std::vector<Reference> refs = read_references(host, proc, s);

  const Rect canvas = host.canvas(image);
  const Rect layer = host.layer_rect(drawable);
  const auto sel = host.selection_bounds(image);

  // Work out the region and the inputs before anything is started.
  Rect region;         // image coordinates of the result layer
  Pixels input, mask;  // at region size (edit procedures)
  Pixels input_rgba;   // edit-selection: the crop with its alpha (Qwen-Image-2.1 takes RGBA)
  Pixels layer_mask;   // edit-selection: feathered selection
  bool whole_layer = false;
  switch (proc) {
    case Proc::Generate:
      region = generate_region(canvas, sel);
      break;
    case Proc::EditSelection: {
      auto er = edit_region(layer, canvas, sel);
      if (!er)
        throw UserError(
            "Qwen-Image: the selection does not touch the active layer inside the "
            "canvas; select part of the layer or choose another layer.");
      region = er->crop;
      whole_layer = er->whole_layer;
      input_rgba = host.read_drawable(drawable,
                                      {region.x - layer.x, region.y - layer.y, region.w, region.h});
      input = flatten_alpha(input_rgba);
      if (whole_layer) {
        mask = Pixels(region.w, region.h, 1, 255);
        layer_mask = mask;
      } else {
        Pixels selection = host.read_selection(image, region);
        mask = binary_mask(selection);
        layer_mask = feathered_mask(selection, feather_radius(er->selection));
      }
      break;
    }
    case Proc::EditLayer:
      region = layer;
      input = host.read_drawable(drawable, {0, 0, layer.w, layer.h});
      break;
    case Proc::Decompose:     // run_decompose
    case Proc::ExpandCanvas:  // run_expand
      break;
  }
  Size model = model_size_for({region.w, region.h}, config.limits);

  host.progress_init("Qwen-Image: connecting to the daemon…");
  ipc::Client client = connect_or_start(host, config);

  ipc::JobRequest req;
  req.model = s.model;
  req.prompts = {s.prompt};
  if (*s.negative) req.negative_prompts = {s.negative};
  req.width = model.w;
  req.height = model.h;
  req.steps = s.steps;
  req.true_cfg_scale = float(s.true_cfg_scale);
  req.strength = float(s.strength);
  req.exact_geometry = true;
  req.result_format = ipc::PixelFormat::RGB8;
  if (auto bad = parse_loras(s.loras, &req.loras); !bad.empty())
    throw UserError("Qwen-Image: " + bad);
  req.lightning = s.lightning;
  if (req.lightning) {
    // "Fast (Lightning)" means the Lightning LoRA's sampling (frontend.h: 4/8 steps, CFG 1,
    // shift 3): the dialog's steps and CFG are left to the daemon, which applies the one rule
    // (QwenEngine::run, protocol version 5), instead of running the slider's 30 steps with CFG.
    req.steps = ipc::kModelDefaultSteps;
    req.true_cfg_scale = ipc::kModelDefaultTrueCfgScale;
  }

  std::string model_name = s.model;
  Models models;
  try {
    models = daemon_models(client);
  } catch (const ipc::ClientError& e) {
    throw to_user_error(e, config);
  }
  if (model_name.empty()) {
    model_name = models.default_name;
    // Edit Layer with the daemon's default: the first edit model it serves, if the default is not.
    if (proc == Proc::EditLayer && !models.can_edit(model_name))
      for (auto& [name, dir] : models.dirs)
        if (models.can_edit(name)) {
          model_name = name;
          req.model = name;
          break;
        }
  }
  const bool edit_model = models.can_edit(model_name);
  // The model's typed capabilities (issue #17) decide the references and the result's alpha: a
  // Qwen-Image-2.1 model (issue #15) takes RGBA pictures (its sizes are multiples of 32) and
  // returns RGBA, which becomes a layer with alpha.
  ipc::ModelCaps caps;
  try {
    caps = caps_of_model(client.status(), model_name);
  } catch (const ipc::ClientError& e) {
    throw to_user_error(e, config);
  }
  const bool rgba = caps.known && caps.rgba;
  const bool qwen21 = is_rgba_editor(caps);
  const bool can_edit = edit_model || (caps.known && caps.can_edit);
  check_reference_limit(refs, caps, model_name);
  if (qwen21) {
    SizeLimits limits = config.limits;
    limits.multiple = 32;
    model = model_size_for({region.w, region.h}, limits);
    req.width = model.w;
    req.height = model.h;
  }
  if (rgba) req.result_format = ipc::PixelFormat::RGBA8;
  std::vector<Pixels> model_refs;  // the reference layers as sent (RGB; RGBA for 2.1)
  MaskedRepaint masked;
  Pixels model_input;
  switch (proc) {
    case Proc::Generate:
      req.pipeline = "generate";
      break;
    case Proc::EditSelection:
      if (qwen21 || !refs.empty()) {
        // Edit-Inpaint (QwenImageEditInpaintPipeline) takes one picture and Qwen-Image-2.1 has no
        // inpaint pipeline: with reference layers, or with 2.1, the selection's crop is edited
        // whole (edit / edit-plus, as Edit Layer) and the feathered selection mask on the result
        // layer limits it to the selection. A model that only generates cannot do that.
        if (!can_edit)
          throw UserError(
              "Qwen-Image: Edit Selection with reference layers needs an edit model "
              "(Qwen-Image-Edit-2509/2511 or Qwen-Image-2.1), but the model is '" +
              model_name +
              "', which only inpaints one picture. Choose an edit model in the dialog, or clear "
              "the reference layers.");
        req.pipeline = "edit-auto";
        req.exact_geometry = false;
        model_input =
            qwen21 ? resize_rgba(input_rgba, model.w, model.h) : resize(input, model.w, model.h);
        req.images = {view_of(model_input)};
        break;
      }
      set_masked_repaint(req, input, mask, model, edit_model, masked);
      break;
    case Proc::EditLayer:
      if (!can_edit)
        throw UserError("Qwen-Image: Edit Layer needs an edit model (Qwen-Image-Edit-2509), but " +
                        (model_name.empty() ? std::string("the daemon lists no model")
                                            : "the model is '" + model_name + "'") +
                        ". Choose an edit model in the dialog or load one in the daemon.");
      req.pipeline = "edit-auto";  // Edit or Edit-Plus, as the model's model_index.json says
      // The plug-in already hands over the layer at the model size with its aspect ratio and
      // scales the result back itself, so the reference geometry gives the same pixel grid.
      req.exact_geometry = false;
      model_input = qwen21 ? resize_rgba(input, model.w, model.h)
                           : resize(flatten_alpha(input), model.w, model.h);
      req.images = {view_of(model_input)};
      break;
    case Proc::Decompose:     // run_decompose
    case Proc::ExpandCanvas:  // run_expand
      break;
  }

  // The reference layers after the edited picture, in the order given, at their own size (the
  // pipeline resizes each, as for the CLI's --image); flattened over white unless the model takes
  // RGBA. edit-auto runs Edit-Plus for several pictures.
  model_refs.reserve(refs.size());
  for (const Reference& r : refs) model_refs.push_back(qwen21 ? r.rgba : flatten_alpha(r.rgba));
  for (const Pixels& p : model_refs) req.images.push_back(view_of(p));

  const int variants = std::max(1, int(s.variants));
  // The live preview (issue #17) where the result goes, with its mask / the layer's alpha.
  LivePreview preview(host, config, image, drawable, region,
                      proc == Proc::EditSelection ? &layer_mask
                      : proc == Proc::EditLayer   ? &input
                                                  : nullptr);
  const gint32 seed = s.seed >= 0 ? s.seed : g_random_int_range(0, G_MAXINT32);
  std::vector<Pixels> results;
  for (int v = 0; v < variants; ++v) {
    req.seed = int64_t(seed) + v;
    host.progress_text("Qwen-Image: " + req.pipeline + " (" + std::to_string(v + 1) + " of " +
                       std::to_string(variants) + ")");
    auto images =
        run_job(host, client, req, config, double(v) / variants, 1.0 / variants, &preview);
    if (images.empty()) throw UserError("Qwen-Image: the daemon returned no image.");
    results.push_back(rgba ? resize_rgba(to_rgba(images.front()), region.w, region.h)
                           : resize(to_rgb(images.front()), region.w, region.h));
  }

  // The LoRAs as parsed, "name:strength,..." (strengths locale-independent).
  std::string loras_text;
  for (const auto& l : req.loras) {
    gchar num[G_ASCII_DTOSTR_BUF_SIZE];
    loras_text += (loras_text.empty() ? "" : ",") + l.name + ":" +
                  g_ascii_formatd(num, sizeof num, "%g", l.strength);
  }
  // All results are in: one undo step adds every layer.
  std::vector<int> layers;
  preview.remove();  // outside the undo history, before the results' undo group
  host.undo_group_start(image);
  for (int v = 0; v < variants; ++v) {
    const std::string name = layer_name(s, v, variants);
    int id = -1;
    // An RGBA result (Qwen-Image-2.1) keeps its own alpha; RGB ones take the edited layer's alpha
    // (Edit Layer) or are opaque.
    const Pixels pixels = rgba                      ? results[v]
                          : proc == Proc::EditLayer ? with_alpha_of(results[v], input)
                                                    : opaque_rgba(results[v]);
    id = host.add_result_layer(image, drawable, name, region, pixels,
                               proc == Proc::EditSelection ? &layer_mask : nullptr);
    // What made it, for reproducing it later (scripts read the "qwen-image-params" parasite).
    std::string params = "pipeline=" + req.pipeline + "\nmodel=" + model_name +
                         "\nseed=" + std::to_string(int64_t(seed) + v) +
                         "\nsteps=" + (req.lightning ? "default" : std::to_string(req.steps)) +
                         "\ntrue_cfg_scale=" +
                         (req.lightning ? "default" : std::to_string(req.true_cfg_scale)) +
                         "\nstrength=" + std::to_string(req.strength) + "\nprompt=" + s.prompt +
                         "\nnegative_prompt=" + s.negative + "\nloras=" + loras_text +
                         "\nlightning=" + (req.lightning ? "1" : "0");
    params += reference_params(refs);
    host.attach_params(id, params);
    layers.push_back(id);
  }
  host.undo_group_end(image);
  host.progress_update(1.0);
  return layers;
}

}  // namespace qwen::plugin
