#include "models/lora.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "io/safetensors.h"
#include "models/linear.h"
#include "models/quant.h"
#include "models/weights.h"

namespace qwen::models {

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

std::string join_some(const std::vector<std::string>& v, size_t max = 12) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < max; ++i) s += (i ? ", " : "") + v[i];
  if (v.size() > max) s += ", ... (" + std::to_string(v.size()) + " in all)";
  return s;
}

enum class Role { Down, Up, Alpha };

// Key suffixes of the five styles (with and without ".weight").
struct Suffix {
  const char* text;
  Role role;
};
constexpr Suffix kSuffixes[] = {
    {".lora_A.default.weight", Role::Down},
    {".lora_B.default.weight", Role::Up},
    {".lora_A.weight", Role::Down},
    {".lora_B.weight", Role::Up},
    {".lora_down.weight", Role::Down},
    {".lora_up.weight", Role::Up},
    {".lora_A", Role::Down},
    {".lora_B", Role::Up},
    {".lora_down", Role::Down},
    {".lora_up", Role::Up},
    {".alpha", Role::Alpha},
};

struct Parts {
  std::string down, up, alpha;  // tensor names in the file
};

// diffusers get_alpha_scales: alpha / r split into two factors, the down one doubled (and the up
// one halved) while down * 2 < up.
std::pair<double, double> alpha_scales(double alpha, int64_t rank) {
  double scale_down = alpha / static_cast<double>(rank), scale_up = 1.0;
  while (scale_down * 2 < scale_up) {
    scale_down *= 2;
    scale_up /= 2;
  }
  return {scale_down, scale_up};
}

// PEFT's get_pattern_key: the first pattern key `k` with re.match(rf"(.*\.)?({k})$", name)
// (patterns taken literally here: the writers store module names).
const nlohmann::ordered_json* pattern_value(const nlohmann::ordered_json& patterns,
                                            const std::string& name) {
  if (!patterns.is_object()) return nullptr;
  for (auto it = patterns.begin(); it != patterns.end(); ++it)
    if (name == it.key() || ends_with(name, "." + it.key())) return &it.value();
  return nullptr;
}

}  // namespace

const char* to_string(LoraStyle s) {
  switch (s) {
    case LoraStyle::DiffusersPeft:
      return "diffusers/PEFT";
    case LoraStyle::AiToolkit:
      return "ai-toolkit";
    case LoraStyle::DiffSynth:
      return "DiffSynth";
    case LoraStyle::Kohya:
      return "kohya/musubi";
    case LoraStyle::Lightx2v:
      return "lightx2v";
  }
  return "unknown";
}

double LoraModule::scaling(double strength) const {
  // peft LoraLayer.set_scale: scale * lora_alpha / r (rsLoRA: / sqrt(r)).
  return rslora ? strength * alpha / std::sqrt(r) : strength * alpha / r;
}

int64_t LoraFile::max_rank() const {
  int64_t r = 0;
  for (const auto& m : modules) r = std::max<int64_t>(r, m.down.size(0));
  return r;
}

std::vector<std::string> linear_module_names(torch::nn::Module& model) {
  std::vector<std::string> names;
  for (const auto& item : model.named_modules("", /*include_self=*/false))
    if (dynamic_cast<LinearImpl*>(item.value().get())) names.push_back(item.key());
  return names;
}

std::map<std::string, std::pair<int64_t, int64_t>> linear_module_shapes(torch::nn::Module& model) {
  std::map<std::string, std::pair<int64_t, int64_t>> shapes;
  for (const auto& item : model.named_modules("", false))
    if (auto* l = dynamic_cast<LinearImpl*>(item.value().get())) {
      if (const auto* q = l->quantized())
        shapes[item.key()] = std::make_pair(q->shape().at(0), q->shape().at(1));
      else
        shapes[item.key()] = std::make_pair(l->weight.size(0), l->weight.size(1));
    }
  return shapes;
}

LoraFile read_lora(const std::string& path, const std::vector<std::string>& linear_names,
                   const std::map<std::string, std::pair<int64_t, int64_t>>& linear_shapes) {
  const std::string what = "LoRA file " + path;
  std::shared_ptr<io::SafetensorsFile> st;
  try {
    st = io::SafetensorsFile::open(path);
  } catch (const std::exception& e) {
    throw LoraError(what + ": cannot read it as .safetensors (" + e.what() +
                    "); give a LoRA in the safetensors format");
  }
  LoraFile out;
  out.path = path;
  out.metadata = st->metadata();
  std::vector<std::string> keys;
  for (const auto& t : st->tensors()) keys.push_back(t.name);
  std::sort(keys.begin(), keys.end());
  if (keys.empty()) throw LoraError(what + " holds no tensors: it is not a LoRA");

  // Other adapter types (LyCORIS LoKr / LoHa, DoRA's magnitude vectors): not supported.
  for (const auto& k : keys) {
    const char* kind = nullptr;
    if (k.find("lokr_") != std::string::npos) kind = "LoKr";
    if (k.find("hada_") != std::string::npos) kind = "LoHa";
    if (k.find("lora_magnitude_vector") != std::string::npos ||
        k.find("dora_scale") != std::string::npos)
      kind = "DoRA";
    if (kind)
      throw LoraError(what + " is a " + kind + " adapter (key " + k + "): " + kind +
                      " is not supported; use a plain LoRA (lora_A/lora_B or lora_down/lora_up)");
  }

  // Style, from the prefixes diffusers' conversion keys on.
  const bool any_diffusion_model = std::any_of(
      keys.begin(), keys.end(), [](const auto& k) { return starts_with(k, "diffusion_model."); });
  const bool any_lora_unet = std::any_of(
      keys.begin(), keys.end(), [](const auto& k) { return starts_with(k, "lora_unet_"); });
  const bool any_default = std::any_of(keys.begin(), keys.end(), [](const auto& k) {
    return k.find("default.") != std::string::npos;
  });
  const bool any_alpha =
      std::any_of(keys.begin(), keys.end(), [](const auto& k) { return ends_with(k, ".alpha"); });
  const bool any_transformer = std::any_of(
      keys.begin(), keys.end(), [](const auto& k) { return starts_with(k, "transformer."); });
  const bool any_down = std::any_of(keys.begin(), keys.end(), [](const auto& k) {
    return k.find(".lora_down") != std::string::npos;
  });
  if (any_lora_unet)
    out.style = LoraStyle::Kohya;
  else if (any_diffusion_model)
    out.style = LoraStyle::AiToolkit;
  else if (any_default)
    out.style = LoraStyle::DiffSynth;
  else if (any_down && !any_transformer)
    out.style = LoraStyle::Lightx2v;
  else
    out.style = LoraStyle::DiffusersPeft;
  // lora_conversion_utils.py: the conversion (and its alpha folding) runs when any key ends in
  // .alpha, starts with lora_unet_ / diffusion_model. or contains "default.".
  const bool converted = any_alpha || any_lora_unet || any_diffusion_model || any_default;

  // kohya: flattened module names back to the model's (every '.' of a Linear's name -> '_').
  std::map<std::string, std::string> flat;
  for (const auto& n : linear_names) {
    std::string f = n;
    std::replace(f.begin(), f.end(), '.', '_');
    flat[f] = n;
  }

  std::map<std::string, Parts> parts;  // module -> tensor names
  std::vector<std::string> unreadable;
  for (const auto& key : keys) {
    const Suffix* suffix = nullptr;
    for (const auto& s : kSuffixes)
      if (ends_with(key, s.text)) {
        suffix = &s;
        break;
      }
    if (!suffix) {
      unreadable.push_back(key);
      continue;
    }
    std::string m = key.substr(0, key.size() - std::string(suffix->text).size());
    if (starts_with(m, "diffusion_model."))
      m = m.substr(16);
    else if (starts_with(m, "transformer."))
      m = m.substr(12);
    if (starts_with(m, "lora_unet_")) {
      m = m.substr(10);
      auto it = flat.find(m);
      // Unresolved names stay flattened (reported below as modules the model lacks).
      if (it != flat.end()) m = it->second;
    }
    Parts& p = parts[m];
    (suffix->role == Role::Down ? p.down : suffix->role == Role::Up ? p.up : p.alpha) = key;
  }
  if (!unreadable.empty())
    throw LoraError(what +
                    ": keys that are not part of a LoRA (lora_A/lora_B, lora_down/lora_up, "
                    "alpha): " +
                    join_some(unreadable) + "; only plain LoRA files are supported");

  // PEFT config from `lora_adapter_metadata` (diffusers save_lora_weights), keys "transformer.*".
  std::optional<nlohmann::ordered_json> config;
  if (auto it = out.metadata.find("lora_adapter_metadata"); it != out.metadata.end()) {
    nlohmann::ordered_json all;
    try {
      all = nlohmann::ordered_json::parse(it->second);
    } catch (const std::exception& e) {
      throw LoraError(what + ": lora_adapter_metadata is not valid JSON (" + e.what() + ")");
    }
    nlohmann::ordered_json c = nlohmann::ordered_json::object();
    if (all.is_object())
      for (auto j = all.begin(); j != all.end(); ++j)
        if (starts_with(j.key(), "transformer.")) c[j.key().substr(12)] = j.value();
    if (!c.empty()) config = c;
  }

  std::vector<std::string> missing_model, incomplete;
  for (auto& [module, p] : parts) {
    if (p.down.empty() || p.up.empty()) {
      if (p.down.empty() && p.up.empty()) continue;  // a stray alpha (diffusers drops them)
      incomplete.push_back(module +
                           (p.down.empty() ? " (no lora_A/lora_down)" : " (no lora_B/lora_up)"));
      continue;
    }
    if (std::find(linear_names.begin(), linear_names.end(), module) == linear_names.end()) {
      missing_model.push_back(module);
      continue;
    }
    LoraModule lm;
    lm.module = module;
    lm.down = to_tensor_raw(io::TensorRef{st, st->find(p.down)}).clone();
    lm.up = to_tensor_raw(io::TensorRef{st, st->find(p.up)}).clone();
    if (lm.down.dim() != 2 || lm.up.dim() != 2 || lm.up.size(1) != lm.down.size(0))
      throw LoraError(what + ": module " + module + " has lora_A/down " +
                      c10::str(lm.down.sizes()) + " and lora_B/up " + c10::str(lm.up.sizes()) +
                      ", which do not form a LoRA ([r, in] and [out, r])");
    if (!lm.down.is_floating_point() || !lm.up.is_floating_point())
      throw LoraError(what + ": module " + module + " is not stored as floating point");
    if (auto s = linear_shapes.find(module); s != linear_shapes.end()) {
      if (lm.down.size(1) != s->second.second || lm.up.size(0) != s->second.first)
        throw LoraError(what + ": module " + module + " maps " + std::to_string(lm.down.size(1)) +
                        " -> " + std::to_string(lm.up.size(0)) + " features, the model's layer " +
                        std::to_string(s->second.second) + " -> " +
                        std::to_string(s->second.first) +
                        ": the LoRA was made for another model (e.g. another Qwen-Image size)");
    }
    const int64_t rank = lm.down.size(0);
    if (converted && !p.alpha.empty()) {
      // _convert_non_diffusers_qwen_lora_to_diffusers: A *= scale_down, B *= scale_up in the
      // file's dtype; the adapter then has factor 1 (alpha = r below).
      const double alpha =
          to_tensor_raw(io::TensorRef{st, st->find(p.alpha)}).to(torch::kFloat64).item<double>();
      const auto [sd, su] = alpha_scales(alpha, rank);
      lm.down = lm.down * sd;
      lm.up = lm.up * su;
    } else if (!converted && !p.alpha.empty()) {
      // Unreachable (an alpha key makes the file converted); kept for clarity.
    }
    if (config) {
      // _create_lora_config(metadata): LoraConfig(**metadata); r / lora_alpha per module from
      // rank_pattern / alpha_pattern.
      const auto& c = *config;
      // LoraConfig defaults (r 8, lora_alpha 8) for absent or null entries.
      auto number = [&](const char* key, double fallback) {
        auto it = c.find(key);
        return it != c.end() && it->is_number() ? it->get<double>() : fallback;
      };
      double r = number("r", 8.0), alpha = number("lora_alpha", 8.0);
      const auto rank_pattern = c.value("rank_pattern", nlohmann::ordered_json());
      const auto alpha_pattern = c.value("alpha_pattern", nlohmann::ordered_json());
      if (const auto* v = pattern_value(rank_pattern, module)) r = v->get<double>();
      if (const auto* v = pattern_value(alpha_pattern, module)) alpha = v->get<double>();
      if (static_cast<int64_t>(r) != rank)
        throw LoraError(what + ": module " + module + " has rank " + std::to_string(rank) +
                        " but its lora_adapter_metadata says r = " + std::to_string(r));
      lm.r = r;
      lm.alpha = alpha;
      auto rs = c.find("use_rslora");
      lm.rslora = rs != c.end() && rs->is_boolean() && rs->get<bool>();
    } else {
      // get_peft_kwargs without network alphas: lora_alpha = r for every module (factor 1).
      lm.r = lm.alpha = static_cast<double>(rank);
    }
    out.modules.push_back(std::move(lm));
  }
  if (!incomplete.empty())
    throw LoraError(what + ": incomplete LoRA modules: " + join_some(incomplete));
  if (!missing_model.empty())
    throw LoraError(what + " adapts modules this model does not have: " +
                    join_some(missing_model, 20) + "; the LoRA was made for another model");
  if (out.modules.empty())
    throw LoraError(what + " holds no lora_A/lora_B (lora_down/lora_up) pair: it is not a LoRA");
  return out;
}

LightningInfo lightning_info(const LoraFile& file) {
  return io::lightning_from(file.path, file.metadata);
}

void clear_loras(torch::nn::Module& model) {
  for (const auto& m : model.modules(false))
    if (auto* l = dynamic_cast<LinearImpl*>(m.get())) l->clear_lora();
}

int64_t apply_loras(torch::nn::Module& model, const std::vector<LoraSpec>& set, bool merge) {
  torch::NoGradGuard no_grad;
  clear_loras(model);
  std::map<std::string, LinearImpl*> layers;
  for (const auto& item : model.named_modules("", false))
    if (auto* l = dynamic_cast<LinearImpl*>(item.value().get())) layers[item.key()] = l;
  std::map<std::string, std::vector<LoraBranch>> branches;
  for (const auto& spec : set) {
    if (!spec.file) continue;
    if (!std::isfinite(spec.strength))
      throw LoraError("LoRA " + spec.file->path + ": the strength must be a finite number");
    std::vector<std::string> missing;
    for (const auto& m : spec.file->modules) {
      auto it = layers.find(m.module);
      if (it == layers.end()) {
        missing.push_back(m.module);
        continue;
      }
      LinearImpl* l = it->second;
      const int64_t out = l->quantized() ? l->quantized()->shape().at(0) : l->weight.size(0);
      const int64_t in = l->quantized() ? l->quantized()->shape().at(1) : l->weight.size(1);
      if (m.down.size(1) != in || m.up.size(0) != out)
        throw LoraError("LoRA file " + spec.file->path + ": module " + m.module +
                        " does not fit the model's layer (" + std::to_string(in) + " -> " +
                        std::to_string(out) + " features): the LoRA was made for another model");
      // The compute dtype: the weight (a quantised weight's placeholder follows the model dtype).
      const auto opts =
          torch::TensorOptions().dtype(l->weight.scalar_type()).device(l->weight.device());
      branches[m.module].push_back(
          LoraBranch{m.down.to(opts), m.up.to(opts), m.scaling(spec.strength)});
    }
    if (!missing.empty())
      throw LoraError("LoRA file " + spec.file->path +
                      " adapts modules this model does not have: " + join_some(missing, 20));
  }
  for (auto& [name, b] : branches) layers.at(name)->set_lora(std::move(b), merge);
  return static_cast<int64_t>(branches.size());
}

std::pair<std::string, double> parse_lora_argument(const std::string& text) {
  const auto colon = text.find_last_of(':');
  if (colon != std::string::npos && colon + 1 < text.size()) {
    const std::string tail = text.substr(colon + 1);
    char* end = nullptr;
    const double v = std::strtod(tail.c_str(), &end);
    if (end && *end == '\0' && std::isfinite(v)) return {text.substr(0, colon), v};
  }
  return {text, 1.0};
}

}  // namespace qwen::models
