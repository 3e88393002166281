#include "procedures.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "qwen_image/client.h"

namespace qwen::plugin {

namespace {

// The arguments the procedures share, declared once (prompt labels differ per procedure).
ArgDecl prompt_arg(const char* label, const char* blurb) {
  return {ArgType::String, Field::Prompt, "prompt", label, blurb};
}
const ArgDecl kNegative{ArgType::String, Field::Negative, "negative-prompt", "_Negative prompt",
                        "Negative prompt (\"\" for none)"};
const ArgDecl kSteps{
    ArgType::Int, Field::Steps, "steps", "_Steps", "Denoising steps (1..200)", 1, 200, 30};
const ArgDecl kCfg{ArgType::Double,
                   Field::Cfg,
                   "true-cfg-scale",
                   "True _CFG scale",
                   "True CFG scale (active with a negative prompt)",
                   0.0,
                   100.0,
                   4.0};
const ArgDecl kSeed{ArgType::Int,           Field::Seed, "seed",     "S_eed",
                    "Seed (-1 for random)", -1,          G_MAXINT32, -1};
const ArgDecl kStrength{ArgType::Double,
                        Field::Strength,
                        "strength",
                        "S_trength",
                        "How much of the selection is repainted (0..1)",
                        0.01,
                        1.0,
                        0.9};
const ArgDecl kModel{ArgType::String, Field::Model, "model", "_Model",
                     "Model name (\"\" for the daemon's default)"};
// LoRAs and Lightning (issue #14), reference layers (issue #17): appended.
const ArgDecl kLoras{ArgType::String,
                     Field::Loras,
                     "loras",
                     "_LoRAs",
                     "LoRAs with strengths, \"name:0.8,other:-0.3\" (names from the daemon's "
                     "lora_dir or absolute paths; strength 1 when omitted; \"\" for none)",
                     0,
                     0,
                     0,
                     Since::Appended};
const ArgDecl kLightning{ArgType::Bool,
                         Field::Lightning,
                         "lightning",
                         "_Fast (Lightning)",
                         "Lightning sampling: 4 or 8 steps, CFG 1, shift 3 instead of the steps and CFG given, for a "
                         "Lightning LoRA or a merged Lightning model (0/1)",
                         0,
                         1,
                         0,
                         Since::Appended};
const ArgDecl kReferences{
    ArgType::Layers,
    Field::References,
    "reference-layers",
    "_Reference layers",
    "Other layers (of this or other open images) sent as additional input "
    "images, in this order (the model's limit applies: Edit-2509/2511 take 2, "
    "Qwen-Image-2.1 takes 9)",
    0,
    9,
    0,
    Since::Appended};
const ArgDecl kVariants{ArgType::Int,
                        Field::Variants,
                        "variants",
                        "_Variants",
                        "How many variants (one layer each)",
                        1,
                        8,
                        1,
                        Since::DialogOnly};

std::vector<ProcDecl> make_table() {
  std::vector<ProcDecl> t;
  t.push_back({Proc::Generate,
               kProcGenerate,
               "_Generate Layer from Text…",
               "Qwen-Image: Generate Layer from Text",
               "Generate a new layer from a text prompt with Qwen-Image",
               "Generates an image for the prompt at the size of the selection (or the canvas) and "
               "adds it as a new layer above the active one. Needs the qwen-imaged daemon.",
               {prompt_arg("_Prompt", "Prompt"), kNegative, kSteps, kCfg, kSeed, kModel, kLoras,
                kLightning, kVariants},
               "layer",
               "The (first) new layer"});
  t.push_back({Proc::EditSelection,
               kProcEditSelection,
               "Edit _Selection with Prompt…",
               "Qwen-Image: Edit Selection with Prompt",
               "Repaint the selection from a prompt with Qwen-Image",
               "Inpaints the selected part of the active layer (with some context around it) and "
               "adds the result as a new layer masked by the selection; the original layer is "
               "untouched.",
               {prompt_arg("_Prompt", "Prompt"), kNegative, kSteps, kCfg, kSeed, kStrength, kModel,
                kLoras, kLightning, kReferences, kVariants},
               "layer",
               "The (first) new layer"});
  t.push_back({Proc::EditLayer,
               kProcEditLayer,
               "Edit _Layer with Instruction…",
               "Qwen-Image: Edit Layer with Instruction",
               "Edit the active layer with an instruction",
               "Applies an instruction edit (Qwen-Image-Edit) to the whole active layer and adds "
               "the result as a new layer with the same size and offsets.",
               {prompt_arg("_Instruction", "Edit instruction"), kNegative, kSteps, kCfg, kSeed,
                kModel, kLoras, kLightning, kReferences, kVariants},
               "layer",
               "The (first) new layer"});
  t.push_back(
      {Proc::Decompose,
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
           kNegative,
           {ArgType::Int, Field::Steps, "steps", "_Steps", "Denoising steps (1..200)", 1, 200, 50},
           kCfg,
           kSeed,
           {ArgType::Int, Field::Layers, "layers", "_Layers", "Number of RGBA layers (2..10)",
            double(ipc::kMinLayers), double(ipc::kMaxLayers), double(ipc::kDefaultLayers)},
           {ArgType::Int, Field::Resolution, "resolution", "_Resolution",
            "The model's working resolution: 640 or 1024 (area resolution^2 at the layer's "
            "aspect ratio)",
            640, 1024, double(ipc::kDefaultResolution)},
           {ArgType::Bool, Field::CfgNormalize, "cfg-normalize", "CFG _normalize",
            "Rescale the guided prediction to the conditional one's norm (0/1)", 0, 1, 0},
           {ArgType::String, Field::Model, "model", "_Model",
            "Model name (\"\": the daemon's Qwen-Image-Layered model)"},
       },
       "group",
       "The new layer group holding the layers"});
  // Expand Canvas with Prompt (issue #17; plugin/common/expand.cpp).
  // Margins: 0..4096 px each, at least one > 0 (validate_margins).
  auto margin = [](Field f, const char* name, const char* label, const char* blurb) {
    return ArgDecl{ArgType::Int, f, name, label, blurb, 0, kMaxExpandMargin, 0};
  };
  t.push_back(
      {Proc::ExpandCanvas,
       kProcExpandCanvas,
       "E_xpand Canvas with Prompt…",
       "Qwen-Image: Expand Canvas with Prompt",
       "Grow the canvas by margins and fill the new area with Qwen-Image",
       "Enlarges the canvas by the given margins (the layers keep their pixels and move with the "
       "canvas, as Image > Canvas Size does) and fills only the new area, from the active layer's "
       "pixels as context: a new layer above the active one, masked to the new area, so every "
       "existing pixel stays exactly as it was. Uses the inpaint pipeline with Qwen-Image, "
       "edit-inpaint with Qwen-Image-Edit, and an edit of the expanded picture with "
       "Qwen-Image-2.1. One undo step; a failing job leaves the image unchanged.",
       {prompt_arg("_Prompt", "The picture as it should look with the new area filled in"),
        kNegative, kSteps, kCfg, kSeed,
        margin(Field::ExpandLeft, "left", "_Left margin (px)", "Left margin in pixels (0..4096)"),
        margin(Field::ExpandTop, "top", "_Top margin (px)", "Top margin in pixels (0..4096)"),
        margin(Field::ExpandRight, "right", "_Right margin (px)",
               "Right margin in pixels (0..4096)"),
        margin(Field::ExpandBottom, "bottom", "_Bottom margin (px)",
               "Bottom margin in pixels (0..4096; at least one margin > 0)"),
        kModel},
       "layer",
       "The new layer filling the new area"});
  return t;
}

}  // namespace

const std::vector<ProcDecl>& procedure_table() {
  static const std::vector<ProcDecl> table = make_table();
  return table;
}

const ProcDecl& decl_of(Proc proc) {
  for (const auto& d : procedure_table())
    if (d.proc == proc) return d;
  return procedure_table().front();
}

const ProcDecl* decl_named(const std::string& name) {
  for (const auto& d : procedure_table())
    if (name == d.name) return &d;
  return nullptr;
}

const ProcDecl& decompose_decl() { return decl_of(Proc::Decompose); }

bool has_appended(const ProcDecl& d) {
  return std::any_of(d.args.begin(), d.args.end(),
                     [](const ArgDecl& a) { return a.since == Since::Appended; });
}

std::string name_v2(const ProcDecl& d) {
  return has_appended(d) ? std::string(d.name) + "2" : std::string();
}

std::vector<Pdb2Param> pdb2_params(const ProcDecl& d, bool v2) {
  std::vector<Pdb2Param> p = {
      {Pdb2Type::Int32, "run-mode", "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1) }"},
      {Pdb2Type::Image, "image", "Input image"},
      {Pdb2Type::Drawable, "drawable", "Input drawable"}};
  for (const auto& a : d.args) {
    if (a.since == Since::DialogOnly || (a.since == Since::Appended && !v2)) continue;
    switch (a.type) {
      case ArgType::String:
        p.push_back({Pdb2Type::String, a.name, a.blurb});
        break;
      case ArgType::Double:
        p.push_back({Pdb2Type::Float, a.name, a.blurb});
        break;
      case ArgType::Int:
      case ArgType::Bool:  // 2.10's PDB has no boolean: INT32 0/1
        p.push_back({Pdb2Type::Int32, a.name, a.blurb});
        break;
      case ArgType::Layers:  // 2.10 arrays follow their length
        p.push_back({Pdb2Type::Int32, std::string("num-") + a.name,
                     "Number of " + std::string(a.name) + " (0 for none)"});
        p.push_back({Pdb2Type::Int32Array, a.name,
                     std::string(a.blurb) + "; drawable ids (any open image)"});
        break;
    }
  }
  return p;
}

std::vector<const ArgDecl*> gimp3_args(const ProcDecl& d) {
  std::vector<const ArgDecl*> out;
  for (Since s : {Since::First, Since::Appended})
    for (const auto& a : d.args)
      if (a.since == s) out.push_back(&a);
  return out;
}

void apply_defaults(const ProcDecl& d, Settings& s) {
  for (const auto& a : d.args)
    if (a.type != ArgType::String && a.type != ArgType::Layers) set_field(s, a.field, a.def);
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
    case Field::Loras:
      g_strlcpy(s.loras, value, sizeof s.loras);
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
    case Field::Strength:
      s.strength = v;
      break;
    case Field::Lightning:
      s.lightning = v != 0;
      break;
    case Field::Variants:
      s.variants = gint32(v);
      break;
    case Field::ExpandLeft:
      s.expand_left = gint32(v);
      break;
    case Field::ExpandTop:
      s.expand_top = gint32(v);
      break;
    case Field::ExpandRight:
      s.expand_right = gint32(v);
      break;
    case Field::ExpandBottom:
      s.expand_bottom = gint32(v);
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
    case Field::Strength:
      return s.strength;
    case Field::Lightning:
      return s.lightning ? 1 : 0;
    case Field::Variants:
      return s.variants;
    case Field::ExpandLeft:
      return s.expand_left;
    case Field::ExpandTop:
      return s.expand_top;
    case Field::ExpandRight:
      return s.expand_right;
    case Field::ExpandBottom:
      return s.expand_bottom;
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
    case Field::Loras:
      return s.loras;
    default:
      return "";
  }
}

void set_layers(Settings& s, Field f, const std::vector<int>& ids) {
  if (f != Field::References) return;
  s.num_references = 0;
  for (int id : ids)
    if (id > 0 && s.num_references < int(G_N_ELEMENTS(s.references)))
      s.references[s.num_references++] = id;
}

std::vector<int> layers_field(const Settings& s, Field f) {
  if (f != Field::References) return {};
  const int n = std::clamp(int(s.num_references), 0, int(G_N_ELEMENTS(s.references)));
  return std::vector<int>(s.references, s.references + n);
}

std::string parse_loras(const std::string& text, std::vector<ipc::JobLora>* out) {
  std::vector<ipc::JobLora> loras;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    std::string entry = text.substr(start, comma - start);
    start = comma + 1;
    auto trim = [](std::string s) {
      const char* ws = " \t\r\n";
      s.erase(0, s.find_first_not_of(ws) == std::string::npos ? s.size() : s.find_first_not_of(ws));
      s.erase(s.find_last_not_of(ws) + 1);
      return s;
    };
    entry = trim(entry);
    if (entry.empty()) {
      if (comma == text.size()) break;  // "" or a trailing comma
      continue;                         // ",," is harmless
    }
    ipc::JobLora l;
    // NAME[:STRENGTH]; a path may hold ':' itself, so only a number after the last ':' counts.
    l.name = entry;
    if (auto colon = entry.rfind(':'); colon != std::string::npos) {
      const std::string num = trim(entry.substr(colon + 1));
      char* end = nullptr;
      errno = 0;
      const double v = num.empty() ? NAN : std::strtod(num.c_str(), &end);
      const bool numeric = !num.empty() && end && *end == 0 && errno == 0;
      if (!numeric)
        return "LoRA entry '" + entry + "': the strength after ':' must be a number (as in " +
               "\"name:0.8\")";
      if (!std::isfinite(v) || std::fabs(v) > ipc::kMaxLoraStrength)
        return "LoRA entry '" + entry + "': the strength must be between -10 and 10";
      l.name = trim(entry.substr(0, colon));
      l.strength = float(v);
    }
    if (l.name.empty()) return "LoRA entry '" + entry + "' has no name (as in \"name:0.8\")";
    if (l.name.find('/') != std::string::npos && l.name.front() != '/')
      return "LoRA entry '" + entry +
             "': a LoRA is a bare file name from the daemon's lora_dir or an absolute path";
    loras.push_back(l);
  }
  if (int(loras.size()) > ipc::kMaxJobLoras)
    return "at most " + std::to_string(ipc::kMaxJobLoras) + " LoRAs per job (got " +
           std::to_string(loras.size()) + ")";
  if (out) *out = std::move(loras);
  return "";
}

bool model_can_edit(const std::string& name, const std::string& dir, const ipc::ModelCaps& caps) {
  return caps.known ? caps.can_edit : is_edit_model(name, dir);
}

bool model_suits(Proc proc, const std::string& name, const std::string& dir,
                 const ipc::ModelCaps& caps) {
  switch (proc) {
    case Proc::Generate:
      return caps.known ? caps.can_generate : !is_edit_model(name, dir);
    case Proc::EditSelection:  // inpaint (text-to-image models) or edit-inpaint (edit models)
      return caps.known ? caps.can_generate || caps.can_edit : true;
    case Proc::EditLayer:
      return model_can_edit(name, dir, caps);
    case Proc::Decompose:
      return caps.known ? caps.can_decompose : true;
    case Proc::ExpandCanvas:  // inpaint, edit-inpaint, or a Qwen-Image-2.1 edit
      return caps.known ? caps.can_generate || caps.can_edit : true;
  }
  return true;
}

bool offer_lightning(const ipc::ModelCaps& caps, const DaemonInfo& daemon) {
  if (caps.known && !caps.loras) return false;
  if (daemon.protocol_version < 4) return true;
  return std::any_of(daemon.loras.begin(), daemon.loras.end(),
                     [](const ipc::LoraInfo& l) { return l.lightning; });
}

int reference_slots(Proc proc, const ipc::ModelCaps& caps) {
  if (proc != Proc::EditSelection && proc != Proc::EditLayer) return 0;
  if (!caps.known || !caps.can_edit) return 0;
  return std::clamp(caps.max_references - 1, 0, 9);
}

}  // namespace qwen::plugin
