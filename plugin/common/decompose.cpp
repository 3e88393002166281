// Decompose into Layers (issue #16): the active layer, or the part inside the selection's bounds,
// goes to a Qwen-Image-Layered model as RGBA at its own size (the engine resizes it to the
// reference's resolution bucket exactly as QwenImageLayeredPipeline does, so the layers equal
// `qwen-image decompose` on the same pixels); the N RGBA layers come back resampled
// (premultiplied alpha) onto the region's exact pixel grid and are stacked in a new layer group
// above the source. The reference returns the bottom layer first (the official demo stacks its
// export in the returned order: python-pptx puts later pictures on top), so layer 1 of N is the
// group's bottom child.
#include <algorithm>
#include <cctype>
#include <cstring>

#include "frontend.h"
#include "preview.h"

namespace qwen::plugin {

namespace ipc = qwen::ipc;

namespace {

ipc::ImageView view_of_rgba(const Pixels& p) {
  ipc::ImageView v;
  v.width = p.width;
  v.height = p.height;
  v.format = ipc::PixelFormat::RGBA8;
  v.data = p.data.data();
  return v;
}

std::string short_prompt(const char* prompt) {
  gchar* head = g_utf8_substring(prompt, 0, std::min<glong>(g_utf8_strlen(prompt, -1), 60));
  std::string s = head;
  g_free(head);
  return s;
}

// The model a decomposition runs on: the one named, else the daemon's first model that can
// decompose (its default when that one can). Throws UserError when the daemon has none.
std::string choose_model(const ipc::DaemonStatus& st, const std::string& named) {
  if (st.protocol_version < 3)
    throw UserError("Qwen-Image: the running qwen-imaged is older than this plug-in (protocol " +
                    std::to_string(st.protocol_version) +
                    ") and cannot decompose; restart it from the same release as the plug-in.");
  auto caps_of = [&](size_t i) {
    return i < st.model_caps.size() ? st.model_caps[i] : ipc::ModelCaps{};
  };
  if (!named.empty()) {
    for (size_t i = 0; i < st.models.size(); ++i)
      if (st.models[i] == named && caps_of(i).known && !caps_of(i).can_decompose)
        throw UserError("Qwen-Image: the model '" + named + "' (" + caps_of(i).family +
                        ") cannot decompose; choose a Qwen-Image-Layered model.");
    return named;  // the daemon checks names it does not list
  }
  for (size_t i = 0; i < st.models.size(); ++i)
    if (caps_of(i).known && caps_of(i).can_decompose) return st.models[i];
  for (size_t i = 0; i < st.models.size(); ++i)
    if (!caps_of(i).known) return st.models[i];  // not loaded yet: the daemon decides
  std::string served;
  for (const auto& m : st.models) served += (served.empty() ? "" : ", ") + m;
  throw UserError(
      "Qwen-Image: Decompose into Layers needs a Qwen-Image-Layered model, but the daemon serves " +
      (served.empty() ? std::string("no model") : served) +
      ". Add `model = /path/to/Qwen-Image-Layered` to ~/.config/qwen-image/daemon.conf and "
      "restart qwen-imaged.");
}

}  // namespace

std::vector<int> run_decompose(Host& host, int image, int drawable, const Settings& s,
                               const PluginConfig& config) {
  if (host.is_indexed(image))
    throw UserError(
        "Qwen-Image works on RGB and grayscale images; convert this indexed image "
        "with Image → Mode → RGB first.");
  drawable = host.layer_of(drawable);
  if (drawable < 0)
    throw UserError("Qwen-Image: select a layer (not a channel or path) and run it again.");
  // The engine requires a prompt (it does not caption the picture like the reference does when
  // the prompt is empty; daemon/pipelines/engine_layered.cpp): say so before anything starts.
  if (std::all_of(s.prompt, s.prompt + std::strlen(s.prompt),
                  [](unsigned char c) { return std::isspace(c); }))
    throw UserError(
        "Qwen-Image: Decompose into Layers needs a prompt that describes the whole picture, "
        "including what is partly hidden (it is not a description of single layers).");
  const Rect layer = host.layer_rect(drawable);
  const Rect region = decompose_region(layer, host.selection_bounds(image));
  if (region.empty())
    throw UserError(
        "Qwen-Image: the selection does not touch the active layer; select part of the layer, "
        "select none (the whole layer) or choose another layer.");
  // The source's own pixels, alpha included (the engine takes RGBA like the reference).
  const Pixels input =
      host.read_drawable(drawable, {region.x - layer.x, region.y - layer.y, region.w, region.h});

  host.progress_init("Qwen-Image: connecting to the daemon…");
  ipc::Client client = connect_or_start(host, config);
  std::string model;
  try {
    model = choose_model(client.status(), s.model);
  } catch (const ipc::ClientError& e) {
    throw to_user_error(e, config);
  }

  ipc::JobRequest req;
  req.pipeline = "decompose";
  req.model = model;
  req.prompts = {s.prompt};
  if (*s.negative) req.negative_prompts = {s.negative};
  req.steps = s.steps;
  req.true_cfg_scale = float(s.true_cfg_scale);
  req.layers = s.layers;
  req.resolution = s.resolution;
  req.cfg_normalize = s.cfg_normalize;
  req.result_format = ipc::PixelFormat::RGBA8;
  req.images = {view_of_rgba(input)};
  const gint32 seed = s.seed >= 0 ? s.seed : g_random_int_range(0, G_MAXINT32);
  req.seed = seed;
  host.progress_text("Qwen-Image: decompose into " + std::to_string(s.layers) + " layers");
  // The live preview (issue #17): the engine's composite estimate where the group will go.
  LivePreview preview(host, config, image, drawable, region, &input);
  auto images = run_job(host, client, req, config, 0.0, 1.0, &preview);
  if (images.size() != size_t(s.layers))
    throw UserError("Qwen-Image: the daemon returned " + std::to_string(images.size()) +
                    " layers instead of " + std::to_string(s.layers) + ".");
  std::vector<Pixels> layers;
  for (const auto& img : images) {
    if (img.format != ipc::PixelFormat::RGBA8 || img.width <= 0 || img.height <= 0 ||
        img.bytes.size() != size_t(img.width) * img.height * 4)
      throw UserError("Qwen-Image: the daemon returned a malformed layer.");
    Pixels p(img.width, img.height, 4);
    p.data = img.bytes;
    // Back onto the region's exact pixel grid (identity when the model worked at its size).
    layers.push_back(resize_rgba(p, region.w, region.h));
  }

  // All layers are in: one undo step adds the group and its layers.
  const std::string prompt = short_prompt(s.prompt);
  const int n = int(layers.size());
  std::vector<int> ids;
  preview.remove();  // outside the undo history, before the group's undo group
  host.undo_group_start(image);
  try {
    const int group = host.add_layer_group(
        image, drawable, "Decomposed" + (prompt.empty() ? std::string() : ": " + prompt));
    ids.push_back(group);
    // Bottom layer first: each new one goes on top of the group.
    for (int i = 0; i < n; ++i) {
      const std::string name = "Layer " + std::to_string(i + 1) + "/" + std::to_string(n) +
                               (prompt.empty() ? std::string() : " " + prompt);
      ids.push_back(host.add_layer_to_group(image, group, name, region, layers[size_t(i)]));
    }
    std::string params = "pipeline=decompose\nmodel=" + model + "\nseed=" + std::to_string(seed) +
                         "\nsteps=" + std::to_string(req.steps) +
                         "\ntrue_cfg_scale=" + std::to_string(req.true_cfg_scale) +
                         "\nlayers=" + std::to_string(req.layers) +
                         "\nresolution=" + std::to_string(req.resolution) +
                         "\ncfg_normalize=" + (req.cfg_normalize ? "1" : "0") +
                         "\nprompt=" + s.prompt + "\nnegative_prompt=" + s.negative;
    host.attach_params(group, params);
  } catch (...) {
    host.undo_group_end(image);
    throw;
  }
  host.undo_group_end(image);
  host.progress_update(1.0);
  return ids;
}

}  // namespace qwen::plugin
