// The interactive dialog (gimpui / GTK 2), built from the procedure's declaration in the one
// procedure table (procedures.h), as GIMP's plug-ins/common/blinds.c builds its dialog from its
// declared arguments: one row per argument, in the declared order, a widget per argument type.
// Only what the chosen model can do is offered: the model list holds the models whose
// capabilities suit the procedure, the LoRA and Lightning rows show only for models that take
// LoRAs, and as many reference-layer rows as the model takes references besides the edited layer.
// LoRAs (issue #14): up to three rows "LoRA [the daemon's LoRAs | None] [strength -2..2]" above a
// text field holding what the rows cannot show; the rows split the `loras` string when the dialog
// opens and compose it back on OK (plugin/common/lora_rows.h).
// clang-format off
#include "plugin.h"  // libgimp/gimp.h must come before gimpui.h
#include <libgimp/gimpui.h>
// clang-format on

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "lora_rows.h"
#include "procedures.h"

namespace qwen::plugin {

namespace {

// A shown argument: its label, its widget (and a second one: the seed's Random toggle).
struct Row {
  const ArgDecl* arg = nullptr;
  GtkWidget* label = nullptr;
  GtkWidget* widget = nullptr;
  GtkWidget* extra = nullptr;
  std::vector<GtkWidget*> layers;  // reference layer combos (References)
  std::vector<GtkWidget*> layer_labels;
};

struct Dialog {
  Proc proc;
  const DaemonInfo* daemon = nullptr;
  // The LoRA rows (none when the daemon lists no LoRAs): list index 0 = None, k = loras[k - 1].
  std::vector<GtkWidget*> lora_labels, lora_lists, lora_strengths;
  std::vector<std::string> names;  // model combo entries after the default one
  std::vector<ipc::ModelCaps> caps;
  ipc::ModelCaps default_caps;
  GtkWidget* model = nullptr;
  std::vector<Row> rows;
};

GtkWidget* left_label(GtkTable* t, int row, const char* text) {
  GtkWidget* l = gtk_label_new_with_mnemonic(text);
  gtk_misc_set_alignment(GTK_MISC(l), 0.0, 0.5);
  gtk_table_attach(t, l, 0, 1, row, row + 1, GTK_FILL, GTK_FILL, 0, 0);
  return l;
}

void attach_wide(GtkTable* t, GtkWidget* w, int row, int right = 3) {
  gtk_table_attach(t, w, 1, right, row, row + 1, GtkAttachOptions(GTK_EXPAND | GTK_FILL), GTK_FILL,
                   0, 0);
}

std::string with_colon(const char* label) { return std::string(label) + ":"; }

void on_random_toggled(GtkToggleButton* button, gpointer seed_spin) {
  gtk_widget_set_sensitive(GTK_WIDGET(seed_spin), !gtk_toggle_button_get_active(button));
}

void show(GtkWidget* w, bool on) {
  if (w) gtk_widget_set_visible(w, on);
}

// Shows the rows the chosen model can use.
void update_for_model(Dialog* d) {
  const int m = gtk_combo_box_get_active(GTK_COMBO_BOX(d->model));
  const ipc::ModelCaps caps =
      m > 0 && size_t(m - 1) < d->caps.size() ? d->caps[m - 1] : d->default_caps;
  for (auto& r : d->rows) {
    if (r.arg->field == Field::Loras || r.arg->field == Field::Lightning) {
      bool on = !caps.known || caps.loras;  // unknown caps (old daemon): offer it
      if (r.arg->field == Field::Lightning) on = offer_lightning(caps, *d->daemon);
      show(r.label, on);
      show(r.widget, on);
      if (r.arg->field == Field::Loras) {
        // Row 1, and each further row once the one above (or itself) has a LoRA.
        bool next = on;
        for (size_t i = 0; i < d->lora_lists.size(); ++i) {
          const bool chosen = gtk_combo_box_get_active(GTK_COMBO_BOX(d->lora_lists[i])) > 0;
          show(d->lora_labels[i], next || (on && chosen));
          show(d->lora_lists[i], next || (on && chosen));
          show(d->lora_strengths[i], next || (on && chosen));
          gtk_widget_set_sensitive(d->lora_strengths[i], chosen);
          next = on && chosen;
        }
      }
    } else if (r.arg->field == Field::References) {
      const int slots = reference_slots(d->proc, caps);
      for (size_t i = 0; i < r.layers.size(); ++i) {
        show(r.layers[i], int(i) < slots);
        show(r.layer_labels[i], int(i) < slots);
      }
    }
  }
}

void on_model_changed(GtkComboBox*, gpointer dialog) {
  update_for_model(static_cast<Dialog*>(dialog));
}

// The loras string of the rows and the text field.
std::string composed_loras(const Dialog& d, GtkWidget* text) {
  LoraPick pick;
  for (size_t i = 0; i < d.lora_lists.size(); ++i) {
    const int k = gtk_combo_box_get_active(GTK_COMBO_BOX(d.lora_lists[i]));
    if (k > 0 && size_t(k) <= d.daemon->loras.size())
      pick.rows.push_back({d.daemon->loras[k - 1].name,
                           gtk_spin_button_get_value(GTK_SPIN_BUTTON(d.lora_strengths[i]))});
  }
  pick.other = gtk_entry_get_text(GTK_ENTRY(text));
  return compose_loras(pick);
}

// Test hook: QWEN_IMAGE_GIMP_DIALOG_PICK="name:0.8,other:-0.3" chooses these LoRAs in the first
// free rows, through the rows' lists, as a user would. False (saying why on stderr) when a name
// is not in the lists.
bool pick_loras(Dialog& d, const char* spec) {
  std::vector<ipc::JobLora> want;
  if (auto bad = parse_loras(spec, &want); !bad.empty()) {
    g_printerr("qwen-image dialog test: QWEN_IMAGE_GIMP_DIALOG_PICK: %s\n", bad.c_str());
    return false;
  }
  size_t row = 0;
  for (const auto& w : want) {
    while (row < d.lora_lists.size() &&
           gtk_combo_box_get_active(GTK_COMBO_BOX(d.lora_lists[row])) > 0)
      ++row;
    int k = 0;
    for (size_t i = 0; i < d.daemon->loras.size(); ++i)
      if (d.daemon->loras[i].name == w.name) k = int(i) + 1;
    if (row == d.lora_lists.size() || k == 0) {
      g_printerr("qwen-image dialog test: no LoRA '%s' in the list of a free LoRA row\n",
                 w.name.c_str());
      return false;
    }
    gtk_combo_box_set_active(GTK_COMBO_BOX(d.lora_lists[row]), k);
    gtk_spin_button_set_value(GTK_SPIN_BUTTON(d.lora_strengths[row]), w.strength);
  }
  return true;
}

// Test hook: QWEN_IMAGE_GIMP_DIALOG_SNAPSHOT=<folder> saves the rendered dialog as
// <folder>/<procedure>.png and cancels it, or with QWEN_IMAGE_GIMP_DIALOG_ACCEPT=1 presses OK;
// QWEN_IMAGE_GIMP_DIALOG_PICK first chooses LoRAs in the LoRA rows (pick_loras).
// The pick, a while before the snapshot so that the dialog has rendered it.
gboolean pick_hook(gpointer dialog) {
  auto* d = static_cast<Dialog*>(g_object_get_data(G_OBJECT(dialog), "qwen-dialog"));
  if (const char* pick = std::getenv("QWEN_IMAGE_GIMP_DIALOG_PICK");
      pick && d && !d->lora_lists.empty() && !pick_loras(*d, pick))
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
    std::string path = std::string(dir) + "/" + proc + ".png";
    gint w = 0, h = 0;
    gdk_drawable_get_size(window, &w, &h);
    GdkPixbuf* pb = gdk_pixbuf_get_from_drawable(nullptr, window, nullptr, 0, 0, 0, 0, w, h);
    if (pb) {
      gdk_pixbuf_save(pb, path.c_str(), "png", nullptr, nullptr);
      g_object_unref(pb);
    }
  }
  gtk_dialog_response(GTK_DIALOG(dialog), ok ? GTK_RESPONSE_OK : GTK_RESPONSE_CANCEL);
  return FALSE;
}

void on_lora_chosen(GtkComboBox*, gpointer dialog) {
  update_for_model(static_cast<Dialog*>(dialog));
}

}  // namespace

bool run_dialog(Proc proc, Settings& s, const DaemonInfo& daemon, const PluginConfig& config) {
  const ProcDecl& decl = decl_of(proc);
  gimp_ui_init(kBinary, FALSE);
  GtkWidget* dialog =
      gimp_dialog_new(decl.title, kBinary, nullptr, GtkDialogFlags(0), gimp_standard_help_func,
                      nullptr, "_Cancel", GTK_RESPONSE_CANCEL, "_OK", GTK_RESPONSE_OK, nullptr);
  gtk_dialog_set_alternative_button_order(GTK_DIALOG(dialog), GTK_RESPONSE_OK, GTK_RESPONSE_CANCEL,
                                          -1);
  gimp_window_set_transient(GTK_WINDOW(dialog));
  gtk_window_set_default_size(GTK_WINDOW(dialog), 460, -1);

  GtkWidget* vbox = gtk_vbox_new(FALSE, 6);
  gtk_container_set_border_width(GTK_CONTAINER(vbox), 12);
  gtk_box_pack_start(GTK_BOX(gtk_dialog_get_content_area(GTK_DIALOG(dialog))), vbox, TRUE, TRUE, 0);

  Dialog d;
  d.proc = proc;
  d.daemon = &daemon;
  // The models that suit the procedure; the first of them stands for "the daemon's default".
  for (size_t i = 0; i < daemon.models.size(); ++i) {
    const ipc::ModelCaps caps = i < daemon.caps.size() ? daemon.caps[i] : ipc::ModelCaps{};
    if (!model_suits(proc, daemon.models[i], "", caps)) continue;
    d.names.push_back(daemon.models[i]);
    d.caps.push_back(caps);
  }
  // "" stands for the daemon's default model; Edit Layer and Decompose use the first model that
  // suits them when the default does not (plugin/common/jobs.cpp, decompose.cpp).
  std::string def = "daemon's default";
  if (!daemon.models.empty()) {
    def += " (" + daemon.models.front() + ")";
    d.default_caps = daemon.caps.empty() ? ipc::ModelCaps{} : daemon.caps.front();
  }
  if ((proc == Proc::EditLayer || proc == Proc::Decompose) && !d.names.empty() &&
      (daemon.models.empty() || d.names.front() != daemon.models.front())) {
    def = (proc == Proc::Decompose ? "daemon's Layered model (" : "daemon's edit model (") +
          d.names.front() + ")";
    d.default_caps = d.caps.front();
  }
  if (*s.model && std::find(d.names.begin(), d.names.end(), s.model) == d.names.end()) {
    d.names.push_back(s.model);  // remembered or preset by a script, not served now
    d.caps.push_back({});
  }

  GtkWidget* prompt = nullptr;
  GtkWidget* table = gtk_table_new(int(decl.args.size()) + 10 + kLoraRows, 3, FALSE);
  gtk_table_set_row_spacings(GTK_TABLE(table), 4);
  gtk_table_set_col_spacings(GTK_TABLE(table), 8);
  GtkTable* t = GTK_TABLE(table);
  int row = 0;
  for (const auto& a : decl.args) {
    Row r;
    r.arg = &a;
    switch (a.field) {
      case Field::Prompt: {  // a multi-line text above the table
        std::string text = with_colon(a.label);
        if (proc == Proc::Decompose)
          text = "_Prompt (describes the whole picture, not single layers):";
        GtkWidget* plabel = gtk_label_new_with_mnemonic(text.c_str());
        gtk_misc_set_alignment(GTK_MISC(plabel), 0.0, 0.5);
        gtk_box_pack_start(GTK_BOX(vbox), plabel, FALSE, FALSE, 0);
        GtkWidget* scroll = gtk_scrolled_window_new(nullptr, nullptr);
        gtk_scrolled_window_set_policy(GTK_SCROLLED_WINDOW(scroll), GTK_POLICY_AUTOMATIC,
                                       GTK_POLICY_AUTOMATIC);
        gtk_scrolled_window_set_shadow_type(GTK_SCROLLED_WINDOW(scroll), GTK_SHADOW_IN);
        gtk_widget_set_size_request(scroll, -1, 90);
        prompt = gtk_text_view_new();
        gtk_text_view_set_wrap_mode(GTK_TEXT_VIEW(prompt), GTK_WRAP_WORD_CHAR);
        gtk_text_buffer_set_text(gtk_text_view_get_buffer(GTK_TEXT_VIEW(prompt)), s.prompt, -1);
        gtk_container_add(GTK_CONTAINER(scroll), prompt);
        gtk_label_set_mnemonic_widget(GTK_LABEL(plabel), prompt);
        gtk_box_pack_start(GTK_BOX(vbox), scroll, TRUE, TRUE, 0);
        r.widget = prompt;
        break;
      }
      case Field::Model: {
        r.label = left_label(t, row, with_colon(a.label).c_str());
        d.model = r.widget = gtk_combo_box_text_new();
        gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(r.widget), def.c_str());
        int active = 0;
        for (size_t i = 0; i < d.names.size(); ++i) {
          gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(r.widget), d.names[i].c_str());
          if (d.names[i] == s.model) active = int(i) + 1;
        }
        gtk_combo_box_set_active(GTK_COMBO_BOX(r.widget), active);
        attach_wide(t, r.widget, row++);
        break;
      }
      case Field::Resolution: {
        r.label = left_label(t, row, with_colon(a.label).c_str());
        r.widget = gtk_combo_box_text_new();
        gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(r.widget), "640 (recommended)");
        gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(r.widget), "1024");
        gtk_combo_box_set_active(GTK_COMBO_BOX(r.widget), s.resolution == 1024 ? 1 : 0);
        attach_wide(t, r.widget, row++);
        break;
      }
      case Field::References: {
        // One "none"-by-default layer chooser (layers of every open image) per slot the model
        // can take; update_for_model() shows the first max_references - 1.
        const auto chosen = layers_field(s, a.field);
        for (int i = 0; i < int(a.max); ++i) {
          const std::string text =
              i == 0 ? with_colon(a.label) : "Reference layer " + std::to_string(i + 1) + ":";
          GtkWidget* l = left_label(t, row, text.c_str());
          GtkWidget* c = gimp_layer_combo_box_new(nullptr, nullptr);
          gimp_int_combo_box_prepend(GIMP_INT_COMBO_BOX(c), GIMP_INT_STORE_VALUE, -1,
                                     GIMP_INT_STORE_LABEL, "(none)", -1);
          gimp_int_combo_box_set_active(GIMP_INT_COMBO_BOX(c),
                                        i < int(chosen.size()) ? chosen[i] : -1);
          gtk_label_set_mnemonic_widget(GTK_LABEL(l), c);
          attach_wide(t, c, row++);
          r.layers.push_back(c);
          r.layer_labels.push_back(l);
        }
        break;
      }
      default:
        switch (a.type) {
          case ArgType::String:
            if (a.field == Field::Loras && !daemon.loras.empty()) {
              // The rows of the daemon's LoRAs, then the text for the rest.
              LoraPick pick;
              split_loras(string_field(s, a.field), lora_names(daemon.loras), &pick);
              for (int i = 0; i < kLoraRows; ++i) {
                const std::string text =
                    i == 0 ? std::string("_LoRA:") : "LoRA " + std::to_string(i + 1) + ":";
                GtkWidget* l = left_label(t, row, text.c_str());
                GtkWidget* c = gtk_combo_box_text_new();
                gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(c), kLoraNone);
                int active = 0;
                for (size_t k = 0; k < daemon.loras.size(); ++k) {
                  gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(c),
                                                 lora_choice_label(daemon.loras[k]).c_str());
                  if (i < int(pick.rows.size()) && pick.rows[i].name == daemon.loras[k].name)
                    active = int(k) + 1;
                }
                gtk_combo_box_set_active(GTK_COMBO_BOX(c), active);
                GtkWidget* sp = gtk_spin_button_new_with_range(kLoraRowMin, kLoraRowMax, 0.05);
                gtk_spin_button_set_digits(GTK_SPIN_BUTTON(sp), 2);
                gtk_spin_button_set_value(GTK_SPIN_BUTTON(sp),
                                          i < int(pick.rows.size()) ? pick.rows[i].strength : 1.0);
                gtk_widget_set_tooltip_text(sp, "Strength (negative: the opposite effect)");
                gtk_label_set_mnemonic_widget(GTK_LABEL(l), c);
                gtk_table_attach(t, c, 1, 2, row, row + 1, GtkAttachOptions(GTK_EXPAND | GTK_FILL),
                                 GTK_FILL, 0, 0);
                gtk_table_attach(t, sp, 2, 3, row, row + 1, GTK_FILL, GTK_FILL, 0, 0);
                ++row;
                g_signal_connect(c, "changed", G_CALLBACK(on_lora_chosen), &d);
                d.lora_labels.push_back(l);
                d.lora_lists.push_back(c);
                d.lora_strengths.push_back(sp);
              }
              r.label = left_label(t, row, "Other LoRAs:");
              r.widget = gtk_entry_new();
              gtk_entry_set_text(GTK_ENTRY(r.widget), pick.other.c_str());
            } else {
              r.label = left_label(t, row, with_colon(a.label).c_str());
              r.widget = gtk_entry_new();
              gtk_entry_set_text(GTK_ENTRY(r.widget), string_field(s, a.field));
            }
            if (a.field == Field::Loras)
              gtk_widget_set_tooltip_text(r.widget,
                                          "name:strength, comma-separated, e.g. "
                                          "\"my-style:0.8,detail:-0.3\" (names from the daemon's "
                                          "lora_dir or absolute paths)");
            attach_wide(t, r.widget, row++);
            break;
          case ArgType::Bool:
            r.widget = gtk_check_button_new_with_mnemonic(a.label);
            gtk_toggle_button_set_active(GTK_TOGGLE_BUTTON(r.widget),
                                         number_field(s, a.field) != 0);
            attach_wide(t, r.widget, row++);
            break;
          case ArgType::Int:
          case ArgType::Double: {
            const bool is_int = a.type == ArgType::Int;
            double lo = a.min, v = number_field(s, a.field);
            if (a.field == Field::Seed) lo = 0, v = std::max(0.0, v);  // -1: the Random toggle
            r.label =
                left_label(t, row,
                           (a.field == Field::Variants ? std::string("_Variants (one layer each):")
                                                       : with_colon(a.label))
                               .c_str());
            r.widget =
                gtk_spin_button_new_with_range(lo, a.max, is_int ? 1 : (a.max <= 1 ? 0.05 : 0.5));
            gtk_spin_button_set_digits(GTK_SPIN_BUTTON(r.widget), is_int ? 0 : 2);
            gtk_spin_button_set_value(GTK_SPIN_BUTTON(r.widget), v);
            gtk_table_attach(t, r.widget, 1, 2, row, row + 1,
                             GtkAttachOptions(GTK_EXPAND | GTK_FILL), GTK_FILL, 0, 0);
            if (a.field == Field::Seed) {
              r.extra = gtk_check_button_new_with_mnemonic("_Random");
              gtk_toggle_button_set_active(GTK_TOGGLE_BUTTON(r.extra), s.random_seed);
              gtk_widget_set_sensitive(r.widget, !s.random_seed);
              g_signal_connect(r.extra, "toggled", G_CALLBACK(on_random_toggled), r.widget);
              gtk_table_attach(t, r.extra, 2, 3, row, row + 1, GTK_FILL, GTK_FILL, 0, 0);
            }
            ++row;
            break;
          }
          case ArgType::Layers:
            break;
        }
    }
    if (r.label && r.widget) gtk_label_set_mnemonic_widget(GTK_LABEL(r.label), r.widget);
    d.rows.push_back(r);
  }
  gtk_box_pack_start(GTK_BOX(vbox), table, FALSE, FALSE, 0);

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
  if (d.model) {
    update_for_model(&d);
    g_signal_connect(d.model, "changed", G_CALLBACK(on_model_changed), &d);
  }
  g_object_set_data(G_OBJECT(dialog), "qwen-proc", const_cast<char*>(decl.name));
  g_object_set_data(G_OBJECT(dialog), "qwen-dialog", &d);
  if (std::getenv("QWEN_IMAGE_GIMP_DIALOG_SNAPSHOT")) {
    g_timeout_add(750, pick_hook, dialog);
    g_timeout_add(1500, snapshot_and_close, dialog);
  }
  bool ok = gimp_dialog_run(GIMP_DIALOG(dialog)) == GTK_RESPONSE_OK;
  if (ok) {
    for (const auto& r : d.rows) {
      const ArgDecl& a = *r.arg;
      if (r.widget && !gtk_widget_get_visible(r.widget) && a.field != Field::Prompt) {
        // Not offered for the chosen model: not sent.
        if (a.field == Field::Loras) set_field(s, a.field, "");
        if (a.field == Field::Lightning) set_field(s, a.field, 0.0);
        continue;
      }
      switch (a.field) {
        case Field::Prompt: {
          GtkTextBuffer* buf = gtk_text_view_get_buffer(GTK_TEXT_VIEW(prompt));
          GtkTextIter b, e;
          gtk_text_buffer_get_bounds(buf, &b, &e);
          gchar* text = gtk_text_buffer_get_text(buf, &b, &e, FALSE);
          set_field(s, a.field, text);
          g_free(text);
          break;
        }
        case Field::Model: {
          const int m = gtk_combo_box_get_active(GTK_COMBO_BOX(r.widget));
          set_field(s, a.field, m > 0 ? d.names[m - 1].c_str() : "");
          break;
        }
        case Field::Resolution:
          s.resolution = gtk_combo_box_get_active(GTK_COMBO_BOX(r.widget)) == 1 ? 1024 : 640;
          break;
        case Field::References: {
          std::vector<int> ids;
          for (auto* c : r.layers) {
            gint id = -1;
            if (gtk_widget_get_visible(c) &&
                gimp_int_combo_box_get_active(GIMP_INT_COMBO_BOX(c), &id) && id > 0)
              ids.push_back(id);
          }
          set_layers(s, a.field, ids);
          break;
        }
        case Field::Seed:
          s.random_seed = gtk_toggle_button_get_active(GTK_TOGGLE_BUTTON(r.extra));
          s.seed = s.random_seed ? -1 : gtk_spin_button_get_value_as_int(GTK_SPIN_BUTTON(r.widget));
          break;
        case Field::Loras:
          set_field(s, a.field, composed_loras(d, r.widget).c_str());
          break;
        default:
          if (a.type == ArgType::String)
            set_field(s, a.field, gtk_entry_get_text(GTK_ENTRY(r.widget)));
          else if (a.type == ArgType::Bool)
            set_field(s, a.field,
                      gtk_toggle_button_get_active(GTK_TOGGLE_BUTTON(r.widget)) ? 1.0 : 0.0);
          else if (a.type == ArgType::Int)
            set_field(s, a.field,
                      double(gtk_spin_button_get_value_as_int(GTK_SPIN_BUTTON(r.widget))));
          else if (a.type == ArgType::Double)
            set_field(s, a.field, gtk_spin_button_get_value(GTK_SPIN_BUTTON(r.widget)));
          break;
      }
    }
  }
  gtk_widget_destroy(dialog);
  return ok;
}

}  // namespace qwen::plugin
