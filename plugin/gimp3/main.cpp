// GIMP 3 front-end (3.0 and 3.2: libgimp's API and ABI stay "3.0" across 3.x): a GimpPlugIn
// subclass registering the procedures of the one table (plugin/common/procedures.h; same names and
// arguments after run-mode/image/drawables as the 2.10 plug-in, the newer arguments appended with
// defaults), typed GimpProcedure arguments, remembered values in GimpProcedureConfig and the GTK3
// procedure dialog built from the same arguments. The work (pixels, daemon, result layers) is
// the shared plugin/common/ code.
//
// LoRAs (issue #14): the dialog adds up to three rows "LoRA [the daemon's LoRAs | None]
// [Strength -2..2]" above the `loras` argument's text field, which then holds what the rows cannot
// show ("Other LoRAs"). They are widgets of the dialog, not arguments: the `loras` string stays the
// one value the procedure takes, remembers and records; the rows split it when the dialog opens
// and compose it back on OK (plugin/common/lora_rows.h). (Aux arguments with a GimpChoice would
// need the daemon's LoRA list when the procedure is created, and a remembered choice the daemon
// no longer lists would be reset.)
#include <libgimp/gimpui.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "lora_rows.h"
#include "plugin3.h"
#include "procedures.h"

using namespace qwen::plugin;

namespace {

constexpr const char* kMenu = "<Image>/Filters/Generative/Qwen-Image";
constexpr const char* kAuthor = "qwen-image-gimp contributors";

// GIMP 3 declares a Layers argument ("reference-layers") as one drawable argument per slot,
// "reference-layer-1" .. "reference-layer-9", each "none" by default: GIMP fills in a NULL
// drawable for a call that leaves them out, whereas an omitted GimpCoreObjectArray argument is
// refused by the PDB ("out of range", GIMP 3.0.4 and 3.2.6), which would break the old positional
// calls. The dialog shows the slots as drawable choosers.
std::string reference_slot(const ArgDecl&, int i) {
  return "reference-layer-" + std::to_string(i + 1);
}

std::vector<int> drawable_ids(const ArgDecl& a, GimpProcedureConfig* config) {
  std::vector<int> ids;
  for (int i = 0; i < int(a.max); ++i) {
    GimpDrawable* d = nullptr;
    g_object_get(config, reference_slot(a, i).c_str(), &d, nullptr);
    if (d) {
      ids.push_back(gimp_item_get_id(GIMP_ITEM(d)));
      g_object_unref(d);
    }
  }
  return ids;
}

// Settings from the procedure's config (arguments in non-interactive runs, the dialog's values
// otherwise), argument by argument as declared.
Settings settings_of(const ProcDecl& d, GimpProcedureConfig* config) {
  Settings s;
  apply_defaults(d, s);
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
      case ArgType::Layers:
        set_layers(s, a.field, drawable_ids(a, config));
        break;
    }
  }
  return s;
}

// What the dialog offers for the chosen model (procedures.h: only what the model can do).
struct DialogState {
  const ProcDecl* decl;
  GimpProcedureDialog* dialog;
  GimpProcedureConfig* config;
  std::vector<std::string> names;  // model combo entries after "daemon's default"
  std::vector<qwen::ipc::ModelCaps> caps;
  qwen::ipc::ModelCaps default_caps;
  const DaemonInfo* info = nullptr;
  // The LoRA rows (none when the daemon lists no LoRAs): list index 0 = None, k = loras[k - 1].
  std::vector<GtkWidget*> lora_rows, lora_lists;
  std::vector<GtkAdjustment*> lora_strengths;
  bool loras_on = true;  // the chosen model takes LoRAs
};

// Row 1, and each further row once the one above (or itself) has a LoRA.
void update_lora_rows(DialogState* st) {
  bool next = st->loras_on;
  for (size_t i = 0; i < st->lora_lists.size(); ++i) {
    const bool chosen = gtk_combo_box_get_active(GTK_COMBO_BOX(st->lora_lists[i])) > 0;
    gtk_widget_set_visible(st->lora_rows[i], next || (st->loras_on && chosen));
    next = st->loras_on && chosen;
  }
}

void on_lora_chosen(GtkComboBox* combo, gpointer data) {
  if (auto* scale = static_cast<GtkWidget*>(g_object_get_data(G_OBJECT(combo), "qwen-strength")))
    gtk_widget_set_sensitive(scale, gtk_combo_box_get_active(combo) > 0);
  update_lora_rows(static_cast<DialogState*>(data));
}

// The rows (after "None" each list holds the daemon's LoRAs) from `pick`; packed into `box` at
// `position`, their labels as wide as `align` (the dialog's label column).
void add_lora_rows(DialogState* st, const LoraPick& pick, GtkBox* box, int position,
                   GtkWidget* align) {
  const auto& loras = st->info->loras;
  GtkSizeGroup* labels = gtk_size_group_new(GTK_SIZE_GROUP_HORIZONTAL);
  if (align) gtk_size_group_add_widget(labels, align);
  for (int i = 0; i < kLoraRows; ++i) {
    GtkWidget* row = gtk_box_new(GTK_ORIENTATION_HORIZONTAL, 6);
    const std::string text = i == 0 ? std::string("_LoRA") : "LoRA " + std::to_string(i + 1);
    GtkWidget* label = gtk_label_new_with_mnemonic(text.c_str());
    gtk_label_set_xalign(GTK_LABEL(label), 0.0);
    gtk_size_group_add_widget(labels, label);
    GtkWidget* combo = gtk_combo_box_text_new();
    gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(combo), kLoraNone);
    int active = 0;
    for (size_t k = 0; k < loras.size(); ++k) {
      gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(combo),
                                     lora_choice_label(loras[k]).c_str());
      if (i < int(pick.rows.size()) && pick.rows[i].name == loras[k].name) active = int(k) + 1;
    }
    gtk_combo_box_set_active(GTK_COMBO_BOX(combo), active);
    gtk_label_set_mnemonic_widget(GTK_LABEL(label), combo);
    GtkAdjustment* adj = gtk_adjustment_new(i < int(pick.rows.size()) ? pick.rows[i].strength : 1.0,
                                            kLoraRowMin, kLoraRowMax, 0.01, 0.1, 0.0);
    GtkWidget* scale = gimp_spin_scale_new(adj, "Strength", 2);
    gtk_widget_set_size_request(scale, 170, -1);
    gtk_widget_set_tooltip_text(scale, "Strength of the LoRA (negative: the opposite effect)");
    gtk_widget_set_sensitive(scale, active > 0);
    g_object_set_data(G_OBJECT(combo), "qwen-strength", scale);
    gtk_box_pack_start(GTK_BOX(row), label, FALSE, FALSE, 0);
    gtk_box_pack_start(GTK_BOX(row), combo, TRUE, TRUE, 0);
    gtk_box_pack_start(GTK_BOX(row), scale, FALSE, FALSE, 0);
    gtk_widget_show_all(row);
    gtk_box_pack_start(box, row, FALSE, FALSE, 0);
    gtk_box_reorder_child(box, row, position + i);
    g_signal_connect(combo, "changed", G_CALLBACK(on_lora_chosen), st);
    st->lora_rows.push_back(row);
    st->lora_lists.push_back(combo);
    st->lora_strengths.push_back(adj);
  }
  g_object_unref(labels);  // the widgets keep it
}

// The loras string of the rows and the text field (the `loras` argument's value).
std::string composed_loras(const DialogState& st, const char* property) {
  LoraPick pick;
  for (size_t i = 0; i < st.lora_lists.size(); ++i) {
    const int k = gtk_combo_box_get_active(GTK_COMBO_BOX(st.lora_lists[i]));
    if (k > 0 && size_t(k) <= st.info->loras.size())
      pick.rows.push_back(
          {st.info->loras[k - 1].name, gtk_adjustment_get_value(st.lora_strengths[i])});
  }
  gchar* other = nullptr;
  g_object_get(st.config, property, &other, nullptr);
  pick.other = other ? other : "";
  g_free(other);
  return compose_loras(pick);
}

// Test hook (as the 2.10 dialog's): QWEN_IMAGE_GIMP_DIALOG_PICK="name:0.8,other:-0.3" chooses
// these LoRAs in the first free rows, through the rows' lists, as a user would. False (saying why
// on stderr) when a name is not in the lists.
bool pick_loras(DialogState& st, const char* spec) {
  std::vector<qwen::ipc::JobLora> want;
  if (auto bad = parse_loras(spec, &want); !bad.empty()) {
    g_printerr("qwen-image dialog test: QWEN_IMAGE_GIMP_DIALOG_PICK: %s\n", bad.c_str());
    return false;
  }
  size_t row = 0;
  for (const auto& w : want) {
    while (row < st.lora_lists.size() &&
           gtk_combo_box_get_active(GTK_COMBO_BOX(st.lora_lists[row])) > 0)
      ++row;
    int k = 0;
    for (size_t i = 0; i < st.info->loras.size(); ++i)
      if (st.info->loras[i].name == w.name) k = int(i) + 1;
    if (row == st.lora_lists.size() || k == 0) {
      g_printerr("qwen-image dialog test: no LoRA '%s' in the list of a free LoRA row\n",
                 w.name.c_str());
      return false;
    }
    gtk_combo_box_set_active(GTK_COMBO_BOX(st.lora_lists[row]), k);
    gtk_adjustment_set_value(st.lora_strengths[row], w.strength);
  }
  return true;
}

void show_property(GimpProcedureDialog* dialog, const std::string& property, bool on) {
  if (GtkWidget* w = gimp_procedure_dialog_get_widget(dialog, property.c_str(), G_TYPE_NONE))
    gtk_widget_set_visible(w, on);
}

void on_model_changed(GtkComboBox* combo, gpointer data) {
  auto* st = static_cast<DialogState*>(data);
  const int m = gtk_combo_box_get_active(combo);
  g_object_set(st->config, "model", m > 0 ? st->names[m - 1].c_str() : "", nullptr);
  const auto caps = m > 0 ? st->caps[m - 1] : st->default_caps;
  for (const auto& a : st->decl->args) {
    if (a.field == Field::Loras) {
      st->loras_on = !caps.known || caps.loras;
      show_property(st->dialog, a.name, st->loras_on);
      update_lora_rows(st);
    }
    if (a.field == Field::Lightning)
      show_property(st->dialog, a.name, offer_lightning(caps, *st->info));
    if (a.type == ArgType::Layers)
      for (int i = 0; i < int(a.max); ++i)
        show_property(st->dialog, reference_slot(a, i), i < reference_slots(st->decl->proc, caps));
  }
}

// Test hook (as the 2.10 dialog's): QWEN_IMAGE_GIMP_DIALOG_SNAPSHOT=<folder> saves the rendered
// dialog as <folder>/gimp3-<procedure>.png and cancels it, or with QWEN_IMAGE_GIMP_DIALOG_ACCEPT=1
// presses OK; QWEN_IMAGE_GIMP_DIALOG_PICK first chooses LoRAs in the LoRA rows (pick_loras).
// The pick, a while before the snapshot so that the dialog has rendered it.
gboolean pick_hook(gpointer dialog) {
  auto* st = static_cast<DialogState*>(g_object_get_data(G_OBJECT(dialog), "qwen-state"));
  if (const char* pick = std::getenv("QWEN_IMAGE_GIMP_DIALOG_PICK");
      pick && st && !st->lora_lists.empty() && !pick_loras(*st, pick))
    g_object_set_data(G_OBJECT(dialog), "qwen-pick-failed", dialog);
  return FALSE;
}

gboolean snapshot_and_close(gpointer dialog) {
  const bool ok = std::getenv("QWEN_IMAGE_GIMP_DIALOG_ACCEPT") &&
                  !g_object_get_data(G_OBJECT(dialog), "qwen-pick-failed");
  const char* dir = std::getenv("QWEN_IMAGE_GIMP_DIALOG_SNAPSHOT");
  const char* proc = static_cast<const char*>(g_object_get_data(G_OBJECT(dialog), "qwen-proc"));
  GdkWindow* window = gtk_widget_get_window(GTK_WIDGET(dialog));
  if (dir && proc && window) {
    const std::string path = std::string(dir) + "/gimp3-" + proc + ".png";
    if (GdkPixbuf* pb = gdk_pixbuf_get_from_window(window, 0, 0, gdk_window_get_width(window),
                                                   gdk_window_get_height(window))) {
      gdk_pixbuf_save(pb, path.c_str(), "png", nullptr, nullptr);
      g_object_unref(pb);
    }
  }
  gtk_dialog_response(GTK_DIALOG(dialog), ok ? GTK_RESPONSE_OK : GTK_RESPONSE_CANCEL);
  return FALSE;
}

bool run_dialog(GimpProcedure* procedure, const ProcDecl& decl, GimpProcedureConfig* config,
                const PluginConfig& plugin_config) {
  gimp_ui_init(kBinary3);
  const DaemonInfo info = probe_daemon(plugin_config);
  GtkWidget* dialog = gimp_procedure_dialog_new(procedure, config, decl.title);
  DialogState st{&decl, GIMP_PROCEDURE_DIALOG(dialog), config, {}, {}, {}, &info, {}, {}, {}, true};

  // The model chooser: a list of the daemon's models that suit the procedure (their typed
  // capabilities), "the daemon's default" first; it sets the "model" argument.
  gchar* current = nullptr;
  g_object_get(config, "model", &current, nullptr);
  const std::string model = current ? current : "";
  g_free(current);
  for (size_t i = 0; i < info.models.size(); ++i) {
    const auto caps = i < info.caps.size() ? info.caps[i] : qwen::ipc::ModelCaps{};
    if (!model_suits(decl.proc, info.models[i], "", caps)) continue;
    st.names.push_back(info.models[i]);
    st.caps.push_back(caps);
  }
  std::string def = "The daemon's default";
  if (!info.models.empty()) {
    def += " (" + info.models.front() + ")";
    st.default_caps = info.caps.empty() ? qwen::ipc::ModelCaps{} : info.caps.front();
  }
  if ((decl.proc == Proc::EditLayer || decl.proc == Proc::Decompose) && !st.names.empty() &&
      (info.models.empty() || st.names.front() != info.models.front())) {
    def = (decl.proc == Proc::Decompose ? "The daemon's Layered model ("
                                        : "The daemon's edit model (") +
          st.names.front() + ")";
    st.default_caps = st.caps.front();
  }
  if (!model.empty() && std::find(st.names.begin(), st.names.end(), model) == st.names.end()) {
    st.names.push_back(model);  // remembered or given by a script, not served now
    st.caps.push_back({});
  }
  GtkWidget* combo = gtk_combo_box_text_new();
  gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(combo), def.c_str());
  int active = 0;
  for (size_t i = 0; i < st.names.size(); ++i) {
    gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(combo), st.names[i].c_str());
    if (st.names[i] == model) active = int(i) + 1;
  }
  gtk_combo_box_set_active(GTK_COMBO_BOX(combo), active);
  GtkWidget* row = gtk_box_new(GTK_ORIENTATION_HORIZONTAL, 6);
  GtkWidget* mlabel = gtk_label_new_with_mnemonic("_Model");
  gtk_label_set_mnemonic_widget(GTK_LABEL(mlabel), combo);
  gtk_box_pack_start(GTK_BOX(row), mlabel, FALSE, FALSE, 0);
  gtk_box_pack_start(GTK_BOX(row), combo, TRUE, TRUE, 0);
  gtk_widget_show_all(row);

  // Every declared argument but the model (the list above) and the reference layers (a drawable
  // chooser per slot the model has: reference-layer-1 .. -9).
  GList* props = nullptr;
  for (const auto& a : decl.args) {
    if (a.field == Field::Model) continue;
    if (a.type == ArgType::Layers) {
      for (int i = 0; i < int(a.max); ++i)
        props = g_list_append(props, g_strdup(reference_slot(a, i).c_str()));
      continue;
    }
    props = g_list_append(props, g_strdup(a.name));
  }
  gimp_procedure_dialog_fill_list(GIMP_PROCEDURE_DIALOG(dialog), props);
  g_list_free_full(props, g_free);

  // The model row goes right after the negative prompt, in the box the arguments are in.
  GtkWidget* content = gtk_dialog_get_content_area(GTK_DIALOG(dialog));
  GtkWidget* neg = gimp_procedure_dialog_get_widget(GIMP_PROCEDURE_DIALOG(dialog),
                                                    "negative-prompt", G_TYPE_NONE);
  GtkWidget* box = neg ? gtk_widget_get_parent(neg) : nullptr;
  if (box && GTK_IS_BOX(box)) {
    gtk_box_pack_start(GTK_BOX(box), row, FALSE, FALSE, 0);
    GValue pos = G_VALUE_INIT;
    g_value_init(&pos, G_TYPE_INT);
    gtk_container_child_get_property(GTK_CONTAINER(box), neg, "position", &pos);
    gtk_box_reorder_child(GTK_BOX(box), row, g_value_get_int(&pos) + 1);
    g_value_unset(&pos);
  } else {
    gtk_box_pack_start(GTK_BOX(content), row, FALSE, FALSE, 6);
  }

  // The LoRA rows go right before the `loras` text field, which keeps what they cannot show.
  const ArgDecl* loras_arg = nullptr;
  for (const auto& a : decl.args)
    if (a.field == Field::Loras) loras_arg = &a;
  gchar* loras_given = nullptr;
  if (loras_arg) g_object_get(config, loras_arg->name, &loras_given, nullptr);
  const std::string loras_text = loras_given ? loras_given : "";
  g_free(loras_given);
  GtkWidget* loras_widget = loras_arg
                                ? gimp_procedure_dialog_get_widget(GIMP_PROCEDURE_DIALOG(dialog),
                                                                   loras_arg->name, G_TYPE_NONE)
                                : nullptr;
  GtkWidget* loras_box = loras_widget ? gtk_widget_get_parent(loras_widget) : nullptr;
  if (!info.loras.empty() && loras_box && GTK_IS_BOX(loras_box)) {
    LoraPick pick;
    split_loras(loras_text, lora_names(info.loras), &pick);
    g_object_set(config, loras_arg->name, pick.other.c_str(), nullptr);
    GValue pos = G_VALUE_INIT;
    g_value_init(&pos, G_TYPE_INT);
    gtk_container_child_get_property(GTK_CONTAINER(loras_box), loras_widget, "position", &pos);
    GtkWidget* other_label = GIMP_IS_LABELED(loras_widget)
                                 ? gimp_labeled_get_label(GIMP_LABELED(loras_widget))
                                 : nullptr;
    add_lora_rows(&st, pick, GTK_BOX(loras_box), g_value_get_int(&pos), other_label);
    g_value_unset(&pos);
    if (other_label) gtk_label_set_text_with_mnemonic(GTK_LABEL(other_label), "Other LoRAs");
    gtk_widget_set_tooltip_text(loras_widget,
                                "More LoRAs as name:strength, comma-separated, e.g. "
                                "\"my-style:0.8,detail:-0.3\" (names from the daemon's lora_dir "
                                "or absolute paths; strengths -10..10)");
  }
  std::string status = info.running
                           ? "Daemon: running on " + info.device
                           : "Daemon: not running (it is started when you press OK, if configured)";
  GtkWidget* label = gtk_label_new(status.c_str());
  gtk_label_set_line_wrap(GTK_LABEL(label), TRUE);
  gtk_widget_show(label);
  gtk_box_pack_end(GTK_BOX(content), label, FALSE, FALSE, 6);

  g_signal_connect(combo, "changed", G_CALLBACK(on_model_changed), &st);
  on_model_changed(GTK_COMBO_BOX(combo), &st);

  g_object_set_data(G_OBJECT(dialog), "qwen-proc", const_cast<char*>(decl.name));
  g_object_set_data(G_OBJECT(dialog), "qwen-state", &st);
  if (std::getenv("QWEN_IMAGE_GIMP_DIALOG_SNAPSHOT")) {
    g_timeout_add(1250, pick_hook, dialog);
    g_timeout_add(2500, snapshot_and_close, dialog);
  }
  const bool ok = gimp_procedure_dialog_run(GIMP_PROCEDURE_DIALOG(dialog));
  if (loras_arg && !st.lora_lists.empty())  // the one string again (as it was when cancelled)
    g_object_set(config, loras_arg->name,
                 ok ? composed_loras(st, loras_arg->name).c_str() : loras_text.c_str(), nullptr);
  if (ok) {
    const int m = gtk_combo_box_get_active(GTK_COMBO_BOX(combo));
    const auto caps = m > 0 ? st.caps[m - 1] : st.default_caps;
    for (const auto& a : decl.args) {
      // What the chosen model cannot do is not sent.
      if (a.field == Field::Loras && caps.known && !caps.loras)
        g_object_set(config, a.name, "", nullptr);
      if (a.field == Field::Lightning && !offer_lightning(caps, info))
        g_object_set(config, a.name, FALSE, nullptr);
      if (a.type != ArgType::Layers) continue;
      // Slots the chosen model does not take (hidden) are not sent.
      for (int i = reference_slots(decl.proc, caps); i < int(a.max); ++i)
        g_object_set(config, reference_slot(a, i).c_str(), nullptr, nullptr);
    }
  }
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
  const ProcDecl* decl = decl_named(gimp_procedure_get_name(procedure));
  if (!decl) return fail(procedure, GIMP_PDB_CALLING_ERROR, "unknown procedure");
  const Proc proc = decl->proc;
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
  if (run_mode == GIMP_RUN_INTERACTIVE && !run_dialog(procedure, *decl, config, plugin_config))
    return fail(procedure, GIMP_PDB_CANCEL, "");

  const Settings s = settings_of(*decl, config);
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

// A procedure of the table (procedures.h): the historic arguments in their order, then the
// appended ones with their defaults (GIMP fills in what a call leaves out), then the dialog-only
// aux arguments.
GimpProcedure* make_procedure(GimpPlugIn* plug_in, const ProcDecl& d) {
  GimpProcedure* p =
      gimp_image_procedure_new(plug_in, d.name, GIMP_PDB_PROC_TYPE_PLUGIN, run, nullptr, nullptr);
  gimp_procedure_set_image_types(p, "RGB*, GRAY*");
  gimp_procedure_set_sensitivity_mask(p, GIMP_PROCEDURE_SENSITIVE_DRAWABLE);
  gimp_procedure_set_menu_label(p, d.menu_label);
  gimp_procedure_set_documentation(p, d.blurb, d.help, d.name);
  gimp_procedure_add_menu_path(p, kMenu);
  gimp_procedure_set_attribution(p, kAuthor, kAuthor, "2026");
  auto add = [p](const ArgDecl& a, bool aux) {
    const auto flags = G_PARAM_READWRITE;
    switch (a.type) {
      case ArgType::String:
        (aux ? gimp_procedure_add_string_aux_argument : gimp_procedure_add_string_argument)(
            p, a.name, a.label, a.blurb, "", flags);
        break;
      case ArgType::Int:
        (aux ? gimp_procedure_add_int_aux_argument : gimp_procedure_add_int_argument)(
            p, a.name, a.label, a.blurb, int(a.min), int(a.max), int(a.def), flags);
        break;
      case ArgType::Double:
        (aux ? gimp_procedure_add_double_aux_argument : gimp_procedure_add_double_argument)(
            p, a.name, a.label, a.blurb, a.min, a.max, a.def, flags);
        break;
      case ArgType::Bool:
        (aux ? gimp_procedure_add_boolean_aux_argument : gimp_procedure_add_boolean_argument)(
            p, a.name, a.label, a.blurb, a.def != 0, flags);
        break;
      case ArgType::Layers:
        // One drawable per reference the largest model takes ("none" by default).
        for (int i = 0; i < int(a.max); ++i) {
          const std::string name = reference_slot(a, i);
          const std::string label = "Reference layer _" + std::to_string(i + 1);
          const std::string blurb = "Reference layer " + std::to_string(i + 1) +
                                    " (any open image; none by default): " + a.blurb;
          (aux ? gimp_procedure_add_drawable_aux_argument : gimp_procedure_add_drawable_argument)(
              p, name.c_str(), label.c_str(), blurb.c_str(), TRUE, flags);
        }
        break;
    }
  };
  for (const ArgDecl* a : gimp3_args(d)) add(*a, false);
  for (const auto& a : d.args)
    if (a.since == Since::DialogOnly) add(a, true);
  gimp_procedure_add_layer_return_value(p, d.return_name, d.return_name, d.return_blurb, TRUE,
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
  for (const auto& d : procedure_table()) list = g_list_append(list, g_strdup(d.name));
  return list;
}

static GimpProcedure* qwen_create_procedure(GimpPlugIn* plug_in, const gchar* name) {
  const ProcDecl* d = decl_named(name);
  return d ? make_procedure(plug_in, *d) : nullptr;
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
