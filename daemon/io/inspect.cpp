// `qwen-image inspect --model PATH`: components, classes, layouts, dtypes, parameter counts, bytes.
#include "io/inspect.h"

#include <exception>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "io/checkpoint.h"

namespace qwen::io {

namespace {

void usage(FILE* f) {
  std::fprintf(f,
               "usage: qwen-image inspect --model PATH [--transformer FILE] [--text-encoder FILE]\n"
               "                          [--vae FILE] [--model-type TYPE] [--tensors] [--config]\n\n"
               "Checks a checkpoint and prints its components: class, key layout, dtypes,\n"
               "tensor and parameter counts, bytes, and the totals. Every weight file header is\n"
               "read and validated; a broken checkpoint exits with status 1 and says what is\n"
               "wrong.\n\n"
               "  --model PATH  a diffusers model folder (model_index.json + component folders),\n"
               "                or one component: a .safetensors file (bf16/fp16/fp32, fp8, scaled\n"
               "                fp8, comfy_quant), a .gguf file, a *.safetensors.index.json\n"
               "                or a component folder (transformer, text encoder or VAE; the kind\n"
               "                is detected from the tensor names)\n"
               "  --transformer FILE, --text-encoder FILE, --vae FILE\n"
               "                component files that replace the folder's (or, all three without\n"
               "                --model, make up the model), exactly as `generate` takes them\n"
               "  --model-type TYPE  what the files are when the weights cannot tell\n"
               "  --tensors     also list every tensor (canonical name, storage type: dtype,\n"
               "                F8_E4M3*scale, Q4_K, ...; logical shape)\n"
               "  --config      also print each weight component's configuration (JSON)\n"
               "  -h, --help    this text\n");
}

std::string human_count(uint64_t n) {
  char buf[32];
  if (n >= 1000000000ull)
    std::snprintf(buf, sizeof buf, "%.2fB", n / 1e9);
  else if (n >= 1000000ull)
    std::snprintf(buf, sizeof buf, "%.2fM", n / 1e6);
  else if (n >= 1000ull)
    std::snprintf(buf, sizeof buf, "%.2fK", n / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(n));
  return buf;
}

std::string human_bytes(uint64_t n) {
  char buf[32];
  if (n >= (1ull << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", n / double(1ull << 30));
  else if (n >= (1ull << 20))
    std::snprintf(buf, sizeof buf, "%.2f MiB", n / double(1ull << 20));
  else if (n >= (1ull << 10))
    std::snprintf(buf, sizeof buf, "%.2f KiB", n / double(1ull << 10));
  else
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  return buf;
}

struct Summary {
  uint64_t params = 0, bytes = 0;
  std::string dtypes;
};

// Over the per-tensor formats (io/tensor_format.h): logical parameter counts, stored bytes (scales
// not counted), storage types ("BF16", "F8_E4M3*scale", "Q4_K", ...).
Summary summarize(const FileFormat& f) {
  Summary out;
  std::map<std::string, size_t> dt;
  for (const auto& [name, t] : f.tensors) {
    int64_t n = 1;
    for (const int64_t d : t.shape) n *= d;
    out.params += static_cast<uint64_t>(n);
    out.bytes += t.stored_bytes();
    ++dt[t.storage()];
  }
  for (const auto& [d, n] : dt) {
    if (!out.dtypes.empty()) out.dtypes += ",";
    out.dtypes += d;
    if (dt.size() > 1) {  // appended piecewise: GCC 12 -O3 false -Wrestrict
      out.dtypes += '(';
      out.dtypes += std::to_string(n);
      out.dtypes += ')';
    }
  }
  return out;
}

void print_tensors(FILE* out, const FileFormat& f) {
  for (const auto& [name, t] : f.tensors)
    std::fprintf(out, "    %-60s %-14s %s\n", name.c_str(), t.storage().c_str(),
                 shape_to_string(t.shape).c_str());
}

constexpr const char* kRow = "%-13s %-36s %-20s %8s %22s %12s  %s\n";

}  // namespace

int inspect_main(int argc, char** argv, FILE* out, FILE* err) {
  std::string model;
  ModelSources sources;
  bool tensors = false, config = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      usage(out);
      return 0;
    }
    if (a == "--model") {
      if (i + 1 >= argc) {
        std::fprintf(err, "qwen-image inspect: --model needs a path\n\n");
        usage(err);
        return 2;
      }
      model = argv[++i];
    } else if (a.rfind("--model=", 0) == 0) {
      model = a.substr(8);
    } else if (a == "--transformer" || a == "--text-encoder" || a == "--vae" ||
               a == "--model-type") {
      if (i + 1 >= argc) {
        std::fprintf(err, "qwen-image inspect: %s needs a value\n\n", a.c_str());
        usage(err);
        return 2;
      }
      std::string& dst = a == "--transformer"    ? sources.transformer
                         : a == "--text-encoder" ? sources.text_encoder
                         : a == "--vae"          ? sources.vae
                                                 : sources.model_type;
      dst = argv[++i];
    } else if (a == "--tensors") {
      tensors = true;
    } else if (a == "--config") {
      config = true;
    } else {
      std::fprintf(err, "qwen-image inspect: unknown option '%s'\n\n", a.c_str());
      usage(err);
      return 2;
    }
  }
  if (model.empty() && !sources.has_files()) {
    std::fprintf(err, "qwen-image inspect: --model PATH (or component files) is required\n\n");
    usage(err);
    return 2;
  }
  try {
    uint64_t total_params = 0, total_bytes = 0;
    auto row = [&](const std::string& name, const std::string& cls, const ComponentWeights& w) {
      const Summary s = summarize(w.format);
      total_params += s.params;
      total_bytes += s.bytes;
      std::string layout = w.layout;
      if (w.kind == ComponentKind::Transformer && w.zero_cond_t) layout += ",zero_cond_t";
      std::fprintf(out, kRow, name.c_str(), cls.c_str(), layout.c_str(),
                   std::to_string(w.format.tensors.size()).c_str(),
                   (std::to_string(s.params) + " (" + human_count(s.params) + ")").c_str(),
                   human_bytes(s.bytes).c_str(), s.dtypes.c_str());
    };
    auto details = [&](const ComponentWeights& w) {
      std::fprintf(out, "  format: %s\n", w.format.summary().c_str());
      if (config) std::fprintf(out, "  config: %s\n", w.config.dump().c_str());
      if (tensors) print_tensors(out, w.format);
    };
    if (is_model_folder(model) || sources.has_files()) {
      // The engine's loading path (ModelFolder over ModelSources): what inspect accepts, the
      // engine loads.
      if (!model.empty() && !is_model_folder(model))
        throw CheckpointError(model + ": --model with component files must be a diffusers folder");
      sources.folder = model;
      const ModelFolder m = ModelFolder::open(sources);
      // Open every weight component first so that a broken file fails before any output.
      std::vector<std::pair<const Component*, ComponentWeights>> weights;
      for (const auto& c : m.components())
        if (c.has_weights) weights.emplace_back(&c, m.weights(c.name));
      std::fprintf(out, "model: %s\npipeline: %s\n", sources.label().c_str(),
                   m.pipeline_class().c_str());
      if (!m.model_type().empty()) std::fprintf(out, "model type: %s\n", m.model_type().c_str());
      for (const char* n : {"transformer", "text_encoder", "vae"})
        if (const std::string f = m.file_of(n); !f.empty())
          std::fprintf(out, "%s file: %s\n", n, f.c_str());
      std::fprintf(out, "\n");
      std::fprintf(out, kRow, "component", "class", "layout", "tensors", "parameters", "bytes",
                   "dtypes");
      for (const auto& c : m.components()) {
        const ComponentWeights* w = nullptr;
        for (const auto& [pc, pw] : weights)
          if (pc == &c) w = &pw;
        if (w) {
          row(c.name, c.class_name, *w);
          details(*w);
        } else {
          std::fprintf(out, kRow, c.name.c_str(), c.class_name.c_str(), "-", "-", "-", "-", "-");
        }
      }
    } else {
      const ComponentWeights w = open_component(model);
      std::fprintf(out, "model: %s\nsingle component: %s\n\n", model.c_str(),
                   component_kind_name(w.kind));
      std::fprintf(out, kRow, "component", "class", "layout", "tensors", "parameters", "bytes",
                   "dtypes");
      const std::string cls = w.config.value(
          "_class_name",
          w.kind == ComponentKind::TextEncoder ? "Qwen2_5_VLForConditionalGeneration" : "");
      row(component_kind_name(w.kind), cls, w);
      details(w);
    }
    std::fprintf(out, "\ntotal: %llu parameters (%s), %llu bytes (%s)\n",
                 static_cast<unsigned long long>(total_params), human_count(total_params).c_str(),
                 static_cast<unsigned long long>(total_bytes), human_bytes(total_bytes).c_str());
    return 0;
  } catch (const CheckpointError& e) {
    std::fprintf(err, "qwen-image inspect: broken checkpoint: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(err, "qwen-image inspect: %s\n", e.what());
    return 1;
  }
}

}  // namespace qwen::io
