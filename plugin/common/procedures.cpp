#include "procedures.h"

#include <cmath>

#include "qwen_image/client.h"

namespace qwen::plugin {

const ProcDecl& decompose_decl() {
  static const ProcDecl d = {
      Proc::Decompose,
      kProcDecompose,
      "_Decompose into Layers…",
      "Qwen-Image: Decompose into Layers",
      "Split the active layer (or the selection's part of it) into RGBA layers with "
      "Qwen-Image-Layered",
      "Decomposes the active layer, or the part inside the selection's bounds, into transparent "
      "layers that stack back into the picture (Qwen-Image-Layered). They come back in a new "
      "layer group above the source, bottom layer first from the model, placed exactly over the "
      "source; the source is untouched. Returns the group. Needs the qwen-imaged daemon with a "
      "Qwen-Image-Layered model.",
      {
          {ArgType::String, Field::Prompt, "prompt", "_Prompt",
           "Description of the whole picture, including what is partly hidden (required)"},
          {ArgType::String, Field::Negative, "negative-prompt", "_Negative prompt",
           "Negative prompt (\"\" for none)"},
          {ArgType::Int, Field::Steps, "steps", "_Steps", "Denoising steps (1..200)", 1, 200, 50},
          {ArgType::Double, Field::Cfg, "true-cfg-scale", "True _CFG scale",
           "True CFG scale (active with a negative prompt)", 0.0, 100.0, 4.0},
          {ArgType::Int, Field::Seed, "seed", "S_eed", "Seed (-1 for random)", -1, G_MAXINT32, -1},
          {ArgType::Int, Field::Layers, "layers", "_Layers", "Number of RGBA layers (2..10)",
           double(ipc::kMinLayers), double(ipc::kMaxLayers), double(ipc::kDefaultLayers)},
          {ArgType::Int, Field::Resolution, "resolution", "_Resolution",
           "The model's working resolution: 640 or 1024 (area resolution^2 at the layer's aspect "
           "ratio)",
           640, 1024, double(ipc::kDefaultResolution)},
          {ArgType::Bool, Field::CfgNormalize, "cfg-normalize", "CFG _normalize",
           "Rescale the guided prediction to the conditional one's norm (0/1)", 0, 1, 0},
          {ArgType::String, Field::Model, "model", "_Model",
           "Model name (\"\": the daemon's Qwen-Image-Layered model)"},
      },
      "group",
      "The new layer group holding the layers"};
  return d;
}

void set_field(Settings& s, Field f, const char* value) {
  if (!value) value = "";
  switch (f) {
    case Field::Prompt:
      g_strlcpy(s.prompt, value, sizeof s.prompt);
      break;
    case Field::Negative:
      g_strlcpy(s.negative, value, sizeof s.negative);
      break;
    case Field::Model:
      g_strlcpy(s.model, value, sizeof s.model);
      break;
    default:
      break;
  }
}

void set_field(Settings& s, Field f, double v) {
  switch (f) {
    case Field::Steps:
      s.steps = gint32(v);
      break;
    case Field::Cfg:
      s.true_cfg_scale = v;
      break;
    case Field::Seed:
      s.seed = gint32(v);
      s.random_seed = s.seed < 0;
      break;
    case Field::Layers:
      s.layers = gint32(v);
      break;
    case Field::Resolution:
      s.resolution = gint32(v);
      break;
    case Field::CfgNormalize:
      s.cfg_normalize = v != 0;
      break;
    default:
      break;
  }
}

double number_field(const Settings& s, Field f) {
  switch (f) {
    case Field::Steps:
      return s.steps;
    case Field::Cfg:
      return s.true_cfg_scale;
    case Field::Seed:
      return s.seed;
    case Field::Layers:
      return s.layers;
    case Field::Resolution:
      return s.resolution;
    case Field::CfgNormalize:
      return s.cfg_normalize ? 1 : 0;
    default:
      return 0;
  }
}

const char* string_field(const Settings& s, Field f) {
  switch (f) {
    case Field::Prompt:
      return s.prompt;
    case Field::Negative:
      return s.negative;
    case Field::Model:
      return s.model;
    default:
      return "";
  }
}

}  // namespace qwen::plugin
