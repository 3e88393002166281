#include "pipelines/engine.h"

#include <ATen/DeviceAccelerator.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "io/checkpoint.h"
#include "models/attention.h"
#include "models/fp8_matmul.h"
#include "models/linear.h"
#include "models/weights.h"
#include "pipelines/engine_impl.h"
#include "pipelines/engine_qwen21.h"
#include "pipelines/image_latents.h"
#include "pipelines/image_processing.h"
#include "pipelines/latents.h"
#include "pipelines/pipeline_t2i.h"
#include "pipelines/prompt_encoding.h"
#include "qwen_image/limits.h"

namespace fs = std::filesystem;

namespace qwen {

void set_torch_threads(int threads) {
  if (threads < 0) throw EngineError("thread count must be >= 0 (0 = all cores)");
  int n = threads;
  if (n == 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(n);
}

std::unique_ptr<Engine> Engine::open(const EngineOptions& options) {
  try {
    // Qwen-Image-2.1 folders run on their own engine (engine_qwen21.cpp, issue #15).
    if (pipelines::is_qwen21_model(options))
      return std::make_unique<pipelines::Qwen21Engine>(options);
    return std::make_unique<pipelines::QwenEngine>(options);
  } catch (...) {
    // A failed load (out of memory part-way, broken file) has freed its tensors while unwinding;
    // the allocator's cached blocks go back to the driver too (issue #13).
    pipelines::release_cached_memory();
    throw;
  }
}

}  // namespace qwen

namespace qwen::pipelines {

namespace {

// One set of limits (qwen_image/limits.h): the daemon rejects what these refuse at submission.
constexpr int kMaxSide = ipc::kMaxOutputSide;
constexpr int64_t kMaxPixels = ipc::kMaxOutputPixels;
constexpr int kMaxSteps = ipc::kMaxSteps;
constexpr int64_t kMaxImages = 64;

int64_t dtype_bytes(torch::Dtype d) { return static_cast<int64_t>(c10::elementSize(d)); }

}  // namespace

const char* dtype_name(torch::Dtype dtype) {
  switch (dtype) {
    case torch::kFloat32:
      return "float32";
    case torch::kBFloat16:
      return "bfloat16";
    case torch::kFloat16:
      return "float16";
    default:
      return "other";
  }
}

torch::Device resolve_device(const std::string& device) {
  if (device.empty())
    return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0)
                                       : torch::Device(torch::kCPU);
  if (device == "cpu") return torch::kCPU;
  if (device == "cuda" || device.rfind("cuda:", 0) == 0) {
    if (!torch::cuda::is_available())
      throw EngineError(
          "device '" + device +
          "' requested but CUDA is not available (no GPU or driver); use --device cpu");
    int index = 0;
    if (device.size() > 5) {
      try {
        size_t used = 0;
        index = std::stoi(device.substr(5), &used);
        if (used != device.size() - 5) throw std::invalid_argument("trailing");
      } catch (const std::exception&) {
        throw EngineError("bad device '" + device + "' (expected cpu, cuda or cuda:N)");
      }
    }
    if (index < 0 || index >= static_cast<int>(torch::cuda::device_count()))
      throw EngineError("device '" + device + "' does not exist (" +
                        std::to_string(torch::cuda::device_count()) + " CUDA devices)");
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw EngineError("unknown device '" + device + "' (expected cpu, cuda or cuda:N)");
}

torch::Dtype resolve_dtype(const std::string& dtype, const torch::Device& device) {
  if (dtype.empty()) return device.is_cuda() ? torch::kBFloat16 : torch::kFloat32;
  if (dtype == "float32" || dtype == "fp32") return torch::kFloat32;
  if (dtype == "bfloat16" || dtype == "bf16") return torch::kBFloat16;
  throw EngineError("unknown dtype '" + dtype + "' (expected float32 or bfloat16)");
}

ResolvedParams resolve_params(const RunParams& in) {
  ResolvedParams p;
  if (in.prompts.empty()) throw EngineError("no prompt given");
  p.prompts = in.prompts;
  auto side = [](int v, const char* name) -> int64_t {
    if (v == 0) return 1024;
    if (v < ipc::kMinOutputSide)
      throw EngineError(std::string(name) + " must be at least " +
                        std::to_string(ipc::kMinOutputSide) + " pixels (got " + std::to_string(v) +
                        ")");
    if (v > kMaxSide)
      throw EngineError(std::string(name) + " " + std::to_string(v) + " is too large (max " +
                        std::to_string(kMaxSide) + " pixels)");
    return floor_to_16(v);
  };
  p.width = side(in.width, "width");
  p.height = side(in.height, "height");
  p.width_given = in.width != 0;
  p.height_given = in.height != 0;
  if (p.width * p.height > kMaxPixels)
    throw EngineError("image of " + std::to_string(p.width) + "x" + std::to_string(p.height) +
                      " pixels is too large (max 64 megapixels)");
  if (in.steps < 1)
    throw EngineError("steps must be at least 1 (got " + std::to_string(in.steps) + ")");
  if (in.steps > kMaxSteps)
    throw EngineError("steps " + std::to_string(in.steps) + " is too many (max " +
                      std::to_string(kMaxSteps) + ")");
  p.steps = in.steps;
  const float cfg = in.true_cfg_scale.value_or(4.0f);
  if (!std::isfinite(cfg) || cfg < 0)
    throw EngineError("true CFG scale must be a finite number >= 0 (got " + std::to_string(cfg) +
                      ")");
  p.true_cfg_scale = static_cast<double>(cfg);
  if (in.num_images_per_prompt < 1) throw EngineError("images per prompt must be at least 1");
  p.images_per_prompt = in.num_images_per_prompt;
  if (static_cast<int64_t>(in.prompts.size()) * p.images_per_prompt > kMaxImages)
    throw EngineError("at most " + std::to_string(kMaxImages) + " images per job");
  const auto& neg = in.negative_prompts;
  if (!neg.empty() && neg.size() != 1 && neg.size() != in.prompts.size())
    throw EngineError("give one negative prompt, or one per prompt (" +
                      std::to_string(in.prompts.size()) + "), not " + std::to_string(neg.size()));
  // The reference: CFG only with a negative prompt (even " ") and a scale > 1.
  p.do_cfg = !neg.empty() && p.true_cfg_scale > 1.0;
  if (p.do_cfg) {
    p.negative_prompts =
        neg.size() == 1 ? std::vector<std::string>(in.prompts.size(), neg[0]) : neg;
  }
  if (!(in.strength > 0.0f && in.strength <= 1.0f))
    throw EngineError("strength must be in (0, 1] (got " + std::to_string(in.strength) + ")");
  p.strength = strength_from_float(in.strength);
  if (in.max_sequence_length < 1 || in.max_sequence_length > ipc::kMaxSequenceLength)
    throw EngineError("max_sequence_length must be in [1, " +
                      std::to_string(ipc::kMaxSequenceLength) + "], got " +
                      std::to_string(in.max_sequence_length));
  p.max_sequence_length = in.max_sequence_length;
  return p;
}

template <typename F>
auto QwenEngine::load_component(const std::string& component, F&& load) -> decltype(load()) {
  // The transformer, the VAE and the text encoder, in that order (the daemon's job phase).
  if (options_.on_load) options_.on_load(component, int(info_.loads.size()) + 1, 3);
  models::LoadMeter meter;
  auto result = with_context(component, std::forward<F>(load));
  info_.loads.push_back({component, meter.bytes(), meter.seconds()});
  log(component + ": " + meter.summary(device_));
  return result;
}

QwenEngine::QwenEngine(const EngineOptions& options) : options_(options) {
  // Inference mode for everything the engine does (loading here, jobs in run()): no autograd
  // bookkeeping (version counters, views tracking) on any tensor; the parameters it loads are
  // inference tensors.
  c10::InferenceMode inference;
  // The one loading path (io::ModelFolder over io::ModelSources): a diffusers folder, component
  // files replacing its weights, or the three component files alone; `inspect` reads the same.
  io::ModelSources sources;
  sources.folder = options.model_dir;
  sources.transformer = options.transformer_file;
  sources.text_encoder = options.text_encoder_file;
  sources.vae = options.vae_file;
  sources.model_type = options.model_type;
  if (sources.folder.empty() && !sources.has_files())
    throw EngineError("no model given (a model folder, or --transformer, --text-encoder and --vae files)");
  if (!options.lora_mode.empty() && options.lora_mode != "side" && options.lora_mode != "merge")
    throw EngineError("lora_mode '" + options.lora_mode + "' is not one of side, merge");
  const io::QuantizeMode quantize = engine_quantize_mode(options.quantize);
  // Which Qwen2-VL image processor the edit pipelines reproduce (image/vision_processor.h): the
  // torchvision one a diffusers from_pretrained gives (default), or the PIL one.
  VisionBackend vision_backend = VisionBackend::Torchvision;
  if (!options.vision_processor.empty()) {
    try {
      vision_backend = parse_vision_backend(options.vision_processor);
    } catch (const ImageError& e) {
      throw EngineError(e.what());
    }
  }
  // fp8 tensor-core matmuls (models/fp8_matmul.h): checked now, applied once the weights are in.
  const models::Fp8MatmulMode fp8_mode = [&] {
    try {
      return models::parse_fp8_matmul_mode(options.fp8_matmul);
    } catch (const std::invalid_argument& e) {
      throw EngineError(e.what());
    }
  }();
  const io::ModelFolder model = with_context("model", [&] { return io::ModelFolder::open(sources); });
  info_.model_dir = sources.label();
  info_.model_type = model.model_type();
  info_.pipeline_class = model.pipeline_class();
  const std::string index_path = model.path() + "/model_index.json";
  if (info_.pipeline_class == "QwenImagePipeline" ||
      info_.pipeline_class == "QwenImageImg2ImgPipeline" ||
      info_.pipeline_class == "QwenImageInpaintPipeline") {
    info_.default_pipeline = PipelineKind::Generate;
  } else if (info_.pipeline_class == "QwenImageEditPipeline" ||
             info_.pipeline_class == "QwenImageEditInpaintPipeline") {
    info_.default_pipeline = PipelineKind::Edit;
  } else if (info_.pipeline_class == "QwenImageEditPlusPipeline") {
    info_.default_pipeline = PipelineKind::EditPlus;
  } else if (info_.pipeline_class == "QwenImageLayeredPipeline") {
    info_.default_pipeline = PipelineKind::Decompose;  // issue #16: decomposes only
    info_.can_decompose = true;
  } else {
    throw EngineError(index_path + ": pipeline '" + info_.pipeline_class +
                      "' is not a supported Qwen-Image pipeline");
  }
  for (const char* part : {"transformer", "vae", "text_encoder", "scheduler"}) {
    if (!model.has(part))
      throw EngineError("model '" + info_.model_dir + "' has no " + part +
                        " component (model_index.json)");
  }

  device_ = resolve_device(options.device);
  dtype_ = resolve_dtype(options.dtype, device_);
  info_.device = device_.str();
  info_.dtype = dtype_name(dtype_);
  set_torch_threads(options.threads);
  // Memory placement (issue #13): refused before anything is loaded when nothing fits.
  memory_plan_ = with_context(
      "memory plan",
      [&] { return plan_engine_memory(model, options.memory, device_, dtype_, quantize); });
  info_.memory = memory_plan_.summary();
  if (!memory_plan_.fits)
    throw EngineError("model '" + info_.model_dir + "' does not fit on " + device_.str() + ": " +
                      memory_plan_.advice);
  // Logged where it decides something (an accelerator, or a mode asked for by name).
  if (!device_.is_cpu() || memory_plan_.requested != "auto") log(info_.memory);
  const bool transformer_resident = memory_plan_.transformer == plan::TransformerPlace::Resident;

  scheduler_config_ = with_context("scheduler", [&] {
    const auto& c = model.component("scheduler");
    return SchedulerConfig::from_json_text(c.config.dump(), c.path + "/scheduler_config.json");
  });
  tokenizer_ = with_context("tokenizer", [&] {
    const io::Component* c = model.find("tokenizer");
    if (!c) c = model.find("processor");
    if (!c) throw EngineError("model '" + info_.model_dir + "' has no tokenizer");
    return tokenizer::Qwen2Tokenizer::load(c->path);
  });
  transformer_ = load_component("transformer", [&] {
    // Canonical keys (ComfyUI prefixes stripped); the config carries zero_cond_t from config.json
    // or from the `__index_timestep_zero__` marker that ComfyUI 2511 files have instead of the
    // key; without a config.json the configuration is derived from the tensor shapes.
    auto weights = model.weights("transformer");
    auto cfg = models::TransformerConfig::from_json_text(weights.config.dump(),
                                                         weights.source + " (configuration)");
    // Parameters start uninitialized (models/linear.h): nothing is allocated until loaded.
    models::QwenImageTransformer2DModel t(cfg);
    // What the placement keeps in host memory loads straight into (pinned) host memory, the rest
    // onto the device (models::HostLoad), so that the placement below copies nothing.
    const bool stream = memory_plan_.transformer == plan::TransformerPlace::Stream;
    std::optional<models::HostLoad> placed;
    if (!transformer_resident)
      placed.emplace(device_, [stream, resident = memory_plan_.resident_blocks](const auto& n) {
        return models::TransformerPlacement::host_tensor(n, stream, resident);
      });
    // Placements other than resident load on the host and move only their resident part.
    models::load_module(*t, weights, "transformer", dtype_,
                        transformer_resident ? device_ : torch::Device(torch::kCPU), {}, quantize);
    t->eval();
    if (!transformer_resident)
      t->set_placement(std::make_shared<models::TransformerPlacement>(
          *t, device_, memory_plan_.transformer == plan::TransformerPlace::Stream,
          memory_plan_.resident_blocks));
    return t;
  });
  {
    // The self-check times the transformer's own head layout (CUDA only; on the CPU this only
    // validates the requested name).
    const auto& tc = transformer_->config();
    models::SdpaProbe probe;
    probe.heads = tc.num_attention_heads;
    probe.head_dim = tc.attention_head_dim;
    probe.dtype = dtype_;
    const auto choice = with_context(
        "attention", [&] { return models::configure_sdpa(options.sdpa_backend, device_, probe); });
    if (device_.is_cuda()) {
      info_.attention = models::describe(choice);
      log("attention: " + info_.attention);
    }
  }
  // (A Layered model's processor only serves the reference's auto-captioning, which the engine
  // does not do: no vision tower.)
  info_.can_edit = model.has("processor") && info_.default_pipeline != PipelineKind::Generate &&
                   !info_.can_decompose;
  if (info_.can_edit) {
    processor_ = with_context("processor", [&] {
      auto c = VisionProcessorConfig::from_json_file(model.component("processor").path +
                                                     "/preprocessor_config.json");
      c.backend = vision_backend;
      return c;
    });
  }
  vae_ = load_component("vae",
                        [&] { return models::load_vae(model.weights("vae"), dtype_, device_); });
  text_encoder_ = load_component("text_encoder", [&] {
    const bool on_device = memory_plan_.text_encoder == plan::TextEncoderPlace::Gpu;
    // Offloaded: straight into (pinned) host memory, which HostWeights adopts.
    std::optional<models::HostLoad> placed;
    if (memory_plan_.text_encoder == plan::TextEncoderPlace::Offload) placed.emplace(device_);
    return models::qwenvl::load_text_encoder(model.weights("text_encoder"), dtype_,
                                             on_device ? device_ : torch::Device(torch::kCPU),
                                             /*with_vision=*/info_.can_edit);
  });
  if (memory_plan_.text_encoder == plan::TextEncoderPlace::Offload)
    text_encoder_host_ = std::make_unique<models::HostWeights>(*text_encoder_, device_, true);
  {
    // The transformer, and the text encoder unless it computes on the CPU (auto's reasons hold
    // for the engine's device only; "on" forces both).
    std::vector<std::pair<std::string, torch::nn::Module*>> fp8_modules{
        {"transformer", transformer_.get()}};
    if (fp8_mode == models::Fp8MatmulMode::On ||
        memory_plan_.text_encoder != plan::TextEncoderPlace::Cpu)
      fp8_modules.emplace_back("text_encoder", text_encoder_.get());
    const auto fp8 = models::apply_fp8_matmul(fp8_mode, device_, fp8_modules);
    if (device_.is_cuda() || fp8_mode != models::Fp8MatmulMode::Auto || fp8.layers > 0)
      log(fp8.line);
  }
  for (auto* m : std::initializer_list<torch::nn::Module*>{transformer_.get(), vae_.get(),
                                                           text_encoder_.get()}) {
    for (const auto& p : m->parameters()) {
      info_.parameters += p.numel();
      info_.bytes += p.numel() * dtype_bytes(p.scalar_type());
    }
    info_.bytes += models::quantized_weight_bytes(*m);  // weights kept quantised (models/linear.h)
  }
}

void QwenEngine::log(const std::string& message) const {
  if (options_.log)
    options_.log(message);
  else
    std::fprintf(stderr, "qwen-image: %s\n", message.c_str());
}

std::vector<ImageU8> QwenEngine::decode(const torch::Tensor& latents, int64_t height,
                                        int64_t width) {
  torch::NoGradGuard ng;
  auto z = unpack_latents(latents, height, width).to(vae_->dtype());
  z = models::denormalize_latents(z, vae_->config());
  auto img = vae_->decode(z).select(2, 0);  // [B, 3, H, W]
  return postprocess(img);
}

std::string message_of(const std::exception& e) {
  if (auto* ce = dynamic_cast<const c10::Error*>(&e)) return ce->what_without_backtrace();
  return e.what();
}

StepCallback make_step_callback(const ProgressFn& progress, bool preview, int64_t height,
                                int64_t width, int preview_every) {
  if (!progress) return {};
  const bool previews = preview && height > 0 && width > 0;
  return StepCallback(
      [progress, previews, height, width](int done, int total, const torch::Tensor&,
                                          const torch::Tensor& x0) {
        ProgressInfo info;
        info.step = done;
        info.total = total;
        if (previews && x0.defined()) info.preview = latent_preview(x0, height, width);
        return progress(info);
      },
      [previews, preview_every](int done, int total) {
        return previews && preview_due(done, total, preview_every);
      });
}

ImageU8 latent_preview(const torch::Tensor& packed, int64_t height, int64_t width, int max_side) {
  torch::NoGradGuard ng;
  // Rows: latent channel; columns: R, G, B.
  static const float kFactors[16][3] = {
      {-0.1299f, -0.1692f, 0.2932f},  {0.0671f, 0.0406f, 0.0442f},  {0.3568f, 0.2548f, 0.1747f},
      {0.0372f, 0.2344f, 0.1420f},    {0.0313f, 0.0189f, -0.0328f}, {0.0296f, -0.0956f, -0.0665f},
      {-0.3477f, -0.4059f, -0.2925f}, {0.0166f, 0.1902f, 0.1975f},  {-0.0412f, 0.0267f, -0.1364f},
      {-0.1293f, 0.0740f, 0.1636f},   {0.0680f, 0.3019f, 0.1128f},  {0.0032f, 0.0581f, 0.0639f},
      {-0.1251f, 0.0927f, 0.1699f},   {0.0060f, -0.0633f, 0.0005f}, {0.3477f, 0.2275f, 0.2950f},
      {0.1984f, 0.0913f, 0.1861f}};
  static const float kBias[3] = {-0.1835f, -0.0868f, -0.3360f};
  auto z = unpack_latents(packed.slice(0, 0, 1).to(torch::kCPU, torch::kFloat32), height, width)
               .select(2, 0)
               .select(0, 0);  // [16, h, w]
  auto m = torch::from_blob(const_cast<float*>(&kFactors[0][0]), {16, 3}, torch::kFloat32);
  auto b = torch::from_blob(const_cast<float*>(kBias), {3, 1, 1}, torch::kFloat32);
  auto rgb = torch::tensordot(m, z, {0}, {0}) + b;  // [3, h, w]
  const int64_t h = rgb.size(1), w = rgb.size(2);
  const int64_t longest = std::max(h, w);
  if (longest > max_side) {
    const int64_t oh = std::max<int64_t>(1, h * max_side / longest);
    const int64_t ow = std::max<int64_t>(1, w * max_side / longest);
    rgb = torch::nn::functional::interpolate(rgb.unsqueeze(0),
                                             torch::nn::functional::InterpolateFuncOptions()
                                                 .size(std::vector<int64_t>{oh, ow})
                                                 .mode(torch::kArea))
              .squeeze(0);
  }
  auto u8 =
      ((rgb + 1) * 127.5f).round().clamp(0, 255).to(torch::kUInt8).permute({1, 2, 0}).contiguous();
  ImageU8 out(static_cast<int>(u8.size(1)), static_cast<int>(u8.size(0)), 3);
  std::memcpy(out.pixels.data(), u8.data_ptr<uint8_t>(), out.pixels.size());
  return out;
}

TextCondition to_condition(const PromptEmbeds& pe, torch::Dtype dtype) {
  return {pe.embeds.to(dtype), pe.mask};
}

namespace {
LatentJob latent_job(const ResolvedParams& p) {
  LatentJob job;
  job.height = p.height;
  job.width = p.width;
  job.steps = p.steps;
  job.true_cfg_scale = p.true_cfg_scale;
  job.batch = static_cast<int64_t>(p.prompts.size()) * p.images_per_prompt;
  return job;
}
}  // namespace

std::pair<TextCondition, TextCondition> QwenEngine::encode_t2i_conditions(const ResolvedParams& p) {
  // Memory modes: an offloaded text encoder is on the device for these encodes only; one on the
  // CPU hands its embeddings over to the device.
  TextEncoderOnDevice on_device(text_encoder_host_.get());
  auto encode = [&](const std::vector<std::string>& prompts) {
    auto c = to_condition(encode_prompt_t2i(text_encoder_, *tokenizer_, prompts,
                                            p.max_sequence_length, p.images_per_prompt),
                          dtype_);
    return TextCondition{c.embeds.to(device_), c.mask.defined() ? c.mask.to(device_) : c.mask};
  };
  return {encode(p.prompts), p.do_cfg ? encode(p.negative_prompts) : TextCondition{}};
}

std::vector<ImageU8> QwenEngine::run_generate(const ResolvedParams& p, int64_t seed,
                                              const ProgressFn& progress) {
  torch::NoGradGuard ng;
  auto [cond, uncond] = encode_t2i_conditions(p);
  const LatentJob job = latent_job(p);
  auto gen = make_generator(seed);
  auto latents = t2i_latents(
      *transformer_, scheduler_config_, job, cond, uncond, gen, dtype_, device_,
      make_step_callback(progress, options_.preview, p.height, p.width, options_.preview_every));
  return decode(latents, p.height, p.width);
}

std::vector<ImageU8> QwenEngine::run_img2img(const ResolvedParams& p, const RunParams& params,
                                             const ProgressFn& progress) {
  torch::NoGradGuard ng;
  const bool inpaint = params.pipeline == PipelineKind::Inpaint;
  if (params.images.size() != 1)
    throw EngineError(std::string(to_string(params.pipeline)) +
                      " needs exactly one input image (got " +
                      std::to_string(params.images.size()) + ")");
  if (inpaint && !params.mask) throw EngineError("inpaint needs a mask image");
  auto [cond, uncond] = encode_t2i_conditions(p);
  const LatentJob job = latent_job(p);

  auto gen = make_generator(params.seed);
  auto image_latents = with_context("input image", [&] {
    return encode_image_latents(*vae_, params.images[0], p.width, p.height, gen);
  });
  torch::Tensor mask_latents;
  if (inpaint) {
    mask_latents = with_context("mask image", [&] {
      return pack_mask_latents(*params.mask, p.width, p.height, job.batch, dtype_, device_);
    });
  }
  auto latents = img2img_latents(
      *transformer_, scheduler_config_, job, p.strength, image_latents, mask_latents, cond, uncond,
      gen, dtype_, device_,
      make_step_callback(progress, options_.preview, p.height, p.width, options_.preview_every));
  return decode(latents, p.height, p.width);
}

models::LightningInfo QwenEngine::prepare_loras(const RunParams& params) {
  return loras_.prepare(
      params.loras, *transformer_,
      [&](const std::vector<models::LoraSpec>& set) {
        models::apply_loras(*transformer_, set, options_.lora_mode == "merge");
      },
      [&](const std::string& message) { log(message); });
}

std::vector<ImageU8> QwenEngine::run(const RunParams& params, const ProgressFn& progress) {
  c10::InferenceMode inference;  // the daemon's jobs and the CLI's runs all enter here
  // The values a job leaves to the model (issue #14), the one rule for the CLI in-process, the CLI
  // with --daemon and the daemon's jobs (protocol version 5 carries "the model's default"): with a
  // Lightning LoRA (by name or metadata, io/lightning.h) or the lightning flag, steps 0 is 4 or 8
  // (the fewest a Lightning LoRA's name says, else 8), CFG 1 and shift 3; otherwise steps 0 is the
  // reference pipelines' num_inference_steps (50), CFG 4 (resolve_params) and the model's
  // scheduler. Values the job set stay.
  const models::LightningInfo loras = prepare_loras(params);
  const bool lightning = loras.lightning || params.lightning;
  RunParams adjusted;
  const RunParams* job = &params;
  std::optional<double> shift = params.shift;
  if (lightning && !shift) shift = 3.0;
  if (params.steps == 0 || (lightning && !params.true_cfg_scale)) {
    adjusted = params;
    if (adjusted.steps == 0) adjusted.steps = lightning ? loras.steps : 50;
    if (lightning && !adjusted.true_cfg_scale) adjusted.true_cfg_scale = 1.0f;
    job = &adjusted;
  }
  if (shift && !(std::isfinite(*shift) && *shift > 0))
    throw EngineError("shift must be a positive number (got " + std::to_string(*shift) + ")");
  // The job's scheduler: the model's, or the fixed shift mu = ln(shift) of diffusers' Lightning
  // scheduler config (use_dynamic_shifting with base_shift = max_shift = ln S, max_image_seq_len
  // 8192, shift_terminal None). Restored when the job ends.
  struct SchedulerRestore {
    SchedulerConfig& target;
    SchedulerConfig saved;
    ~SchedulerRestore() { target = saved; }
  } restore{scheduler_config_, scheduler_config_};
  if (shift) {
    scheduler_config_.use_dynamic_shifting = true;
    scheduler_config_.base_shift = scheduler_config_.max_shift = std::log(*shift);
    scheduler_config_.max_image_seq_len = 8192;
    scheduler_config_.shift_terminal.reset();
    scheduler_config_.time_shift_type = "exponential";
  }
  return run_job(*job, progress);
}

std::vector<ImageU8> QwenEngine::run_job(const RunParams& params, const ProgressFn& progress) {
  auto p = resolve_params(params);
  // Qwen-Image-Layered models run Decompose only, and only they do (engine_layered.cpp).
  check_decompose_model(params);
  if (params.pipeline == PipelineKind::Decompose) prepare_decompose(p, params);
  try {
    switch (params.pipeline) {
      case PipelineKind::Generate:
        return run_generate(p, params.seed, progress);
      case PipelineKind::Img2Img:
      case PipelineKind::Inpaint:
        return run_img2img(p, params, progress);
      case PipelineKind::Edit:
      case PipelineKind::EditPlus:
      case PipelineKind::EditInpaint:
        return run_edit(p, params, progress);
      case PipelineKind::Decompose:
        return run_decompose(p, params, progress);
      default:
        throw EngineError(std::string("pipeline '") + to_string(params.pipeline) +
                          "' is not supported by this engine yet");
    }
  } catch (const c10::OutOfMemoryError& e) {
    throw out_of_memory(p, message_of(e));
  } catch (const EngineError& e) {
    if (std::string(e.what()).find("out of memory") != std::string::npos)
      throw out_of_memory(p, e.what());
    throw;
  } catch (const std::exception& e) {
    throw EngineError(std::string(to_string(params.pipeline)) + " failed: " + message_of(e));
  }
}

EngineError QwenEngine::out_of_memory(const ResolvedParams& p, const std::string& what) {
  // What the job held is freed by now (unwound; offloaded weights back on the host by their
  // scopes, streamed blocks here); the cached blocks go back to the driver so the next job starts
  // clean.
  if (auto* tp = dynamic_cast<models::TransformerPlacement*>(transformer_->placement()))
    tp->release_all();
  release_cached_memory();
  const std::string size = std::to_string(p.width) + "x" + std::to_string(p.height);
  std::string advice;
  const int64_t images = static_cast<int64_t>(p.prompts.size()) * p.images_per_prompt;
  if (p.layers > 0)  // Decompose: (layers + 2) frames of width x height in one sequence
    advice = "decomposing into " + std::to_string(p.layers) + " layers at " + size +
             " needs more memory than is free: use fewer layers, resolution 640, or a lighter "
             "memory mode (memory = ... in daemon.conf, --memory on the command line; `qwen-image "
             "plan --layers N` shows what fits)";
  else if (p.width * p.height > int64_t(1328) * 1328 || images > 1)
    advice = "this job (" + size + ", " + std::to_string(images) +
             " image(s)) is larger than the 1328x1328 single image the memory plan was made for: "
             "use a smaller image or selection, or fewer images per job";
  else
    advice = "the model's placement (" + info_.memory +
             ") leaves too little room for this job: set a lighter memory mode (memory = ... in "
             "daemon.conf, --memory on the command line; `qwen-image plan` shows what fits)";
  return EngineError("out of device memory at " + size + ": " + advice + " [" + what + "]");
}

void release_cached_memory() {
  // Device-generic (no CUDA headers): the current accelerator's caching allocator, if any.
  try {
    if (at::accelerator::getAccelerator(/*checked=*/false).has_value()) at::accelerator::emptyCache();
  } catch (const std::exception&) {
  }
}

}  // namespace qwen::pipelines
