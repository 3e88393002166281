// `qwen-image generate | img2img | inpaint | edit | decompose`: run one job on a model folder
// (in-process, or through qwen-imaged with --daemon) and write PNGs.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "image/png.h"
#include "io/quantize_on_load.h"
#include "models/lora_info.h"
#include "pipelines/engine.h"
#include "plan/memory_plan.h"
#include "qwen_image/limits.h"
#if __has_include("cli/daemon_client.h")
#include "cli/daemon_client.h"
#define QWEN_HAVE_DAEMON_CLIENT 1
#endif

namespace fs = std::filesystem;

namespace {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Options {
  qwen::RunParams run;
  qwen::EngineOptions engine;
  std::string output;
  std::vector<std::string> image_paths;
  std::string mask_path;
  std::optional<qwen::PipelineKind> edit_pipeline;  // edit: --pipeline edit|edit-plus
  bool strength_given = false;
  bool steps_given = false;
  bool size_given = false;  // --width / --height (decompose: refused, --resolution sets the size)
  bool daemon = false;
  std::string instance;
  bool quiet = false;
};

void print_decompose_usage(FILE* out) {
  std::fprintf(out,
               "usage: qwen-image decompose --model DIR --image IN.png --prompt TEXT --output "
               "OUT.png [options]\n\n"
               "Splits IN.png into RGBA layers with a Qwen-Image-Layered model and writes\n"
               "OUT-0.png ... OUT-(N-1).png in the order the reference returns them: OUT-0 is the\n"
               "bottom (background) layer, each next one goes above it.\n\n"
               "  --model DIR              Qwen-Image-Layered diffusers folder\n"
               "  --image IN.png           the picture (gray, RGB or RGBA; no alpha = opaque)\n"
               "  --prompt TEXT            a description of the whole picture (required: the\n"
               "                           reference's automatic Qwen2.5-VL caption is not done)\n"
               "  --layers N               number of layers, 2..10 (default 4)\n"
               "  --resolution 640|1024    size bucket: the layers are about R x R pixels with\n"
               "                           the picture's aspect ratio, sides multiples of 32\n"
               "                           (default 640)\n"
               "  --negative-prompt TEXT   enables true CFG when the scale is > 1 (e.g. \" \")\n"
               "  --true-cfg-scale C       CFG scale (default 4.0; needs a negative prompt)\n"
               "  --cfg-normalize          rescale the CFG prediction to the conditional one's\n"
               "                           norm (the reference's cfg_normalize)\n"
               "  --steps S                denoising steps (default: the model's, 50; Qwen-Image-2.1\n"
               "                           40, its Turbo 8)\n"
               "  --seed X                 random seed (default 0)\n"
               "  --num-images K           decompositions per prompt (default 1)\n"
               "  --device, --dtype, --threads, --attention, --memory, --quantize,\n"
               "  --max-sequence-length,\n"
               "  --lora, --lora-mode, --fp8-matmul, --shift, --lightning: as for `qwen-image\n"
               "  generate`\n"
               "  --output OUT.png         layers go to OUT-0.png, OUT-1.png, ...\n"
               "  --daemon                 run through qwen-imaged instead of in-process\n"
               "  --instance NAME          daemon instance (default $QWEN_IMAGE_INSTANCE or "
               "'default')\n"
               "  --quiet                  no progress lines\n");
}

void print_usage(FILE* out, qwen::PipelineKind kind) {
  if (kind == qwen::PipelineKind::Decompose) return print_decompose_usage(out);
  const bool needs_image = kind != qwen::PipelineKind::Generate;
  const bool edit = kind == qwen::PipelineKind::Edit;
  std::fprintf(out,
               "usage: qwen-image %s --model DIR|--transformer F --text-encoder F --vae F --prompt TEXT%s%s --output OUT.png [options]\n\n",
               qwen::to_string(kind), needs_image ? " --image IN.png" : "",
               kind == qwen::PipelineKind::Inpaint ? " --mask MASK.png" : "");
  std::fprintf(out,
               "  --model DIR              diffusers model folder (Qwen-Image layout)\n"
               "  --transformer FILE       transformer weights (e.g. a ComfyUI single file),\n"
               "                           replacing DIR's; with --text-encoder and --vae\n"
               "                           no DIR is needed\n"
               "  --text-encoder FILE      Qwen2.5-VL text encoder weights\n"
               "  --vae FILE               VAE weights\n"
               "  --model-type TYPE        qwen-image, qwen-image-2512, qwen-image-edit,\n"
               "                           qwen-image-edit-2509, qwen-image-edit-2511: what\n"
               "                           the files are when their weights cannot tell\n"
               "  --prompt TEXT            prompt; repeat for a batch of prompts\n"
               "  --negative-prompt TEXT   negative prompt (one, or one per prompt); enables\n"
               "                           true CFG when the scale is > 1\n"
               "  --width W, --height H    output size in pixels, floored to multiples of 16\n"
               "                           (default 1024x1024)\n"
               "  --steps S                denoising steps (default: the model's, 50; Qwen-Image-2.1\n"
               "                           40, its Turbo 8)\n"
               "  --true-cfg-scale C       CFG scale (default 4.0; needs a negative prompt)\n"
               "  --seed X                 random seed (default 0)\n"
               "  --num-images K           images per prompt (default 1)\n"
               "  --device cpu|cuda[:N]    default: cuda when available, else cpu\n"
               "  --dtype float32|bfloat16 default: bfloat16 on cuda, float32 on cpu\n"
               "  --threads T              CPU threads (default: all cores)\n"
               "  --attention auto|cudnn|flash|efficient|math  CUDA attention kernel (default:\n"
               "                           $QWEN_SDPA_BACKEND, else auto = fastest exact one\n"
               "                           found by a start-up self-check)\n"
               "  --max-sequence-length N  prompt tokens kept (default 512, at most 1024)\n"
               "  --memory MODE            auto (default) or a mode of `qwen-image plan\n"
               "                           --list-modes`: where the text encoder and the\n"
               "                           transformer live (docs/memory.md)\n"
               "  --quantize none|fp8      fp8: quantise the transformer's block weights to fp8\n"
               "                           as they load (half the memory of bf16 files; files\n"
               "                           stored fp8 / GGUF stay as they are; docs/memory.md)\n"
               "  --lora FILE[:STRENGTH]   a LoRA on the transformer (strength default 1,\n"
               "                           negative subtracts); repeat for several. With\n"
               "                           --daemon a bare NAME is looked up in its lora_dir\n"
               "  --lora-mode side|merge   side branch (default) or merged working copy\n"
               "  --fp8-matmul auto|on|off fp8 weights multiply on fp8 tensor cores (inputs\n"
               "                           rounded to fp8 per token); auto (default): on a\n"
               "                           CUDA GPU of compute capability >= 8.9\n"
               "  --shift S                fixed time shift mu = ln S (Lightning: 3)\n"
               "  --lightning              Lightning defaults without a Lightning LoRA (merged\n"
               "                           checkpoints): 8 steps, CFG 1, shift 3 unless set.\n"
               "                           A LoRA named or tagged Lightning does the same\n"
               "                           (4 steps when its name says 4steps)\n"
               "  --no-kv-cache            Qwen-Image-2.1: recompute the text and reference\n"
               "                           tokens every step (default: cached after step 1)\n"
               "  --output-resolution N    Qwen-Image-2.1: default output side and reference\n"
               "                           area N x N (default 1024)\n");
  if (edit)
    std::fprintf(out,
                 "  --image IN.png           input image; repeat for several (edit-plus)\n"
                 "                           default size: ~1 MP with the image's aspect ratio\n"
                 "  --pipeline edit|edit-plus  default: the one model_index.json names;\n"
                 "                           several images need edit-plus\n"
                 "  --mask MASK.png          confine the edit to the white area (Edit-Inpaint;\n"
                 "                           one image, same size as the mask)\n"
                 "  --strength S             with --mask: how much to change, (0, 1] (default 1)\n"
                 "  --geometry reference|exact  reference (default): resize like diffusers;\n"
                 "                           exact: keep the aspect ratio, return the result on\n"
                 "                           the input's pixel grid (no drift)\n"
                 "  --vision-processor torchvision|pil  the Qwen2-VL image processor to follow:\n"
                 "                           torchvision (default, what diffusers loads) or\n"
                 "                           pil (transformers' Qwen2VLImageProcessorPil)\n");
  else if (needs_image)
    std::fprintf(out,
                 "  --image IN.png           input image\n"
                 "  --strength S             how much to change, (0, 1] (default 0.6)\n");
  if (kind == qwen::PipelineKind::Inpaint)
    std::fprintf(out, "  --mask MASK.png          white = repaint (same size as the image)\n");
  std::fprintf(out,
               "  --output OUT.png         one image: exactly OUT.png; several: OUT-0.png, ...\n"
               "  --daemon                 run through qwen-imaged instead of in-process\n"
               "  --instance NAME          daemon instance (default $QWEN_IMAGE_INSTANCE or "
               "'default')\n"
               "  --quiet                  no progress lines\n");
}

int parse_int(const std::string& opt, const std::string& v) {
  try {
    size_t used = 0;
    long long x = std::stoll(v, &used);
    if (used != v.size() || x < INT32_MIN || x > INT32_MAX) throw std::invalid_argument(v);
    return static_cast<int>(x);
  } catch (const std::exception&) {
    throw UsageError(opt + " expects an integer, got '" + v + "'");
  }
}

// Sizes: 0 would mean "the default" to the engine, so an explicit value must be positive.
int parse_positive(const std::string& opt, const std::string& v) {
  const int x = parse_int(opt, v);
  if (x <= 0) throw UsageError(opt + " must be a positive number of pixels, got " + v);
  return x;
}

int64_t parse_int64(const std::string& opt, const std::string& v) {
  try {
    size_t used = 0;
    long long x = std::stoll(v, &used);
    if (used != v.size()) throw std::invalid_argument(v);
    return x;
  } catch (const std::exception&) {
    throw UsageError(opt + " expects an integer, got '" + v + "'");
  }
}

float parse_float(const std::string& opt, const std::string& v) {
  try {
    size_t used = 0;
    float x = std::stof(v, &used);
    if (used != v.size() || !std::isfinite(x)) throw std::invalid_argument(v);
    return x;
  } catch (const std::exception&) {
    throw UsageError(opt + " expects a number, got '" + v + "'");
  }
}

// Returns nullopt when --help was asked for.
std::optional<Options> parse(int argc, char** argv, qwen::PipelineKind kind) {
  Options o;
  o.run.pipeline = kind;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(a + " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h")
      return std::nullopt;
    else if (a == "--model")
      o.engine.model_dir = value();
    else if (a == "--transformer")
      o.engine.transformer_file = value();
    else if (a == "--text-encoder")
      o.engine.text_encoder_file = value();
    else if (a == "--vae")
      o.engine.vae_file = value();
    else if (a == "--model-type")
      o.engine.model_type = value();
    else if (a == "--prompt")
      o.run.prompts.push_back(value());
    else if (a == "--negative-prompt")
      o.run.negative_prompts.push_back(value());
    else if (a == "--width") {
      o.run.width = parse_positive(a, value());
      o.size_given = true;
    } else if (a == "--height") {
      o.run.height = parse_positive(a, value());
      o.size_given = true;
    } else if (kind == qwen::PipelineKind::Decompose && a == "--layers")
      o.run.layers = parse_int(a, value());
    else if (kind == qwen::PipelineKind::Decompose && a == "--resolution")
      o.run.resolution = parse_int(a, value());
    else if (kind == qwen::PipelineKind::Decompose && a == "--cfg-normalize")
      o.run.cfg_normalize = true;
    else if (a == "--steps") {
      o.run.steps = parse_int(a, value());
      if (o.run.steps < 1) throw UsageError("--steps must be at least 1");
      o.steps_given = true;
    } else if (a == "--lora") {
      const auto [file, strength] = qwen::models::parse_lora_argument(value());
      if (file.empty()) throw UsageError("--lora needs a file name (FILE[:STRENGTH])");
      o.run.loras.push_back({file, strength});
    } else if (a == "--lora-mode") {
      const std::string v = value();
      if (v != "side" && v != "merge")
        throw UsageError("--lora-mode must be 'side' or 'merge', got '" + v + "'");
      o.engine.lora_mode = v;
    } else if (a == "--fp8-matmul") {  // issues #13/#15: models/fp8_matmul.h
      const std::string v = value();
      if (v != "auto" && v != "on" && v != "off")
        throw UsageError("--fp8-matmul must be auto, on or off, got '" + v + "'");
      o.engine.fp8_matmul = v;
    } else if (a == "--shift") {
      const float v = parse_float(a, value());
      if (!(v > 0)) throw UsageError("--shift must be a positive number");
      o.run.shift = v;
    } else if (a == "--lightning")
      o.run.lightning = true;
    else if (a == "--true-cfg-scale")
      o.run.true_cfg_scale = parse_float(a, value());
    else if (a == "--seed")
      o.run.seed = parse_int64(a, value());
    else if (a == "--num-images")
      o.run.num_images_per_prompt = parse_int(a, value());
    else if (a == "--max-sequence-length")
      o.run.max_sequence_length = parse_int(a, value());
    else if (a == "--device")
      o.engine.device = value();
    else if (a == "--dtype")
      o.engine.dtype = value();
    else if (a == "--threads")
      o.engine.threads = parse_int(a, value());
    else if (a == "--attention") {
      const std::string v = value();
      if (v != "auto" && v != "cudnn" && v != "flash" && v != "efficient" && v != "math")
        throw UsageError("--attention must be auto, cudnn, flash, efficient or math, got '" + v +
                         "'");
      o.engine.sdpa_backend = v;
    }
    else if (a == "--quantize") {  // quantise-on-load: io/quantize_on_load.h
      o.engine.quantize = value();
      try {
        qwen::io::parse_quantize_mode(o.engine.quantize);
      } catch (const std::invalid_argument& e) {
        throw UsageError("--quantize: " + std::string(e.what()));
      }
    }
    else if (a == "--memory") {  // issue #13: plan/memory_plan.h
      o.engine.memory = value();
      try {
        qwen::plan::check_memory_mode(o.engine.memory);
      } catch (const std::invalid_argument& e) {
        throw UsageError(e.what());
      }
    } else if (a == "--output" || a == "-o")
      o.output = value();
    else if (a == "--daemon")
      o.daemon = true;
    else if (a == "--instance")
      o.instance = value();
    else if (a == "--quiet" || a == "-q")
      o.quiet = true;
    else if ((kind == qwen::PipelineKind::Generate || kind == qwen::PipelineKind::Edit) &&
             a == "--no-kv-cache")  // Qwen-Image-2.1 (issue #15): the uncached path
      o.run.kv_cache = false;
    else if ((kind == qwen::PipelineKind::Generate || kind == qwen::PipelineKind::Edit) &&
             a == "--output-resolution")  // Qwen-Image-2.1: the reference's output_resolution
      o.run.output_resolution = parse_int(a, value());
    else if (kind != qwen::PipelineKind::Generate && a == "--image") {
      o.image_paths.push_back(value());
      if (kind != qwen::PipelineKind::Edit && o.image_paths.size() > 1)
        throw UsageError("--image can be given once");
    } else if (kind != qwen::PipelineKind::Generate && kind != qwen::PipelineKind::Decompose &&
               a == "--strength") {
      o.run.strength = parse_float(a, value());
      o.strength_given = true;
    } else if ((kind == qwen::PipelineKind::Inpaint || kind == qwen::PipelineKind::Edit) &&
               a == "--mask")
      o.mask_path = value();
    else if (kind == qwen::PipelineKind::Edit && a == "--pipeline") {
      const std::string v = value();
      if (v == "edit")
        o.edit_pipeline = qwen::PipelineKind::Edit;
      else if (v == "edit-plus")
        o.edit_pipeline = qwen::PipelineKind::EditPlus;
      else
        throw UsageError("--pipeline must be 'edit' or 'edit-plus', got '" + v + "'");
    } else if (kind == qwen::PipelineKind::Edit && a == "--vision-processor") {
      const std::string v = value();
      if (v != "torchvision" && v != "pil")
        throw UsageError("--vision-processor must be 'torchvision' or 'pil', got '" + v + "'");
      o.engine.vision_processor = v;
    } else if (kind == qwen::PipelineKind::Edit && a == "--geometry") {
      const std::string v = value();
      if (v == "reference")
        o.run.geometry = qwen::GeometryMode::Reference;
      else if (v == "exact")
        o.run.geometry = qwen::GeometryMode::Exact;
      else
        throw UsageError("--geometry must be 'reference' or 'exact', got '" + v + "'");
    } else
      throw UsageError("unknown option '" + a + "'");
  }
  if (o.run.prompts.empty()) throw UsageError("--prompt is required");
  if (o.output.empty()) throw UsageError("--output is required");
  const bool files = !o.engine.transformer_file.empty() || !o.engine.text_encoder_file.empty() ||
                     !o.engine.vae_file.empty() || !o.engine.model_type.empty();
  if (o.daemon && files)
    throw UsageError(
        "--transformer/--text-encoder/--vae/--model-type load a model in-process; with --daemon, "
        "name the files in the daemon's config (docs/daemon.md) and pick the model with --model");
  if (o.daemon && !o.engine.vision_processor.empty())
    throw UsageError(
        "--vision-processor applies to an in-process model; with --daemon, set vision_processor "
        "in the daemon's config (docs/daemon.md)");
  if (o.daemon && !o.engine.quantize.empty())
    throw UsageError(
        "--quantize applies to an in-process model; with --daemon, set quantize in the daemon's "
        "config (docs/daemon.md)");
  if (o.daemon && !o.engine.memory.empty())
    throw UsageError(
        "--memory applies to an in-process model; with --daemon, set memory in the daemon's "
        "config (docs/memory.md)");
  // One set of limits (qwen_image/limits.h), the same in-process and through the daemon.
  if (o.run.max_sequence_length < 1 || o.run.max_sequence_length > qwen::ipc::kMaxSequenceLength)
    throw UsageError("--max-sequence-length must be 1.." +
                     std::to_string(qwen::ipc::kMaxSequenceLength) + " (got " +
                     std::to_string(o.run.max_sequence_length) + ")");
  if (o.steps_given && (o.run.steps < 1 || o.run.steps > qwen::ipc::kMaxSteps))
    throw UsageError("--steps must be 1.." + std::to_string(qwen::ipc::kMaxSteps) + " (got " +
                     std::to_string(o.run.steps) + ")");
  // --no-kv-cache and --output-resolution travel in the job with --daemon (protocol version 4).
  if (o.run.output_resolution < qwen::ipc::kMinOutputResolution ||
      o.run.output_resolution > qwen::ipc::kMaxOutputResolution)
    throw UsageError("--output-resolution must be " +
                     std::to_string(qwen::ipc::kMinOutputResolution) + ".." +
                     std::to_string(qwen::ipc::kMaxOutputResolution) + " (got " +
                     std::to_string(o.run.output_resolution) + ")");
  if (o.daemon && !o.engine.sdpa_backend.empty())
    throw UsageError(
        "--attention applies to an in-process model; with --daemon, set attention in the "
        "daemon's config (docs/daemon.md)");
  if (o.engine.model_dir.empty() && !o.daemon && !files)
    throw UsageError("--model DIR (or --transformer, --text-encoder and --vae files) is required");
  if (kind != qwen::PipelineKind::Generate && o.image_paths.empty())
    throw UsageError("--image is required");
  if (kind == qwen::PipelineKind::Inpaint && o.mask_path.empty())
    throw UsageError("--mask is required");
  if (kind == qwen::PipelineKind::Decompose) {
    // Checked here too so that a bad value is a usage error before anything is loaded (the
    // engine refuses them with the same words).
    if (o.size_given)
      throw UsageError(
          "decompose takes no --width/--height: --resolution 640|1024 sets the size (the "
          "picture's aspect ratio at about R x R pixels)");
    if (o.run.layers < 2 || o.run.layers > 10)
      throw UsageError("--layers must be between 2 and 10 (got " + std::to_string(o.run.layers) +
                       ")");
    if (o.run.resolution != 640 && o.run.resolution != 1024)
      throw UsageError("--resolution must be 640 or 1024 (got " + std::to_string(o.run.resolution) +
                       ")");
    for (const auto& prompt : o.run.prompts)
      if (prompt.find_first_not_of(" \t\r\n") == std::string::npos)
        throw UsageError(
            "decompose needs a --prompt that describes the whole picture: the reference's "
            "automatic caption (Qwen2.5-VL text generation) is not done here");
  }
  if (kind == qwen::PipelineKind::Edit) {
    if (o.mask_path.empty() && o.strength_given)
      throw UsageError("--strength applies to an edit with --mask only");
    if (!o.mask_path.empty()) {
      if (o.edit_pipeline == qwen::PipelineKind::EditPlus)
        throw UsageError("--mask works with the edit pipeline only (Edit-Inpaint), not edit-plus");
      if (o.image_paths.size() > 1) throw UsageError("--mask takes exactly one --image");
      if (!o.strength_given) o.run.strength = 1.0f;  // the reference's Edit-Inpaint default
      o.run.pipeline = qwen::PipelineKind::EditInpaint;
    } else if (o.edit_pipeline == qwen::PipelineKind::Edit && o.image_paths.size() > 1) {
      throw UsageError("the edit pipeline takes one --image; use --pipeline edit-plus for " +
                       std::to_string(o.image_paths.size()));
    } else if (o.edit_pipeline) {
      o.run.pipeline = *o.edit_pipeline;
    }
  }
  if (o.engine.threads < 0) throw UsageError("--threads must be >= 0");
  if (o.daemon && !o.engine.fp8_matmul.empty())
    throw UsageError(
        "--fp8-matmul is the daemon's setting with --daemon (fp8_matmul in daemon.conf "
        "or qwen-imaged --fp8-matmul); drop it here");
  if (o.daemon && !o.engine.lora_mode.empty())
    throw UsageError(
        "--lora-mode is the daemon's setting with --daemon (lora_mode in daemon.conf "
        "or qwen-imaged --lora-mode); drop it here");
  // Without --steps / --true-cfg-scale / --shift the engine picks them, in-process and through the
  // daemon alike (protocol version 5 sends "the model's default"): the model's own, or 4 or 8
  // steps, CFG 1 and shift 3 for a Lightning LoRA (by name or metadata, also one of the daemon's
  // lora_dir) or --lightning (QwenEngine::run).
  if (!o.steps_given) o.run.steps = 0;
  return o;
}

// One image: exactly `output`; several: <stem>-<i><ext> (ext .png when `output` has none).
std::vector<std::string> output_paths(const std::string& output, size_t n) {
  if (n == 1) return {output};
  fs::path p(output);
  std::string ext = p.has_extension() ? p.extension().string() : ".png";
  fs::path base = p.parent_path() / p.stem();
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) out.push_back(base.string() + "-" + std::to_string(i) + ext);
  return out;
}

// Fails early (before loading anything) when an output file could not be written.
void check_writable(const std::string& path) {
  const fs::path p(path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw std::runtime_error("cannot write '" + path + "': folder '" + dir.string() +
                             "' does not exist");
  if (fs::is_directory(p, ec))
    throw std::runtime_error("cannot write '" + path + "': it is a folder");
  const bool existed = fs::exists(p, ec);
  {
    std::ofstream f(p, std::ios::binary | std::ios::app);
    if (!f) throw std::runtime_error("cannot write '" + path + "': permission denied");
  }
  if (!existed) fs::remove(p, ec);
}

qwen::ImageU8 load_image(const std::string& path, const char* what) {
  try {
    return qwen::read_png(path);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("cannot read the ") + what + " '" + path +
                             "': " + e.what());
  }
}

int run_command(int argc, char** argv, qwen::PipelineKind kind) {
  const std::string name = qwen::to_string(kind);
  std::optional<Options> parsed;
  try {
    parsed = parse(argc, argv, kind);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "qwen-image %s: %s\n\n", name.c_str(), e.what());
    print_usage(stderr, kind);
    return 2;
  }
  if (!parsed) {
    print_usage(stdout, kind);
    return 0;
  }
  Options& o = *parsed;
  try {
    // Decompose: `layers` RGBA images per batch entry (batch entry major); always numbered.
    const bool decompose = kind == qwen::PipelineKind::Decompose;
    const size_t n_images = o.run.prompts.size() *
                            static_cast<size_t>(std::max(1, o.run.num_images_per_prompt)) *
                            static_cast<size_t>(decompose ? o.run.layers : 1);
    const auto paths = output_paths(o.output, n_images);
    for (const auto& p : paths) check_writable(p);
    for (const auto& path : o.image_paths) o.run.images.push_back(load_image(path, "input image"));
    if (!o.mask_path.empty()) o.run.mask = load_image(o.mask_path, "mask");

    // Edit without --pipeline / --mask: the model's own edit pipeline (edit_pipeline_for), chosen
    // by the daemon ("edit-auto") or below once the model is loaded.
    const bool edit_auto =
        kind == qwen::PipelineKind::Edit && o.mask_path.empty() && !o.edit_pipeline;

    auto start = std::chrono::steady_clock::now();
    auto last = start;
    qwen::ProgressFn progress = [&](const qwen::ProgressInfo& info) {
      if (!o.quiet) {
        auto now = std::chrono::steady_clock::now();
        const double step_s = std::chrono::duration<double>(now - last).count();
        const double total_s = std::chrono::duration<double>(now - start).count();
        std::fprintf(stderr, "step %d/%d  %.2f s/step  %.1f s\n", info.step, info.total, step_s,
                     total_s);
        last = now;
      }
      return true;
    };

    std::vector<qwen::ImageU8> images;
    if (o.daemon) {
#ifdef QWEN_HAVE_DAEMON_CLIENT
      images = qwen::cli::run_via_daemon(o.run, o.instance, progress, o.engine.model_dir,
                                         edit_auto ? "edit-auto" : "");
#else
      throw std::runtime_error("--daemon is not available in this build");
#endif
    } else {
      if (!o.quiet)
        std::fprintf(stderr, "loading %s ...\n",
                     (o.engine.model_dir.empty() ? o.engine.transformer_file : o.engine.model_dir)
                         .c_str());
      // The engine's information lines (attention backend, load rates) follow --quiet.
      o.engine.log = [quiet = o.quiet](const std::string& m) {
        if (!quiet) std::fprintf(stderr, "%s\n", m.c_str());
      };
      auto engine = qwen::Engine::open(o.engine);
      if (!o.quiet) {
        const auto& info = engine->info();
        std::fprintf(
            stderr, "loaded %s (%.2f B parameters) on %s as %s in %.1f s\n",
            info.pipeline_class.c_str(), info.parameters / 1e9, info.device.c_str(),
            info.dtype.c_str(),
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      }
      if (edit_auto)
        o.run.pipeline =
            qwen::edit_pipeline_for(engine->info().default_pipeline, o.run.images.size());
      start = last = std::chrono::steady_clock::now();
      images = engine->run(o.run, progress);
    }
    if (images.size() != paths.size())
      throw std::runtime_error("the engine returned " + std::to_string(images.size()) +
                               " images, expected " + std::to_string(paths.size()));
    for (size_t i = 0; i < images.size(); ++i) {
      qwen::write_png(paths[i], images[i]);
      std::printf("%s\n", paths[i].c_str());
    }
    return 0;
  } catch (const qwen::CancelledError& e) {
    std::fprintf(stderr, "qwen-image %s: cancelled\n", name.c_str());
    return 130;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qwen-image %s: error: %s\n", name.c_str(), e.what());
    return 1;
  }
}

}  // namespace

int qwen::cli::cmd_generate(int argc, char** argv) {
  return run_command(argc, argv, qwen::PipelineKind::Generate);
}
int qwen::cli::cmd_img2img(int argc, char** argv) {
  return run_command(argc, argv, qwen::PipelineKind::Img2Img);
}
int qwen::cli::cmd_inpaint(int argc, char** argv) {
  return run_command(argc, argv, qwen::PipelineKind::Inpaint);
}
int qwen::cli::cmd_edit(int argc, char** argv) {
  return run_command(argc, argv, qwen::PipelineKind::Edit);
}
int qwen::cli::cmd_decompose(int argc, char** argv) {
  return run_command(argc, argv, qwen::PipelineKind::Decompose);
}
