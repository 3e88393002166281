// Plug-in entry: registers the procedures of the table (plugin/common/procedures.h) and dispatches
// runs (interactive, non-interactive, with last values).
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

GimpPDBArgType pdb_type(Pdb2Type t) {
  switch (t) {
    case Pdb2Type::Int32:
      return GIMP_PDB_INT32;
    case Pdb2Type::Float:
      return GIMP_PDB_FLOAT;
    case Pdb2Type::String:
      return GIMP_PDB_STRING;
    case Pdb2Type::Image:
      return GIMP_PDB_IMAGE;
    case Pdb2Type::Drawable:
      return GIMP_PDB_DRAWABLE;
    case Pdb2Type::Int32Array:
      return GIMP_PDB_INT32ARRAY;
  }
  return GIMP_PDB_INT32;
}

// One PDB procedure of a declaration (procedures.h): the historic one, or with `v2` NAME2, which
// takes the appended arguments too. The menu entry goes to the newest one.
void install(const ProcDecl& d, bool v2) {
  const auto list = pdb2_params(d, v2);
  std::vector<GimpParamDef> params;
  for (const auto& p : list)
    params.push_back({pdb_type(p.type), const_cast<gchar*>(p.name.c_str()),
                      const_cast<gchar*>(p.blurb.c_str())});
  GimpParamDef returns[] = {
      {GIMP_PDB_LAYER, const_cast<gchar*>(d.return_name), const_cast<gchar*>(d.return_blurb)}};
  const std::string name = v2 ? name_v2(d) : d.name;
  const bool menu = v2 || !has_appended(d);
  const std::string help =
      v2 ? std::string(d.help) + " Takes the arguments of " + d.name +
               ", then loras, lightning (and reference layers for the edits)."
      : has_appended(d)
          ? std::string(d.help) + " Kept as it was for existing scripts; " + name_v2(d) +
                " takes the newer arguments (LoRAs, Lightning, reference layers)."
          : std::string(d.help);
  gimp_install_procedure(name.c_str(), d.blurb, help.c_str(), kAuthor, kAuthor, "2026",
                         menu ? d.menu_label : nullptr, "RGB*, GRAY*", GIMP_PLUGIN,
                         int(params.size()), 1, params.data(), returns);
  if (menu) gimp_plugin_menu_register(name.c_str(), kMenu);
}

void query() {
  for (const auto& d : procedure_table()) {
    install(d, false);
    if (has_appended(d)) install(d, true);
  }
}

// The arguments of procedure `d` (v2: of NAME2) from the PDB parameters.
bool parse_args(const ProcDecl& d, bool v2, gint nparams, const GimpParam* param, Settings& s) {
  if (nparams != int(pdb2_params(d, v2).size())) return false;
  int i = 3;
  for (const auto& a : d.args) {
    if (a.since == Since::DialogOnly || (a.since == Since::Appended && !v2)) continue;
    const GimpParam& p = param[i++];
    switch (a.type) {
      case ArgType::String:
        set_field(s, a.field, p.data.d_string);
        break;
      case ArgType::Double:
        set_field(s, a.field, p.data.d_float);
        break;
      case ArgType::Int:
      case ArgType::Bool:
        set_field(s, a.field, double(p.data.d_int32));
        break;
      case ArgType::Layers: {  // INT32 count, then INT32ARRAY
        const GimpParam& arr = param[i++];
        std::vector<int> ids;
        for (int k = 0; k < p.data.d_int32 && arr.data.d_int32array; ++k)
          ids.push_back(arr.data.d_int32array[k]);
        set_layers(s, a.field, ids);
        break;
      }
    }
  }
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

  const ProcDecl* decl = nullptr;
  bool v2 = false;  // NAME2: the appended arguments too
  for (const auto& d : procedure_table())
    if (name == std::string(d.name) || (has_appended(d) && name == name_v2(d))) {
      decl = &d;
      v2 = name != std::string(d.name);
    }
  if (!decl) return fail(GIMP_PDB_CALLING_ERROR, "unknown procedure");
  const Proc proc = decl->proc;
  if (nparams < 3) return fail(GIMP_PDB_CALLING_ERROR, "");

  gegl_init(nullptr, nullptr);
  const auto run_mode = GimpRunMode(param[0].data.d_int32);
  const gint32 image = param[1].data.d_image;
  const gint32 drawable = param[2].data.d_drawable;
  const PluginConfig config = load_config();
  for (auto& w : config.warnings)
    g_printerr("qwen-image-gimp: %s: %s\n", config.path.c_str(), w.c_str());

  Settings s;
  apply_defaults(*decl, s);
  switch (run_mode) {
    case GIMP_RUN_INTERACTIVE: {
      gimp_get_data(name, &s);
      s.prompt[sizeof s.prompt - 1] = s.negative[sizeof s.negative - 1] = 0;
      s.model[sizeof s.model - 1] = s.loras[sizeof s.loras - 1] = 0;
      // A script that calls it interactively with a prompt presets the dialog with its values.
      if (Settings preset; parse_args(*decl, v2, nparams, param, preset) && *preset.prompt) {
        preset.variants = s.variants;
        s = preset;
      }
      DaemonInfo info = probe_daemon(config);
      if (!run_dialog(proc, s, info, config)) return fail(GIMP_PDB_CANCEL, "");
      break;
    }
    case GIMP_RUN_NONINTERACTIVE:
      if (!parse_args(*decl, v2, nparams, param, s))
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
