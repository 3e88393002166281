#include "lora_rows.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "procedures.h"

namespace qwen::plugin {

namespace {

std::string trim(const std::string& s) {
  const char* ws = " \t\r\n";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) + 1 - b);
}

// The entries of the text, trimmed, empty ones dropped (as parse_loras reads them).
std::vector<std::string> entries_of(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    if (std::string e = trim(text.substr(start, comma - start)); !e.empty()) out.push_back(e);
    start = comma + 1;
  }
  return out;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : ",") + p;
  return out;
}

}  // namespace

std::string format_lora_strength(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", std::round(v * 100) / 100);
  std::string s = buf;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  if (s == "-0") s = "0";
  return s;
}

std::string split_loras(const std::string& text, const std::vector<std::string>& available,
                        LoraPick* out) {
  LoraPick pick;
  if (auto bad = parse_loras(text, nullptr); !bad.empty()) {
    pick.other = trim(text);
    if (out) *out = pick;
    return bad;
  }
  std::vector<std::string> other;
  for (const auto& e : entries_of(text)) {
    std::vector<ipc::JobLora> one;
    parse_loras(e, &one);  // parses: the whole text did
    if (one.size() == 1 && int(pick.rows.size()) < kLoraRows) {
      std::string name = one[0].name;
      const std::string ext = ".safetensors";
      if (std::find(available.begin(), available.end(), name) == available.end() &&
          name.size() > ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0)
        name.resize(name.size() - ext.size());
      // The strength as the text wrote it (JobLora holds a float).
      double v = 1.0;
      if (auto colon = e.rfind(':'); colon != std::string::npos)  // parsed: a strength
        v = std::strtod(trim(e.substr(colon + 1)).c_str(), nullptr);
      const bool listed = std::find(available.begin(), available.end(), name) != available.end();
      const bool shown =
          v >= kLoraRowMin && v <= kLoraRowMax && std::fabs(std::round(v * 100) / 100 - v) < 1e-9;
      if (listed && shown) {
        pick.rows.push_back({name, v});
        continue;
      }
    }
    other.push_back(e);
  }
  pick.other = join(other);
  if (out) *out = std::move(pick);
  return "";
}

std::string compose_loras(const LoraPick& pick) {
  std::vector<std::string> parts;
  for (const auto& r : pick.rows)
    if (!r.name.empty()) parts.push_back(r.name + ":" + format_lora_strength(r.strength));
  if (auto o = trim(pick.other); !o.empty()) parts.push_back(o);
  return join(parts);
}

std::vector<std::string> lora_names(const std::vector<ipc::LoraInfo>& loras) {
  std::vector<std::string> out;
  for (const auto& l : loras) out.push_back(l.name);
  return out;
}

std::string lora_choice_label(const ipc::LoraInfo& lora) {
  return lora.lightning ? lora.name + " (Lightning)" : lora.name;
}

}  // namespace qwen::plugin
