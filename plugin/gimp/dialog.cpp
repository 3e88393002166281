// The interactive dialog (gimpui / GTK 2).
// clang-format off
#include "plugin.h"  // libgimp/gimp.h must come before gimpui.h
#include <libgimp/gimpui.h>
// clang-format on

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "procedures.h"

namespace qwen::plugin {

namespace {

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

GtkWidget* spin(GtkTable* table, int row, const char* label, double lo, double hi, double step,
                int digits, double value) {
  GtkWidget* l = gtk_label_new_with_mnemonic(label);
  gtk_misc_set_alignment(GTK_MISC(l), 0.0, 0.5);
  gtk_table_attach(table, l, 0, 1, row, row + 1, GTK_FILL, GTK_FILL, 0, 0);
  GtkWidget* s = gtk_spin_button_new_with_range(lo, hi, step);
  gtk_spin_button_set_digits(GTK_SPIN_BUTTON(s), digits);
  gtk_spin_button_set_value(GTK_SPIN_BUTTON(s), value);
  gtk_label_set_mnemonic_widget(GTK_LABEL(l), s);
  gtk_table_attach(table, s, 1, 2, row, row + 1, GtkAttachOptions(GTK_EXPAND | GTK_FILL), GTK_FILL,
                   0, 0);
  return s;
}

void on_random_toggled(GtkToggleButton* button, gpointer seed_spin) {
  gtk_widget_set_sensitive(GTK_WIDGET(seed_spin), !gtk_toggle_button_get_active(button));
}

// Test hook: QWEN_IMAGE_GIMP_DIALOG_SNAPSHOT=<folder> saves the rendered dialog as
// <folder>/<procedure>.png and cancels it.
gboolean snapshot_and_close(gpointer dialog) {
  const char* dir = std::getenv("QWEN_IMAGE_GIMP_DIALOG_SNAPSHOT");
  const char* proc = static_cast<const char*>(g_object_get_data(G_OBJECT(dialog), "qwen-proc"));
  GdkWindow* window = gtk_widget_get_window(GTK_WIDGET(dialog));
  if (dir && proc && window) {
    std::string path = std::string(dir) + "/" + proc + ".png";
    gint w = 0, h = 0;
    gdk_drawable_get_size(window, &w, &h);
    GdkPixbuf* pb = gdk_pixbuf_get_from_drawable(nullptr, window, nullptr, 0, 0, 0, 0, w, h);
    if (pb) {
      gdk_pixbuf_save(pb, path.c_str(), "png", nullptr, nullptr);
      g_object_unref(pb);
    }
  }
  gtk_dialog_response(GTK_DIALOG(dialog), GTK_RESPONSE_CANCEL);
  return FALSE;
}

}  // namespace

bool run_dialog(Proc proc, Settings& s, const DaemonInfo& daemon, const PluginConfig& config) {
  gimp_ui_init(kBinary, FALSE);
  GtkWidget* dialog =
      gimp_dialog_new(title_of(proc), kBinary, nullptr, GtkDialogFlags(0), gimp_standard_help_func,
                      nullptr, "_Cancel", GTK_RESPONSE_CANCEL, "_OK", GTK_RESPONSE_OK, nullptr);
  gtk_dialog_set_alternative_button_order(GTK_DIALOG(dialog), GTK_RESPONSE_OK, GTK_RESPONSE_CANCEL,
                                          -1);
  gimp_window_set_transient(GTK_WINDOW(dialog));
  gtk_window_set_default_size(GTK_WINDOW(dialog), 460, -1);

  GtkWidget* vbox = gtk_vbox_new(FALSE, 6);
  gtk_container_set_border_width(GTK_CONTAINER(vbox), 12);
  gtk_box_pack_start(GTK_BOX(gtk_dialog_get_content_area(GTK_DIALOG(dialog))), vbox, TRUE, TRUE, 0);

  GtkWidget* plabel = gtk_label_new_with_mnemonic(
      proc == Proc::EditLayer   ? "_Instruction:"
      : proc == Proc::Decompose ? "_Prompt (describes the whole picture, not single layers):"
                                : "_Prompt:");
  gtk_misc_set_alignment(GTK_MISC(plabel), 0.0, 0.5);
  gtk_box_pack_start(GTK_BOX(vbox), plabel, FALSE, FALSE, 0);
  GtkWidget* scroll = gtk_scrolled_window_new(nullptr, nullptr);
  gtk_scrolled_window_set_policy(GTK_SCROLLED_WINDOW(scroll), GTK_POLICY_AUTOMATIC,
                                 GTK_POLICY_AUTOMATIC);
  gtk_scrolled_window_set_shadow_type(GTK_SCROLLED_WINDOW(scroll), GTK_SHADOW_IN);
  gtk_widget_set_size_request(scroll, -1, 90);
  GtkWidget* prompt = gtk_text_view_new();
  gtk_text_view_set_wrap_mode(GTK_TEXT_VIEW(prompt), GTK_WRAP_WORD_CHAR);
  gtk_text_buffer_set_text(gtk_text_view_get_buffer(GTK_TEXT_VIEW(prompt)), s.prompt, -1);
  gtk_container_add(GTK_CONTAINER(scroll), prompt);
  gtk_label_set_mnemonic_widget(GTK_LABEL(plabel), prompt);
  gtk_box_pack_start(GTK_BOX(vbox), scroll, TRUE, TRUE, 0);

  GtkWidget* table = gtk_table_new(8, 3, FALSE);
  gtk_table_set_row_spacings(GTK_TABLE(table), 4);
  gtk_table_set_col_spacings(GTK_TABLE(table), 8);
  gtk_box_pack_start(GTK_BOX(vbox), table, FALSE, FALSE, 0);
  GtkTable* t = GTK_TABLE(table);
  int row = 0;

  GtkWidget* nlabel = gtk_label_new_with_mnemonic("_Negative prompt:");
  gtk_misc_set_alignment(GTK_MISC(nlabel), 0.0, 0.5);
  gtk_table_attach(t, nlabel, 0, 1, row, row + 1, GTK_FILL, GTK_FILL, 0, 0);
  GtkWidget* negative = gtk_entry_new();
  gtk_entry_set_text(GTK_ENTRY(negative), s.negative);
  gtk_label_set_mnemonic_widget(GTK_LABEL(nlabel), negative);
  gtk_table_attach(t, negative, 1, 3, row, row + 1, GtkAttachOptions(GTK_EXPAND | GTK_FILL),
                   GTK_FILL, 0, 0);
  ++row;

  GtkWidget* mlabel = gtk_label_new_with_mnemonic("_Model:");
  gtk_misc_set_alignment(GTK_MISC(mlabel), 0.0, 0.5);
  gtk_table_attach(t, mlabel, 0, 1, row, row + 1, GTK_FILL, GTK_FILL, 0, 0);
  GtkWidget* model = gtk_combo_box_text_new();
  std::string def = daemon.models.empty() ? "daemon's default"
                                          : "daemon's default (" + daemon.models.front() + ")";
  if (proc == Proc::Decompose)
    for (size_t i = 0; i < daemon.models.size() && i < daemon.caps.size(); ++i)
      if (daemon.caps[i].can_decompose) {
        def = "daemon's Layered model (" + daemon.models[i] + ")";
        break;
      }
  if (proc == Proc::EditLayer && !daemon.models.empty() && !is_edit_model(daemon.models.front()))
    for (auto& m : daemon.models)
      if (is_edit_model(m)) {
        def = "daemon's edit model (" + m + ")";
        break;
      }
  gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(model), def.c_str());
  int active = 0;
  std::vector<std::string> names = daemon.models;
  if (*s.model && std::find(names.begin(), names.end(), s.model) == names.end())
    names.push_back(s.model);
  for (size_t i = 0; i < names.size(); ++i) {
    gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(model), names[i].c_str());
    if (names[i] == s.model) active = int(i) + 1;
  }
  gtk_combo_box_set_active(GTK_COMBO_BOX(model), active);
  gtk_label_set_mnemonic_widget(GTK_LABEL(mlabel), model);
  gtk_table_attach(t, model, 1, 3, row, row + 1, GtkAttachOptions(GTK_EXPAND | GTK_FILL), GTK_FILL,
                   0, 0);
  ++row;

  GtkWidget* steps = spin(t, row++, "_Steps:", 1, 200, 1, 0, s.steps);
  GtkWidget* cfg = spin(t, row++, "True _CFG scale:", 1.0, 20.0, 0.5, 1, s.true_cfg_scale);
  GtkWidget* strength = nullptr;
  if (proc == Proc::EditSelection)
    strength = spin(t, row++, "S_trength:", 0.05, 1.0, 0.05, 2, s.strength);
  GtkWidget* seed = spin(t, row, "S_eed:", 0, G_MAXINT32, 1, 0, s.seed >= 0 ? s.seed : 0);
  GtkWidget* random = gtk_check_button_new_with_mnemonic("_Random");
  gtk_toggle_button_set_active(GTK_TOGGLE_BUTTON(random), s.random_seed);
  gtk_widget_set_sensitive(seed, !s.random_seed);
  g_signal_connect(random, "toggled", G_CALLBACK(on_random_toggled), seed);
  gtk_table_attach(t, random, 2, 3, row, row + 1, GTK_FILL, GTK_FILL, 0, 0);
  ++row;
  GtkWidget* variants = nullptr;
  GtkWidget *layers = nullptr, *resolution = nullptr, *normalize = nullptr;
  if (proc == Proc::Decompose) {
    // Ranges from the one declaration (procedures.h), labels GTK 2 style.
    layers =
        spin(t, row++, "_Layers:", qwen::ipc::kMinLayers, qwen::ipc::kMaxLayers, 1, 0, s.layers);
    GtkWidget* rlabel = gtk_label_new_with_mnemonic("_Resolution:");
    gtk_misc_set_alignment(GTK_MISC(rlabel), 0.0, 0.5);
    gtk_table_attach(t, rlabel, 0, 1, row, row + 1, GTK_FILL, GTK_FILL, 0, 0);
    resolution = gtk_combo_box_text_new();
    gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(resolution), "640 (recommended)");
    gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(resolution), "1024");
    gtk_combo_box_set_active(GTK_COMBO_BOX(resolution), s.resolution == 1024 ? 1 : 0);
    gtk_label_set_mnemonic_widget(GTK_LABEL(rlabel), resolution);
    gtk_table_attach(t, resolution, 1, 3, row, row + 1, GtkAttachOptions(GTK_EXPAND | GTK_FILL),
                     GTK_FILL, 0, 0);
    ++row;
    normalize = gtk_check_button_new_with_mnemonic("CFG _normalize");
    gtk_toggle_button_set_active(GTK_TOGGLE_BUTTON(normalize), s.cfg_normalize);
    gtk_table_attach(t, normalize, 1, 3, row, row + 1, GTK_FILL, GTK_FILL, 0, 0);
    ++row;
  } else {
    variants = spin(t, row++, "_Variants (one layer each):", 1, 8, 1, 0, s.variants);
  }

  std::string status =
      daemon.running
          ? "Daemon running on " + (daemon.device.empty() ? std::string("?") : daemon.device) + "."
          : "No daemon is running; it will be started from '" + config.daemon + "' (" +
                (config.path.empty() ? "no plug-in config found" : config.path) + ").";
  GtkWidget* slabel = gtk_label_new(status.c_str());
  gtk_label_set_line_wrap(GTK_LABEL(slabel), TRUE);
  gtk_misc_set_alignment(GTK_MISC(slabel), 0.0, 0.5);
  gtk_box_pack_start(GTK_BOX(vbox), slabel, FALSE, FALSE, 0);

  gtk_widget_show_all(dialog);
  g_object_set_data(G_OBJECT(dialog), "qwen-proc",
                    const_cast<char*>(proc == Proc::Generate        ? kProcGenerate
                                      : proc == Proc::EditSelection ? kProcEditSelection
                                      : proc == Proc::Decompose     ? kProcDecompose
                                                                    : kProcEditLayer));
  if (std::getenv("QWEN_IMAGE_GIMP_DIALOG_SNAPSHOT"))
    g_timeout_add(1500, snapshot_and_close, dialog);
  bool ok = gimp_dialog_run(GIMP_DIALOG(dialog)) == GTK_RESPONSE_OK;
  if (ok) {
    GtkTextBuffer* buf = gtk_text_view_get_buffer(GTK_TEXT_VIEW(prompt));
    GtkTextIter a, b;
    gtk_text_buffer_get_bounds(buf, &a, &b);
    gchar* text = gtk_text_buffer_get_text(buf, &a, &b, FALSE);
    g_strlcpy(s.prompt, text, sizeof s.prompt);
    g_free(text);
    g_strlcpy(s.negative, gtk_entry_get_text(GTK_ENTRY(negative)), sizeof s.negative);
    int m = gtk_combo_box_get_active(GTK_COMBO_BOX(model));
    g_strlcpy(s.model, m > 0 ? names[m - 1].c_str() : "", sizeof s.model);
    s.steps = gtk_spin_button_get_value_as_int(GTK_SPIN_BUTTON(steps));
    s.true_cfg_scale = gtk_spin_button_get_value(GTK_SPIN_BUTTON(cfg));
    if (strength) s.strength = gtk_spin_button_get_value(GTK_SPIN_BUTTON(strength));
    s.random_seed = gtk_toggle_button_get_active(GTK_TOGGLE_BUTTON(random));
    s.seed = s.random_seed ? -1 : gtk_spin_button_get_value_as_int(GTK_SPIN_BUTTON(seed));
    if (variants) s.variants = gtk_spin_button_get_value_as_int(GTK_SPIN_BUTTON(variants));
    if (layers) s.layers = gtk_spin_button_get_value_as_int(GTK_SPIN_BUTTON(layers));
    if (resolution)
      s.resolution = gtk_combo_box_get_active(GTK_COMBO_BOX(resolution)) == 1 ? 1024 : 640;
    if (normalize) s.cfg_normalize = gtk_toggle_button_get_active(GTK_TOGGLE_BUTTON(normalize));
  }
  gtk_widget_destroy(dialog);
  return ok;
}

}  // namespace qwen::plugin
