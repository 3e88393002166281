// GIMP 3 front-end (3.0 and 3.2: libgimp's API and ABI stay "3.0" across 3.x): a GimpPlugIn
// subclass registering the same three procedures as the 2.10 plug-in (same names, same arguments
// after run-mode/image/drawables, same meaning), typed GimpProcedure arguments, remembered values
// in GimpProcedureConfig and the GTK3 procedure dialog. The work (pixels, daemon, result layers) is
// the shared plugin/common/ code.
#include <libgimp/gimpui.h>

#include <cstring>
#include <string>

#include "plugin3.h"
#include "procedures.h"

using namespace qwen::plugin;

namespace {

constexpr const char* kMenu = "<Image>/Filters/Generative/Qwen-Image";
constexpr const char* kAuthor = "qwen-image-gimp contributors";

Proc proc_of(const gchar* name) {
  if (!strcmp(name, kProcEditSelection)) return Proc::EditSelection;
  if (!strcmp(name, kProcEditLayer)) return Proc::EditLayer;
  if (!strcmp(name, kProcDecompose)) return Proc::Decompose;
  return Proc::Generate;
}

const char* title_of(Proc proc) {
  switch (proc) {
    case Proc::Generate:
      return "Qwen-Image: Generate Layer from Text";
    case Proc::EditSelection:
      return "Qwen-Image: Edit Selection with Prompt";
    case Proc::EditLayer:
      return "Qwen-Image: Edit Layer with Instruction";
    case Proc::Decompose:
      return decompose_decl().title;
    case Proc::ExpandCanvas:
      return "Qwen-Image: Expand Canvas with Prompt";
  }
  return "Qwen-Image";
}

// Settings from the procedure's config (arguments in non-interactive runs, the dialog's values
// otherwise).
// A declared procedure's values (procedures.h), argument by argument.
Settings declared_settings(const ProcDecl& d, GimpProcedureConfig* config) {
  Settings s;
  for (const auto& a : d.args) {
    switch (a.type) {
      case ArgType::String: {
        gchar* v = nullptr;
        g_object_get(config, a.name, &v, nullptr);
        set_field(s, a.field, v);
        g_free(v);
        break;
      }
      case ArgType::Int: {
        gint v = 0;
        g_object_get(config, a.name, &v, nullptr);
        set_field(s, a.field, double(v));
        break;
      }
      case ArgType::Double: {
        gdouble v = 0;
        g_object_get(config, a.name, &v, nullptr);
        set_field(s, a.field, v);
        break;
      }
      case ArgType::Bool: {
        gboolean v = FALSE;
        g_object_get(config, a.name, &v, nullptr);
        set_field(s, a.field, v ? 1.0 : 0.0);
        break;
      }
    }
  }
  s.variants = 1;
  return s;
}

Settings settings_of(Proc proc, GimpProcedureConfig* config) {
  if (proc == Proc::Decompose) return declared_settings(decompose_decl(), config);
  Settings s;
  gchar *prompt = nullptr, *negative = nullptr, *model = nullptr;
  gint steps = 30, seed = -1, variants = 1;
  gdouble cfg = 4.0;
  g_object_get(config, "prompt", &prompt, "negative-prompt", &negative, "steps", &steps,
               "true-cfg-scale", &cfg, "seed", &seed, "model", &model, "variants", &variants,
               nullptr);
  g_strlcpy(s.prompt, prompt ? prompt : "", sizeof s.prompt);
  g_strlcpy(s.negative, negative ? negative : "", sizeof s.negative);
  g_strlcpy(s.model, model ? model : "", sizeof s.model);
  g_free(prompt);
  g_free(negative);
  g_free(model);
  s.steps = steps;
  s.true_cfg_scale = cfg;
  s.seed = seed;
  s.random_seed = seed < 0;
  s.variants = variants;
  if (proc == Proc::EditSelection) g_object_get(config, "strength", &s.strength, nullptr);
  return s;
}

bool run_dialog(GimpProcedure* procedure, Proc proc, GimpProcedureConfig* config,
                const PluginConfig& plugin_config) {
  gimp_ui_init(kBinary3);
  const DaemonInfo info = probe_daemon(plugin_config);
  GtkWidget* dialog = gimp_procedure_dialog_new(procedure, config, title_of(proc));
  std::string status =
      info.running ? "Daemon: running on " + info.device +
                         (info.models.empty() ? "" : ", default model " + info.models.front())
                   : "Daemon: not running (it is started when you press OK, if configured)";
  GtkWidget* label = gtk_label_new(status.c_str());
  gtk_label_set_line_wrap(GTK_LABEL(label), TRUE);
  gtk_widget_show(label);
  gtk_box_pack_end(GTK_BOX(gtk_dialog_get_content_area(GTK_DIALOG(dialog))), label, FALSE, FALSE,
                   6);
  gimp_procedure_dialog_fill(GIMP_PROCEDURE_DIALOG(dialog), nullptr);
  const bool ok = gimp_procedure_dialog_run(GIMP_PROCEDURE_DIALOG(dialog));
  gtk_widget_destroy(dialog);
  return ok;
}

GimpValueArray* fail(GimpProcedure* procedure, GimpPDBStatusType status,
                     const std::string& message) {
  GError* error = nullptr;
  if (!message.empty()) {
    g_printerr("%s\n", message.c_str());
    error = g_error_new_literal(GIMP_PLUG_IN_ERROR, 0, message.c_str());
  }
  return gimp_procedure_new_return_values(procedure, status, error);
}

GimpValueArray* run(GimpProcedure* procedure, GimpRunMode run_mode, GimpImage* image,
                    GimpDrawable** drawables, GimpProcedureConfig* config, gpointer) {
  const Proc proc = proc_of(gimp_procedure_get_name(procedure));
  gegl_init(nullptr, nullptr);
  // The running GIMP's series (libgimpbase's runtime version, not the headers'): 3.0 or 3.2.
  set_gimp_series(std::to_string(gimp_major_version) + "." + std::to_string(gimp_minor_version));
  const PluginConfig plugin_config = load_config();
  for (auto& w : plugin_config.warnings)
    g_printerr("%s: %s: %s\n", kBinary3, plugin_config.path.c_str(), w.c_str());

  // NULL-terminated in 3.0 and 3.2. Any drawable is read as pixels (text layers, 3.2's link and
  // vector layers too); results are always new raster layers.
  if (!drawables || !drawables[0] || drawables[1])
    return fail(procedure, GIMP_PDB_CALLING_ERROR,
                "Qwen-Image: select exactly one layer and run it again.");
  if (run_mode == GIMP_RUN_INTERACTIVE && !run_dialog(procedure, proc, config, plugin_config))
    return fail(procedure, GIMP_PDB_CANCEL, "");

  const Settings s = settings_of(proc, config);
  if (auto bad = validate(s); !bad.empty())
    return fail(procedure, GIMP_PDB_CALLING_ERROR, "Qwen-Image: " + bad);
  try {
    Gimp3Host host;
    auto layers = run_procedure(host, proc, gimp_image_get_id(image),
                                gimp_item_get_id(GIMP_ITEM(drawables[0])), s, plugin_config);
    if (run_mode != GIMP_RUN_NONINTERACTIVE) gimp_displays_flush();
    GimpValueArray* values = gimp_procedure_new_return_values(procedure, GIMP_PDB_SUCCESS, nullptr);
    if (!layers.empty())
      GIMP_VALUES_SET_LAYER(values, 1, GIMP_LAYER(gimp_item_get_by_id(layers.front())));
    return values;
  } catch (const UserError& e) {
    return fail(procedure, GIMP_PDB_EXECUTION_ERROR, e.what());
  } catch (const std::exception& e) {
    return fail(procedure, GIMP_PDB_EXECUTION_ERROR,
                std::string("Qwen-Image: unexpected error: ") + e.what());
  }
}

// A procedure declared once in procedures.h (Decompose): the same arguments as in 2.10, typed.
GimpProcedure* make_declared(GimpPlugIn* plug_in, const ProcDecl& d) {
  GimpProcedure* p =
      gimp_image_procedure_new(plug_in, d.name, GIMP_PDB_PROC_TYPE_PLUGIN, run, nullptr, nullptr);
  gimp_procedure_set_image_types(p, "RGB*, GRAY*");
  gimp_procedure_set_sensitivity_mask(p, GIMP_PROCEDURE_SENSITIVE_DRAWABLE);
  gimp_procedure_set_menu_label(p, d.menu_label);
  gimp_procedure_set_documentation(p, d.blurb, d.help, d.name);
  gimp_procedure_add_menu_path(p, kMenu);
  gimp_procedure_set_attribution(p, kAuthor, kAuthor, "2026");
  for (const auto& a : d.args) {
    switch (a.type) {
      case ArgType::String:
        gimp_procedure_add_string_argument(p, a.name, a.label, a.blurb, "", G_PARAM_READWRITE);
        break;
      case ArgType::Int:
        gimp_procedure_add_int_argument(p, a.name, a.label, a.blurb, int(a.min), int(a.max),
                                        int(a.def), G_PARAM_READWRITE);
        break;
      case ArgType::Double:
        gimp_procedure_add_double_argument(p, a.name, a.label, a.blurb, a.min, a.max, a.def,
                                           G_PARAM_READWRITE);
        break;
      case ArgType::Bool:
        gimp_procedure_add_boolean_argument(p, a.name, a.label, a.blurb, a.def != 0,
                                            G_PARAM_READWRITE);
        break;
    }
  }
  gimp_procedure_add_layer_return_value(p, d.return_name, d.return_name, d.return_blurb, TRUE,
                                        G_PARAM_READWRITE);
  return p;
}

GimpProcedure* make_procedure(GimpPlugIn* plug_in, const gchar* name) {
  const Proc proc = proc_of(name);
  if (proc == Proc::Decompose) return make_declared(plug_in, decompose_decl());
  GimpProcedure* p =
      gimp_image_procedure_new(plug_in, name, GIMP_PDB_PROC_TYPE_PLUGIN, run, nullptr, nullptr);
  gimp_procedure_set_image_types(p, "RGB*, GRAY*");
  gimp_procedure_set_sensitivity_mask(p, GIMP_PROCEDURE_SENSITIVE_DRAWABLE);
  switch (proc) {
    case Proc::Decompose:     // make_declared
    case Proc::ExpandCanvas:  // not registered yet
      break;
    case Proc::Generate:
      gimp_procedure_set_menu_label(p, "_Generate Layer from Text…");
      gimp_procedure_set_documentation(
          p, "Generate a new layer from a text prompt with Qwen-Image",
          "Generates an image for the prompt at the size of the selection (or the canvas) and adds "
          "it as a new layer above the active one. Needs the qwen-imaged daemon.",
          name);
      break;
    case Proc::EditSelection:
      gimp_procedure_set_menu_label(p, "Edit _Selection with Prompt…");
      gimp_procedure_set_documentation(
          p, "Repaint the selection from a prompt with Qwen-Image",
          "Inpaints the selected part of the active layer (with some context around it) and adds "
          "the result as a new layer masked by the selection; the original layer is untouched.",
          name);
      break;
    case Proc::EditLayer:
      gimp_procedure_set_menu_label(p, "Edit _Layer with Instruction…");
      gimp_procedure_set_documentation(
          p, "Edit the active layer with an instruction",
          "Applies an instruction edit (Qwen-Image-Edit) to the whole active layer and adds the "
          "result as a new layer with the same size and offsets.",
          name);
      break;
  }
  gimp_procedure_add_menu_path(p, kMenu);
  gimp_procedure_set_attribution(p, kAuthor, kAuthor, "2026");

  // Same order and meaning as the 2.10 procedures (after run-mode, image, drawables).
  gimp_procedure_add_string_argument(
      p, "prompt", proc == Proc::EditLayer ? "_Instruction" : "_Prompt",
      proc == Proc::EditLayer ? "Edit instruction" : "Prompt", "", G_PARAM_READWRITE);
  gimp_procedure_add_string_argument(p, "negative-prompt", "_Negative prompt",
                                     "Negative prompt (\"\" for none)", "", G_PARAM_READWRITE);
  gimp_procedure_add_int_argument(p, "steps", "_Steps", "Denoising steps (1..200)", 1, 200, 30,
                                  G_PARAM_READWRITE);
  gimp_procedure_add_double_argument(p, "true-cfg-scale", "True _CFG scale",
                                     "True CFG scale (active with a negative prompt)", 0.0, 100.0,
                                     4.0, G_PARAM_READWRITE);
  gimp_procedure_add_int_argument(p, "seed", "S_eed", "Seed (-1 for random)", -1, G_MAXINT32, -1,
                                  G_PARAM_READWRITE);
  if (proc == Proc::EditSelection)
    gimp_procedure_add_double_argument(p, "strength", "S_trength",
                                       "How much of the selection is repainted (0..1)", 0.01, 1.0,
                                       0.9, G_PARAM_READWRITE);
  gimp_procedure_add_string_argument(
      p, "model", "_Model", "Model name (\"\" for the daemon's default)", "", G_PARAM_READWRITE);
  // Dialog-only (not a PDB argument, as in 2.10): several variants, each its own layer.
  gimp_procedure_add_int_aux_argument(
      p, "variants", "_Variants", "How many variants (one layer each)", 1, 8, 1, G_PARAM_READWRITE);
  gimp_procedure_add_layer_return_value(p, "layer", "Layer", "The (first) new layer", TRUE,
                                        G_PARAM_READWRITE);
  return p;
}

}  // namespace

extern "C" {

#define QWEN_TYPE_PLUG_IN (qwen_plug_in_get_type())
G_DECLARE_FINAL_TYPE(QwenPlugIn, qwen_plug_in, QWEN, PLUG_IN, GimpPlugIn)

struct _QwenPlugIn {
  GimpPlugIn parent_instance;
};

G_DEFINE_TYPE(QwenPlugIn, qwen_plug_in, GIMP_TYPE_PLUG_IN)

static GList* qwen_query_procedures(GimpPlugIn*) {
  GList* list = nullptr;
  for (const char* name : {kProcGenerate, kProcEditSelection, kProcEditLayer, kProcDecompose})
    list = g_list_append(list, g_strdup(name));
  return list;
}

static GimpProcedure* qwen_create_procedure(GimpPlugIn* plug_in, const gchar* name) {
  if (strcmp(name, kProcGenerate) && strcmp(name, kProcEditSelection) &&
      strcmp(name, kProcEditLayer) && strcmp(name, kProcDecompose))
    return nullptr;
  return make_procedure(plug_in, name);
}

// No translations are shipped: tell GIMP so instead of it looking for a locale folder.
static gboolean qwen_set_i18n(GimpPlugIn*, const gchar*, gchar**, gchar**) { return FALSE; }

static void qwen_plug_in_class_init(QwenPlugInClass* klass) {
  GimpPlugInClass* plug_in_class = GIMP_PLUG_IN_CLASS(klass);
  plug_in_class->set_i18n = qwen_set_i18n;
  plug_in_class->query_procedures = qwen_query_procedures;
  plug_in_class->create_procedure = qwen_create_procedure;
}

static void qwen_plug_in_init(QwenPlugIn*) {}

}  // extern "C"

GIMP_MAIN(QWEN_TYPE_PLUG_IN)
