// Plug-in entry: registers the three procedures and dispatches runs (interactive, non-interactive,
// with last values).
#include <cstring>

#include "plugin.h"
#include "procedures.h"

using namespace qwen::plugin;

namespace {

void query();
void run(const gchar* name, gint nparams, const GimpParam* param, gint* nreturn_vals,
         GimpParam** return_vals);

const GimpPlugInInfo PLUG_IN_INFO = {nullptr, nullptr, query, run};

constexpr const char* kMenu = "<Image>/Filters/Generative/Qwen-Image";
constexpr const char* kAuthor = "qwen-image-gimp contributors";

GimpParamDef param(GimpPDBArgType type, const char* name, const char* desc) {
  return GimpParamDef{type, const_cast<gchar*>(name), const_cast<gchar*>(desc)};
}

std::vector<GimpParamDef> params_of(Proc proc) {
  std::vector<GimpParamDef> p = {
      param(GIMP_PDB_INT32, "run-mode",
            "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1) }"),
      param(GIMP_PDB_IMAGE, "image", "Input image"),
      param(GIMP_PDB_DRAWABLE, "drawable", "Input drawable"),
      param(GIMP_PDB_STRING, "prompt", proc == Proc::EditLayer ? "Edit instruction" : "Prompt"),
      param(GIMP_PDB_STRING, "negative-prompt", "Negative prompt (\"\" for none)"),
      param(GIMP_PDB_INT32, "steps", "Denoising steps (1..200)"),
      param(GIMP_PDB_FLOAT, "true-cfg-scale", "True CFG scale (active with a negative prompt)"),
      param(GIMP_PDB_INT32, "seed", "Seed (-1 for random)"),
  };
  if (proc == Proc::EditSelection)
    p.push_back(param(GIMP_PDB_FLOAT, "strength", "How much of the selection is repainted (0..1)"));
  p.push_back(param(GIMP_PDB_STRING, "model", "Model name (\"\" for the daemon's default)"));
  return p;
}

void install(Proc proc, const char* name, const char* blurb, const char* help, const char* label) {
  static GimpParamDef returns[] = {
      {GIMP_PDB_LAYER, const_cast<gchar*>("layer"), const_cast<gchar*>("The (first) new layer")}};
  auto p = params_of(proc);
  gimp_install_procedure(name, blurb, help, kAuthor, kAuthor, "2026", label, "RGB*, GRAY*",
                         GIMP_PLUGIN, int(p.size()), 1, p.data(), returns);
  gimp_plugin_menu_register(name, kMenu);
}

GimpPDBArgType pdb_type(ArgType t) {
  switch (t) {
    case ArgType::String:
      return GIMP_PDB_STRING;
    case ArgType::Double:
      return GIMP_PDB_FLOAT;
    case ArgType::Int:
    case ArgType::Bool:  // 2.10's PDB has no boolean: INT32 0/1
      break;
  }
  return GIMP_PDB_INT32;
}

// A procedure declared once in procedures.h (Decompose).
void install(const ProcDecl& d) {
  std::vector<GimpParamDef> params = {
      param(GIMP_PDB_INT32, "run-mode",
            "The run mode { RUN-INTERACTIVE (0), RUN-NONINTERACTIVE (1) }"),
      param(GIMP_PDB_IMAGE, "image", "Input image"),
      param(GIMP_PDB_DRAWABLE, "drawable", "Input drawable")};
  for (const auto& a : d.args) params.push_back(param(pdb_type(a.type), a.name, a.blurb));
  GimpParamDef returns[] = {
      {GIMP_PDB_LAYER, const_cast<gchar*>(d.return_name), const_cast<gchar*>(d.return_blurb)}};
  gimp_install_procedure(d.name, d.blurb, d.help, kAuthor, kAuthor, "2026", d.menu_label,
                         "RGB*, GRAY*", GIMP_PLUGIN, int(params.size()), 1, params.data(), returns);
  gimp_plugin_menu_register(d.name, kMenu);
}

void query() {
  install(Proc::Generate, kProcGenerate, "Generate a new layer from a text prompt with Qwen-Image",
          "Generates an image for the prompt at the size of the selection (or the canvas) and adds "
          "it as a new layer above the active one. Needs the qwen-imaged daemon.",
          "_Generate Layer from Text…");
  install(Proc::EditSelection, kProcEditSelection,
          "Repaint the selection from a prompt with Qwen-Image",
          "Inpaints the selected part of the active layer (with some context around it) and adds "
          "the result as a new layer masked by the selection; the original layer is untouched.",
          "Edit _Selection with Prompt…");
  install(Proc::EditLayer, kProcEditLayer, "Edit the active layer with an instruction",
          "Applies an instruction edit (Qwen-Image-Edit) to the whole active layer and adds the "
          "result as a new layer with the same size and offsets.",
          "Edit _Layer with Instruction…");
  install(decompose_decl());
}

// The declared arguments' defaults (first run of a declared procedure).
void apply_defaults(const ProcDecl& d, Settings& s) {
  for (const auto& a : d.args)
    if (a.type != ArgType::String) set_field(s, a.field, a.def);
}

bool parse_declared(const ProcDecl& d, gint nparams, const GimpParam* param, Settings& s) {
  if (nparams != 3 + int(d.args.size())) return false;
  for (size_t i = 0; i < d.args.size(); ++i) {
    const GimpParam& p = param[3 + i];
    switch (d.args[i].type) {
      case ArgType::String:
        set_field(s, d.args[i].field, p.data.d_string);
        break;
      case ArgType::Double:
        set_field(s, d.args[i].field, p.data.d_float);
        break;
      case ArgType::Int:
      case ArgType::Bool:
        set_field(s, d.args[i].field, double(p.data.d_int32));
        break;
    }
  }
  s.variants = 1;
  return true;
}

bool parse_args(Proc proc, gint nparams, const GimpParam* param, Settings& s) {
  if (proc == Proc::Decompose) return parse_declared(decompose_decl(), nparams, param, s);
  const int expected = proc == Proc::EditSelection ? 10 : 9;
  if (nparams != expected) return false;
  auto str = [](const GimpParam& p) { return p.data.d_string ? p.data.d_string : ""; };
  g_strlcpy(s.prompt, str(param[3]), sizeof s.prompt);
  g_strlcpy(s.negative, str(param[4]), sizeof s.negative);
  s.steps = param[5].data.d_int32;
  s.true_cfg_scale = param[6].data.d_float;
  s.seed = param[7].data.d_int32;
  s.random_seed = s.seed < 0;
  int next = 8;
  if (proc == Proc::EditSelection) s.strength = param[next++].data.d_float;
  g_strlcpy(s.model, str(param[next]), sizeof s.model);
  s.variants = 1;
  return true;
}

void run(const gchar* name, gint nparams, const GimpParam* param, gint* nreturn_vals,
         GimpParam** return_vals) {
  static GimpParam values[2];
  static std::string error;
  *nreturn_vals = 1;
  *return_vals = values;
  values[0].type = GIMP_PDB_STATUS;
  values[0].data.d_status = GIMP_PDB_SUCCESS;
  auto fail = [&](GimpPDBStatusType status, const std::string& message) {
    values[0].data.d_status = status;
    if (!message.empty()) {
      error = message;
      g_printerr("%s\n", message.c_str());
      *nreturn_vals = 2;
      values[1].type = GIMP_PDB_STRING;
      values[1].data.d_string = const_cast<gchar*>(error.c_str());
    }
  };

  Proc proc;
  if (!strcmp(name, kProcGenerate))
    proc = Proc::Generate;
  else if (!strcmp(name, kProcEditSelection))
    proc = Proc::EditSelection;
  else if (!strcmp(name, kProcEditLayer))
    proc = Proc::EditLayer;
  else if (!strcmp(name, kProcDecompose))
    proc = Proc::Decompose;
  else
    return fail(GIMP_PDB_CALLING_ERROR, "unknown procedure");
  if (nparams < 3) return fail(GIMP_PDB_CALLING_ERROR, "");

  gegl_init(nullptr, nullptr);
  const auto run_mode = GimpRunMode(param[0].data.d_int32);
  const gint32 image = param[1].data.d_image;
  const gint32 drawable = param[2].data.d_drawable;
  const PluginConfig config = load_config();
  for (auto& w : config.warnings)
    g_printerr("qwen-image-gimp: %s: %s\n", config.path.c_str(), w.c_str());

  Settings s;
  if (proc == Proc::Decompose) apply_defaults(decompose_decl(), s);
  switch (run_mode) {
    case GIMP_RUN_INTERACTIVE: {
      gimp_get_data(name, &s);
      s.prompt[sizeof s.prompt - 1] = s.negative[sizeof s.negative - 1] = 0;
      s.model[sizeof s.model - 1] = 0;
      // A script that calls it interactively with a prompt presets the dialog with its values.
      if (Settings preset; parse_args(proc, nparams, param, preset) && *preset.prompt) {
        preset.variants = s.variants;
        s = preset;
      }
      DaemonInfo info = probe_daemon(config);
      if (!run_dialog(proc, s, info, config)) return fail(GIMP_PDB_CANCEL, "");
      break;
    }
    case GIMP_RUN_NONINTERACTIVE:
      if (!parse_args(proc, nparams, param, s))
        return fail(GIMP_PDB_CALLING_ERROR, "Qwen-Image: wrong number of arguments");
      break;
    case GIMP_RUN_WITH_LAST_VALS:
      if (gimp_get_data_size(name) != sizeof s)
        return fail(GIMP_PDB_CALLING_ERROR,
                    "Qwen-Image: no last values yet; run it once from the menu first.");
      gimp_get_data(name, &s);
      break;
  }
  if (auto bad = validate(s); !bad.empty())
    return fail(GIMP_PDB_CALLING_ERROR, "Qwen-Image: " + bad);
  gimp_set_data(name, &s, sizeof s);  // remembered even when the job fails (fix and retry)

  try {
    Gimp2Host host;
    auto layers = run_procedure(host, proc, image, drawable, s, config);
    if (run_mode != GIMP_RUN_NONINTERACTIVE) gimp_displays_flush();
    *nreturn_vals = 2;
    values[1].type = GIMP_PDB_LAYER;
    values[1].data.d_layer = layers.empty() ? -1 : layers.front();
  } catch (const UserError& e) {
    fail(GIMP_PDB_EXECUTION_ERROR, e.what());
  } catch (const std::exception& e) {
    fail(GIMP_PDB_EXECUTION_ERROR, std::string("Qwen-Image: unexpected error: ") + e.what());
  }
}

}  // namespace

MAIN()
