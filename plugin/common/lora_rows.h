// The LoRA picker of both dialogs (issue #14): up to kLoraRows rows "LoRA [the daemon's LoRAs |
// None] strength [-2..2]" plus a text field for what the rows cannot show, kept in sync with the
// one `loras` string that the procedures take and record ("name:0.8,other:-0.3";
// procedures.h parse_loras). The dialogs split the string into rows when they open and compose it
// back when the user presses OK; the string stays the only value a procedure receives. GTK-free,
// so that both front-ends (GTK 2 and GTK 3) share it and it is unit-tested without GIMP.
#pragma once

#include <string>
#include <vector>

#include "qwen_image/client.h"

namespace qwen::plugin {

inline constexpr int kLoraRows = 3;
// The strength range of a row (the procedures accept -10..10: stronger entries stay in the text).
inline constexpr double kLoraRowMin = -2.0, kLoraRowMax = 2.0;

struct LoraRow {
  std::string name;  // one of the daemon's LoRAs (LoraInfo::name); "" = None
  double strength = 1.0;
  bool operator==(const LoraRow&) const = default;
};

struct LoraPick {
  std::vector<LoraRow> rows;  // at most kLoraRows
  std::string other;          // the entries the rows cannot show, as written, comma-separated
};

// Splits the loras text into rows and the rest. An entry becomes a row when a row is free, its
// name (with or without ".safetensors") is one of `available` (the daemon's LoRAs) and its
// strength is within kLoraRowMin..kLoraRowMax in steps of 0.01 (what the strength widget shows);
// every other entry (a 4th LoRA, an absolute path, a name the daemon does not list, strength 5)
// stays in `other`, in its order and as written. Text that does not parse goes into `other`
// whole, and the parse error (naming the entry, as parse_loras words it) is returned: the dialog
// keeps it visible and the procedure refuses it when run.
std::string split_loras(const std::string& text, const std::vector<std::string>& available,
                        LoraPick* out);
// The loras string of a pick: the rows with a LoRA, in order ("name:strength"), then `other`.
std::string compose_loras(const LoraPick& pick);
// A strength as the string writes it: at most 2 decimals, no trailing zeros ("1", "0.8", "-0.3").
std::string format_lora_strength(double v);
// The names of the daemon's LoRAs (for split_loras) and the label of each in a row's list
// ("name", or "name (Lightning)").
std::vector<std::string> lora_names(const std::vector<qwen::ipc::LoraInfo>& loras);
std::string lora_choice_label(const qwen::ipc::LoraInfo& lora);
inline constexpr const char* kLoraNone = "None";

}  // namespace qwen::plugin
