// `qwen-image plan`: the memory planner (daemon/plan) on a model's weight files, without loading a
// weight or needing a GPU: the placement of every component and the predicted peak for a card of
// --vram bytes. Exit status 0 when it fits, 1 when nothing fits (with advice), 2 on usage errors.
#include <cstdio>
#include <stdexcept>
#include <string>

#include "cli/commands.h"
#include "io/checkpoint.h"
#include "plan/memory_plan.h"
#include "plan/model_sizes.h"

namespace {

void print_usage(FILE* out) {
  std::fprintf(
      out,
      "usage: qwen-image plan --model DIR [--transformer FILE ...] --vram SIZE [options]\n"
      "       qwen-image plan --list-modes\n\n"
      "Prints where each component would live and the predicted peak device memory; reads only\n"
      "the weight files' headers (no weight is loaded, no GPU needed).\n\n"
      "  --model DIR              diffusers model folder\n"
      "  --transformer FILE       transformer weights (bf16, fp8 or GGUF), replacing DIR's\n"
      "  --text-encoder FILE      text encoder weights\n"
      "  --vae FILE               VAE weights\n"
      "  --model-type TYPE        what the files are when their weights cannot tell\n"
      "  --vram SIZE              device memory, e.g. 24G, 16GB, 12288M\n"
      "  --width W, --height H    image size (default 1024x1024)\n"
      "  --batch N                images per job (default 1)\n"
      "  --steps S                denoising steps (default 50)\n"
      "  --no-cfg                 plan without true CFG\n"
      "  --edit-images N          edit models: condition images (default 1 for edit models;\n"
      "                           Qwen-Image-2.1: references, up to 10)\n"
      "  --no-kv-cache            Qwen-Image-2.1: plan without the KV cache\n"
      "  --layers N               Qwen-Image-Layered decompose: N layers (N + 2 frames of\n"
      "                           the image size in the sequence; default 4 at 640x640 for\n"
      "                           Layered models)\n"
      "  --dtype bfloat16|float32 compute dtype (default bfloat16)\n"
      "  --memory MODE            evaluate a named mode instead of auto\n"
      "  --quantize none|fp8      plan the transformer quantised to fp8 as it loads\n"
      "  --list-modes             print the mode names, one per line\n");
}

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

int64_t parse_count(const std::string& opt, const std::string& v, int64_t lo, int64_t hi) {
  try {
    size_t used = 0;
    const long long x = std::stoll(v, &used);
    if (used != v.size() || x < lo || x > hi) throw std::invalid_argument(v);
    return x;
  } catch (const std::exception&) {
    throw UsageError(opt + " expects an integer in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "], got '" + v + "'");
  }
}

}  // namespace

int qwen::cli::cmd_plan(int argc, char** argv) {
  io::ModelSources sources;
  std::string vram, mode = "auto", dtype = "bfloat16";
  io::QuantizeMode quantize = io::QuantizeMode::None;
  plan::JobShape job;
  int64_t edit_images = -1;
  int64_t layers = -1;
  bool size_given = false;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw UsageError(a + " needs a value");
        return argv[++i];
      };
      if (a == "--help" || a == "-h") {
        print_usage(stdout);
        return 0;
      } else if (a == "--list-modes") {
        for (const auto& n : plan::memory_mode_names()) std::printf("%s\n", n.c_str());
        return 0;
      } else if (a == "--model") {
        sources.folder = value();
      } else if (a == "--transformer") {
        sources.transformer = value();
      } else if (a == "--text-encoder") {
        sources.text_encoder = value();
      } else if (a == "--vae") {
        sources.vae = value();
      } else if (a == "--model-type") {
        sources.model_type = value();
      } else if (a == "--vram") {
        vram = value();
      } else if (a == "--width") {
        job.width = parse_count(a, value(), 16, 8192) / 16 * 16;
        size_given = true;
      } else if (a == "--height") {
        job.height = parse_count(a, value(), 16, 8192) / 16 * 16;
        size_given = true;
      } else if (a == "--batch") {
        job.batch = parse_count(a, value(), 1, 64);
      } else if (a == "--steps") {
        job.steps = parse_count(a, value(), 1, 1000);
      } else if (a == "--no-cfg") {
        job.cfg = false;
      } else if (a == "--layers") {
        layers = parse_count(a, value(), 2, 10);
      } else if (a == "--edit-images") {
        edit_images = parse_count(a, value(), 0, 10);
      } else if (a == "--no-kv-cache") {
        job.kv_cache = false;
      } else if (a == "--dtype") {
        dtype = value();
        if (dtype != "bfloat16" && dtype != "bf16" && dtype != "float32" && dtype != "fp32")
          throw UsageError("unknown dtype '" + dtype + "' (expected bfloat16 or float32)");
      } else if (a == "--quantize") {
        try {
          quantize = io::parse_quantize_mode(value());
        } catch (const std::invalid_argument& e) {
          throw UsageError("--quantize: " + std::string(e.what()));
        }
      } else if (a == "--memory") {
        mode = value();
        plan::check_memory_mode(mode);
      } else {
        throw UsageError("unknown option '" + a + "'");
      }
    }
    if (sources.folder.empty() && !sources.has_files())
      throw UsageError("no model given (--model DIR, or --transformer, --text-encoder and --vae)");
    if (vram.empty()) throw UsageError("--vram SIZE is required (e.g. --vram 24G)");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qwen-image plan: %s\n\n", e.what());
    print_usage(stderr);
    return 2;
  }
  try {
    const int64_t budget = plan::parse_size(vram);
    const auto folder = io::ModelFolder::open(sources);
    const int64_t dtype_bytes = (dtype == "float32" || dtype == "fp32") ? 4 : 2;
    const auto sizes = plan::model_sizes(folder, dtype_bytes, quantize);
    job.condition_images = edit_images >= 0 ? edit_images : (sizes.edit ? 1 : 0);
    // Decompose (issue #16): layers + 2 frames; a Layered model defaults to 4 layers at 640x640.
    const bool layered = folder.pipeline_class() == "QwenImageLayeredPipeline";
    if (layered && !size_given) job.width = job.height = 640;
    if (layers >= 0 || layered) job.frames = (layers >= 0 ? layers : 4) + 2;
    const auto p = plan::plan_memory(sizes, job, budget, mode);
    for (const auto& line : p.lines(sizes)) std::printf("%s\n", line.c_str());
    if (!p.fits) {
      std::fprintf(stderr, "qwen-image plan: does not fit: %s\n", p.advice.c_str());
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qwen-image plan: %s\n", e.what());
    return 1;
  }
}
