#include "io/lightning.h"

#include <cctype>
#include <exception>
#include <filesystem>

#include "io/safetensors.h"

namespace qwen::io {

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

LightningInfo lightning_from(const std::string& path,
                             const std::map<std::string, std::string>& metadata) {
  LightningInfo info;
  const std::string name = lower(std::filesystem::path(path).filename().string());
  bool hit = name.find("lightning") != std::string::npos;
  for (const auto& [k, v] : metadata)
    if (lower(v).find("lightning") != std::string::npos) hit = true;
  info.lightning = hit;
  // "...-4steps-...", "..._4step...", "4-step"
  for (int steps : {4, 8}) {
    const std::string s = std::to_string(steps);
    for (const std::string& pat : {s + "step", s + "-step", s + "_step"})
      if (name.find(pat) != std::string::npos) info.named_steps = steps;
  }
  if (info.named_steps) info.steps = info.named_steps;
  return info;
}

LightningInfo lightning_info(const std::string& path) {
  std::map<std::string, std::string> metadata;
  try {
    metadata = SafetensorsFile::open(path)->metadata();
  } catch (const std::exception&) {
  }
  return lightning_from(path, metadata);
}

}  // namespace qwen::io
