#include "plan/model_sizes.h"

#include <algorithm>
#include <map>

namespace qwen::plan {

namespace {
bool floating(io::DType d) {
  return d == io::DType::F64 || d == io::DType::F32 || d == io::DType::F16 || d == io::DType::BF16;
}
int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}
bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}
}  // namespace

ComponentSize component_size(const io::ComponentWeights& weights, int64_t dtype_bytes,
                             const std::vector<std::string>& ignore) {
  ComponentSize c;
  c.file = weights.source;
  std::map<std::string, int64_t> by_storage;
  for (const auto& [key, f] : weights.format.tensors) {
    if (std::any_of(ignore.begin(), ignore.end(),
                    [&](const std::string& p) { return key.rfind(p, 0) == 0; }))
      continue;
    TensorSize t;
    t.name = key;
    t.numel = numel_of(f.shape);
    t.storage = f.storage();
    // models::load_module keeps a quantised weight of a models::Linear as stored; embedding
    // tables and 1-D tensors are dequantised.
    t.linear = f.shape.size() == 2 && ends_with(key, ".weight") &&
               key.find("embed_tokens") == std::string::npos;
    if (f.quantized() && t.linear) {
      t.bytes = static_cast<int64_t>(f.stored_bytes()) + (f.scale.info ? 4 : 0);
    } else if (f.encoding == io::Encoding::Plain && !floating(f.ref.info->dtype)) {
      t.bytes = static_cast<int64_t>(f.stored_bytes());
    } else {
      t.bytes = t.numel * dtype_bytes;
    }
    by_storage[t.linear && f.quantized() ? t.storage : (dtype_bytes == 2 ? "BF16" : "F32")] +=
        t.bytes;
    c.tensors.push_back(std::move(t));
  }
  int64_t best = -1;
  for (const auto& [s, n] : by_storage)
    if (n > best) {
      best = n;
      c.format = s;
    }
  return c;
}

ComponentSize quantize_on_load(const ComponentSize& c, io::QuantizeMode quantize) {
  if (quantize == io::QuantizeMode::None) return c;
  ComponentSize out = c;
  int64_t fp8 = 0, total = 0;
  static const char* kPlain[] = {"BF16", "F16", "F32", "F64"};
  for (auto& t : out.tensors) {
    const bool plain = std::any_of(std::begin(kPlain), std::end(kPlain),
                                   [&](const char* s) { return t.storage == s; });
    // TensorSize keeps no shape; `linear` is "2-D .weight" (component_size).
    if (plain && t.linear && io::quantize_on_load_selects(t.name, {t.numel, 1})) {
      t.bytes = t.numel + 4;
      t.storage = "F8_E4M3*scale";
      fp8 += t.bytes;
    }
    total += t.bytes;
  }
  if (fp8 * 2 > total) out.format = "F8_E4M3*scale (quantised at load)";
  return out;
}

ModelSizes model_sizes(const io::ModelFolder& model, int64_t dtype_bytes,
                       io::QuantizeMode quantize) {
  ModelSizes m;
  m.dtype_bytes = dtype_bytes;
  const std::string& cls = model.pipeline_class();
  m.edit = model.has("processor") && cls.find("Edit") != std::string::npos;
  // Qwen-Image-2.1 (issue #15): one model generates and edits (its vision tower is loaded).
  m.qwen21 = cls == "QwenImage21Pipeline";
  if (m.qwen21) m.edit = true;

  const auto tw = model.weights("transformer");
  m.transformer = quantize_on_load(component_size(tw, dtype_bytes), quantize);
  m.quantize_fp8 = quantize == io::QuantizeMode::Fp8;
  const auto& tc = tw.config;
  const int64_t heads = tc.value("num_attention_heads", int64_t(24));
  const int64_t head_dim = tc.value("attention_head_dim", int64_t(128));
  m.dim = heads * head_dim;
  m.layers = tc.value("num_layers", int64_t(60));
  m.zero_cond_t = tw.zero_cond_t || tc.value("zero_cond_t", false);

  std::vector<std::string> ignore = {"lm_head."};
  if (!m.edit) ignore.push_back("model.visual.");
  const auto ew = model.weights("text_encoder");
  m.text_encoder = component_size(ew, dtype_bytes, ignore);
  const auto& ec = ew.config.contains("text_config") ? ew.config["text_config"] : ew.config;
  m.text_hidden = ec.value("hidden_size", ew.config.value("hidden_size", int64_t(3584)));
  m.text_intermediate =
      ec.value("intermediate_size", ew.config.value("intermediate_size", int64_t(18944)));

  m.vae = component_size(model.weights("vae"), dtype_bytes);
  return m;
}

JobShape planned_job(const io::ModelFolder& model, const ModelSizes& sizes) {
  JobShape job;
  job.width = job.height = 1328;
  job.condition_images = sizes.edit ? 1 : 0;
  if (model.pipeline_class() == "QwenImageLayeredPipeline") {
    job.width = job.height = 640;
    job.frames = 4 + 2;
  }
  if (sizes.qwen21) {
    job.width = job.height = 1024;
    job.steps = 40;
  }
  return job;
}

}  // namespace qwen::plan
