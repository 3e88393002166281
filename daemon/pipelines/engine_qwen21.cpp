// Qwen21Engine (engine_qwen21.h): QwenImage21Pipeline.__call__ over the engine's job parameters.
#include "pipelines/engine_qwen21.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/checkpoint.h"
#include "models/device_memory.h"
#include "models/fp8_matmul.h"
#include "models/weights.h"
#include "pipelines/engine_impl.h"
#include "pipelines/geometry.h"
#include "pipelines/latents.h"
#include "pipelines/placement.h"
#include "pipelines/prompt_encoding_qwen21.h"

namespace fs = std::filesystem;

namespace qwen::pipelines {

namespace {

constexpr const char* kPipelineClass = "QwenImage21Pipeline";

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

int64_t dtype_bytes(torch::Dtype d) { return static_cast<int64_t>(c10::elementSize(d)); }

}  // namespace

bool is_qwen21_model(const EngineOptions& options) {
  if (options.model_dir.empty()) return false;
  const std::string text = read_text(options.model_dir + "/model_index.json");
  if (text.empty()) return false;
  try {
    const auto j = nlohmann::json::parse(text);
    return j.is_object() && j.value("_class_name", std::string()) == kPipelineClass;
  } catch (const std::exception&) {
    return false;  // the generic engine reports the broken file
  }
}

Qwen21Engine::Qwen21Engine(const EngineOptions& options) : options_(options) {
  c10::InferenceMode inference;
  const std::string dir = options.model_dir;
  const std::string index_path = dir + "/model_index.json";
  // fp8 tensor-core matmuls (models/fp8_matmul.h): checked now, applied once the weights are in.
  const models::Fp8MatmulMode fp8_mode = [&] {
    try {
      return models::parse_fp8_matmul_mode(options.fp8_matmul);
    } catch (const std::invalid_argument& e) {
      throw EngineError(e.what());
    }
  }();
  // Component files (--transformer / --text-encoder / --vae: safetensors single files such as
  // ComfyUI's qwen_image_2.1_bf16, shard indexes) replace the folder's weights through
  // io::ModelFolder, as for the 20B models; the folder supplies the rest.
  io::ModelSources sources;
  sources.folder = dir;
  sources.transformer = options.transformer_file;
  sources.text_encoder = options.text_encoder_file;
  sources.vae = options.vae_file;
  info_.model_dir = dir;
  info_.model_type = "qwen-image-2.1";
  info_.pipeline_class = kPipelineClass;
  info_.family = "qwen-image-2.1";
  info_.default_pipeline = PipelineKind::Generate;
  info_.can_edit = true;
  for (const char* part : {"transformer", "vae", "text_encoder", "scheduler"}) {
    if (!fs::is_directory(dir + "/" + part))
      throw EngineError("model '" + dir + "' has no " + part + " folder (" + index_path + ")");
  }
  sample_sigmas_ = with_context("model_index.json", [&] {
    return qwen21::sample_sigmas_from_index(read_text(index_path), index_path);
  });

  device_ = resolve_device(options.device);
  dtype_ = resolve_dtype(options.dtype, device_);
  info_.device = device_.str();
  info_.dtype = dtype_name(dtype_);
  set_torch_threads(options.threads);
  // Memory placement (issue #13's planner and machinery, issue #15 "a 24 GB card in bf16"):
  // refused before anything is loaded when nothing fits.
  const io::ModelFolder folder =
      with_context("model", [&] { return io::ModelFolder::open(sources); });
  const io::QuantizeMode quantize = engine_quantize_mode(options.quantize);
  memory_plan_ = with_context("memory plan", [&] {
    return plan_engine_memory(folder, options.memory, device_, dtype_, quantize);
  });
  info_.memory = memory_plan_.summary();
  if (!memory_plan_.fits)
    throw EngineError("model '" + dir + "' does not fit on " + device_.str() + ": " +
                      memory_plan_.advice);
  if (!device_.is_cpu() || memory_plan_.requested != "auto") log(info_.memory);
  const bool stream = memory_plan_.transformer == plan::TransformerPlace::Stream;

  scheduler_config_ = with_context("scheduler", [&] {
    return SchedulerConfig::from_json_file(dir + "/scheduler/scheduler_config.json");
  });
  tokenizer_ = with_context("tokenizer", [&] {
    for (const char* part : {"processor", "tokenizer"}) {
      if (fs::exists(dir + "/" + part + "/tokenizer.json") ||
          fs::exists(dir + "/" + part + "/vocab.json"))
        return tokenizer::Qwen2Tokenizer::load(dir + "/" + part);
    }
    throw EngineError("model '" + dir + "' has no tokenizer (processor/ or tokenizer/)");
  });
  processor_ = with_context("processor", [&] {
    return fs::is_directory(dir + "/processor") ? qwen21::processor_config(dir + "/processor")
                                                : qwen21::default_processor_config();
  });
  auto timed = [&](const std::string& component, auto&& load) {
    // The transformer, the VAE and the text encoder, in that order (the daemon's job phase).
    if (options_.on_load) options_.on_load(component, int(info_.loads.size()) + 1, 3);
    models::LoadMeter meter;
    auto result = with_context(component, load);
    info_.loads.push_back({component, meter.bytes(), meter.seconds()});
    return result;
  };
  transformer_ = timed("transformer", [&] {
    auto w = folder.weights("transformer");
    // What stays in host memory (streamed blocks; all of it when swapped) loads straight into
    // (pinned) host memory, the rest onto the device (models::HostLoad): nothing is copied again.
    std::optional<models::HostLoad> placed;
    if (memory_plan_.swap_transformer)
      placed.emplace(device_);
    else if (stream)
      placed.emplace(device_, [resident = memory_plan_.resident_blocks](const std::string& n) {
        return models::BlockStreamer::streamed_name(n, "transformer_blocks", resident);
      });
    // Streamed or swapped: loaded on the host, the resident part moved by the placement.
    const bool on_host = stream || memory_plan_.swap_transformer;
    auto t = models::load_transformer21(w, dtype_, on_host ? torch::Device(torch::kCPU) : device_,
                                        quantize);
    if (stream)
      t->set_block_hooks(std::make_shared<models::BlockStreamer>(*t, t->transformer_blocks, device_,
                                                                 memory_plan_.resident_blocks));
    if (memory_plan_.swap_transformer) {
      transformer_host_ = std::make_unique<models::HostWeights>(*t, device_, true);
      transformer_host_->upload();
      transformer_host_->wait();
    }
    return t;
  });
  vae_ = timed("vae", [&] { return models::load_vae21(folder.weights("vae"), dtype_, device_); });
  if (memory_plan_.vae_tiled) {
    models::VaeTiling tiling = vae_->tiling();
    tiling.enabled = true;
    vae_->set_tiling(tiling);
  }
  // The text encoder: on the device (gpu), in host memory and uploaded for each encode only
  // (offload; placement.h TextEncoderOnDevice), or encoding on the CPU (cpu).
  text_encoder_ = timed("text_encoder", [&] {
    const bool on_device = memory_plan_.text_encoder == plan::TextEncoderPlace::Gpu;
    // Offloaded: straight into (pinned) host memory, which HostWeights adopts.
    std::optional<models::HostLoad> placed;
    if (memory_plan_.text_encoder == plan::TextEncoderPlace::Offload) placed.emplace(device_);
    return models::qwen3vl::load_text_encoder(folder.weights("text_encoder"), dtype_,
                                              on_device ? device_ : torch::Device(torch::kCPU),
                                              /*with_vision=*/true);
  });
  if (memory_plan_.text_encoder == plan::TextEncoderPlace::Offload)
    text_encoder_host_ = std::make_unique<models::HostWeights>(*text_encoder_, device_, true);
  {
    // As QwenEngine: the transformer, and the text encoder unless it computes on the CPU.
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

void Qwen21Engine::log(const std::string& message) const {
  if (options_.log)
    options_.log(message);
  else
    std::fprintf(stderr, "qwen-image: %s\n", message.c_str());
}

void Qwen21Engine::prepare_loras(const RunParams& params) {
  // Streamed blocks are in host memory now: side branches (never a merged copy, which would stay
  // where the block's weight is), moved to the device below.
  const bool stream = memory_plan_.transformer == plan::TransformerPlace::Stream;
  const bool merge = options_.lora_mode == "merge" && !stream;
  loras_.prepare(
      params.loras, *transformer_,
      [&](const std::vector<models::LoraSpec>& set) {
        models::apply_loras(*transformer_, set, merge);
        if (device_.is_cpu() || merge) return;
        for (const auto& item : transformer_->named_modules()) {
          auto* l = dynamic_cast<models::LinearImpl*>(item.value().get());
          if (!l || l->lora().empty() || l->lora().front().down.device() == device_) continue;
          std::vector<models::LoraBranch> moved = l->lora();
          for (auto& b : moved) {
            b.down = b.down.to(device_);
            b.up = b.up.to(device_);
          }
          l->set_lora(std::move(moved), false);
        }
      },
      [&](const std::string& message) { log(message); });
}

const torch::Tensor& Qwen21Engine::preview_map() {
  if (preview_map_.defined()) return preview_map_;
  torch::NoGradGuard ng;
  constexpr int64_t n = 16;  // latent pixels a side: a 256 x 256 decode
  const int64_t c = vae_->config().z_dim;
  at::Generator gen = make_generator(21);
  const auto z = torch::randn({1, n * n, c}, gen, torch::dtype(torch::kFloat32));
  const auto rgba =
      qwen21::decode21(*vae_, z.to(device_, dtype_), n * qwen21::kVaeScale, n * qwen21::kVaeScale)
          .at(0);
  auto img = torch::from_blob(const_cast<uint8_t*>(rgba.pixels.data()),
                              {rgba.height, rgba.width, rgba.channels}, torch::kUInt8)
                 .to(torch::kFloat32)
                 .permute({2, 0, 1})
                 .unsqueeze(0) /
             255.0f;
  // [n * n, 4]: each latent pixel's 16 x 16 area average, row-major like the packed latents.
  const auto y = torch::avg_pool2d(img, qwen21::kVaeScale).squeeze(0).flatten(1).t();
  const auto x = torch::cat({z.squeeze(0), torch::ones({n * n, 1})}, 1);  // [n * n, c + 1]
  // Ridge-regularised normal equations (x^T x + 1e-3 I) w = x^T y.
  const auto a = x.t().matmul(x) + 1e-3 * torch::eye(c + 1);
  preview_map_ = at::linalg_solve(a, x.t().matmul(y));
  return preview_map_;
}

ImageU8 Qwen21Engine::preview21(const torch::Tensor& x0, int64_t height, int64_t width) {
  torch::NoGradGuard ng;
  const auto& m = preview_map();
  const int64_t h = height / qwen21::kVaeScale, w = width / qwen21::kVaeScale;
  const auto z = x0.select(0, 0).to(torch::kCPU, torch::kFloat32);  // [h * w, c]
  auto rgba = torch::cat({z, torch::ones({z.size(0), 1})}, 1).matmul(m).clamp(0, 1);
  const auto alpha = rgba.narrow(1, 3, 1);
  auto rgb = (rgba.narrow(1, 0, 3) * alpha + (1 - alpha)).t().reshape({1, 3, h, w});
  const int64_t longest = std::max(h, w);
  if (longest > 256)
    rgb = torch::nn::functional::interpolate(
        rgb, torch::nn::functional::InterpolateFuncOptions()
                 .size(std::vector<int64_t>{std::max<int64_t>(1, h * 256 / longest),
                                            std::max<int64_t>(1, w * 256 / longest)})
                 .mode(torch::kArea));
  const auto u8 = (rgb.squeeze(0) * 255.0f)
                      .round()
                      .clamp(0, 255)
                      .to(torch::kUInt8)
                      .permute({1, 2, 0})
                      .contiguous();
  ImageU8 out(static_cast<int>(u8.size(1)), static_cast<int>(u8.size(0)), 3);
  std::memcpy(out.pixels.data(), u8.data_ptr<uint8_t>(), out.pixels.size());
  return out;
}

std::vector<ImageU8> Qwen21Engine::run(const RunParams& params, const ProgressFn& progress) {
  return run_traced(params, progress, nullptr);
}

std::vector<ImageU8> Qwen21Engine::run_traced(const RunParams& params, const ProgressFn& progress,
                                              qwen21::Trace21* trace) {
  c10::InferenceMode inference;
  const std::string model = "Qwen-Image-2.1 model '" + info_.model_dir + "'";
  // What 2.1 does: text to image and edit with 1-10 references.
  switch (params.pipeline) {
    case PipelineKind::Generate:
      if (!params.images.empty())
        throw EngineError(model + ": generate takes no input image; use edit to pass " +
                          std::to_string(params.images.size()) + " reference image(s)");
      break;
    case PipelineKind::Edit:
    case PipelineKind::EditPlus:
      if (params.images.empty())
        throw EngineError(model + ": edit needs at least one reference image");
      if (params.images.size() > static_cast<size_t>(qwen21::kMaxReferences))
        throw EngineError(model + ": " + std::to_string(params.images.size()) +
                          " reference images given; Qwen-Image-2.1 takes 1 to " +
                          std::to_string(qwen21::kMaxReferences));
      break;
    default:
      throw EngineError(model + " cannot run the '" + std::string(to_string(params.pipeline)) +
                        "' pipeline: Qwen-Image-2.1 generates and edits with 1-10 reference "
                        "images only (no img2img, inpaint or decompose)");
  }
  if (params.mask)
    throw EngineError(model + ": masks are not supported (Qwen-Image-2.1 has no inpaint pipeline)");
  if (params.shift || params.lightning)
    throw EngineError(model +
                      ": --shift / Lightning settings do not apply to Qwen-Image-2.1 (use its "
                      "Turbo checkpoint, whose sigmas come from model_index.json)");
  if (params.prompts.empty()) throw EngineError("no prompt given");
  if (params.num_images_per_prompt < 1 || params.num_images_per_prompt > 16)
    throw EngineError("num_images_per_prompt must be in [1, 16] (got " +
                      std::to_string(params.num_images_per_prompt) + ")");
  // steps 0: the reference's default num_inference_steps (40; a Turbo model's sample_sigmas set
  // the count whatever is asked).
  const int steps = params.steps == 0 ? qwen21::kDefaultSteps : params.steps;
  if (steps < 1 || steps > 1000)
    throw EngineError("steps must be in [1, 1000] (got " + std::to_string(steps) + ")");
  if (params.width < 0 || params.height < 0 || params.width > 8192 || params.height > 8192)
    throw EngineError("width and height must be in [0, 8192] (0 = the pipeline's default)");
  if (params.output_resolution < 32 || params.output_resolution > 8192)
    throw EngineError("output_resolution must be in [32, 8192] (got " +
                      std::to_string(params.output_resolution) + ")");
  const auto& neg = params.negative_prompts;
  if (neg.size() > 1 && neg.size() != params.prompts.size())
    throw EngineError("give one negative prompt, or one per prompt (" +
                      std::to_string(params.prompts.size()) + ")");
  // The reference's default true_cfg_scale is 1.0 (no guidance).
  const double scale = params.true_cfg_scale ? static_cast<double>(*params.true_cfg_scale) : 1.0;
  if (!std::isfinite(scale) || scale < 0)
    throw EngineError("true_cfg_scale must be finite and >= 0");
  const bool do_cfg = scale > 1.0 && !neg.empty();
  std::vector<std::string> negatives;
  if (do_cfg)
    negatives = neg.size() == 1 ? std::vector<std::string>(params.prompts.size(), neg[0]) : neg;
  if (transformer_host_) {  // back on the device after a job that failed while encoding
    transformer_host_->upload();
    transformer_host_->wait();
  }
  prepare_loras(params);

  // 0-1. sizes and references.
  qwen21::Job21 job;
  const auto size = with_context("output size", [&] {
    return qwen21::output_size(params.width, params.height, params.images,
                               params.output_resolution);
  });
  job.width = size.width;
  job.height = size.height;
  job.steps = steps;
  job.sample_sigmas = sample_sigmas_;
  job.true_cfg_scale = scale;
  job.kv_cache = params.kv_cache;
  job.batch = static_cast<int64_t>(params.prompts.size()) * params.num_images_per_prompt;
  // Exact geometry (engine.h GeometryMode, geometry.h; issue #15 "Geometry"): every reference goes
  // onto its exact canvas (the reference's calculate_dimensions size, content scaled uniformly and
  // reflected into the padding), the output takes the last reference's canvas, and the result is
  // cropped and resampled back onto the last input's pixel grid. width / height are then ignored.
  const bool exact = params.geometry == GeometryMode::Exact && !params.images.empty();
  std::vector<EditCanvas> canvases;
  std::vector<qwen21::Reference> refs;
  for (size_t i = 0; i < params.images.size(); ++i) {
    refs.push_back(with_context("reference image " + std::to_string(i + 1), [&] {
      const ImageU8& im = params.images[i];
      if (!exact) return qwen21::prepare_reference(im, params.output_resolution);
      canvases.push_back(plan_exact(im.width, im.height,
                                    int64_t(params.output_resolution) * params.output_resolution));
      const EditCanvas& c = canvases.back();
      return qwen21::prepare_reference(to_model(im, c), c.model_w, c.model_h);
    }));
  }
  if (exact) {
    job.width = canvases.back().model_w;
    job.height = canvases.back().model_h;
  }

  // 2. prompt encoding: the vision tower runs once for the prompt and the negative prompt. A
  // swapped transformer is in host memory meanwhile (memory plan swap_transformer).
  qwen21::Condition21 cond, uncond;
  if (transformer_host_) transformer_host_->release();
  with_context("text encoder", [&] {
    TextEncoderOnDevice on_device(text_encoder_host_.get());
    std::vector<ImageU8> resized;
    for (const auto& r : refs) resized.push_back(r.resized);
    models::qwen3vl::VisionFeatures feats;
    torch::Tensor grid;
    if (!resized.empty()) {
      auto [pv, g] = qwen21::vision_inputs(resized, processor_);
      grid = g;
      feats = text_encoder_->encode_images(pv, g);
    }
    auto to_cond = [&](const std::vector<std::string>& prompts) {
      auto pe = qwen21::encode_prompt(text_encoder_, *tokenizer_, prompts, feats, grid,
                                      params.num_images_per_prompt);
      qwen21::Condition21 c;
      c.embeds = pe.embeds.to(device_, dtype_);
      if (pe.mask.defined()) c.mask = pe.mask.to(device_).to(torch::kBool);
      auto row = pe.image_pad_mask[0].to(torch::kCPU, torch::kBool).contiguous();
      const bool* p = row.data_ptr<bool>();
      c.img_mask.assign(p, p + row.numel());
      return c;
    };
    cond = to_cond(params.prompts);
    if (do_cfg) uncond = to_cond(negatives);
    return 0;
  });

  if (transformer_host_) {
    transformer_host_->upload();
    transformer_host_->wait();
  }
  // The KV cache of this job on an accelerator: off (with a log line) when its keys and values
  // would not fit in the memory the process can still get next to the first step's activations.
  if (job.kv_cache && !device_.is_cpu()) {
    int64_t slots = 0;
    for (bool b : cond.img_mask) slots += b;
    const auto& tc = transformer_->config();
    const int64_t prefix = cond.embeds.size(1) + 3 * slots;
    const int64_t target = (job.width / 16) * (job.height / 16);
    const int64_t elem = dtype_bytes(dtype_);
    const int64_t need =
        2 * tc.num_layers * job.batch * prefix * tc.inner_dim() * elem * (do_cfg ? 2 : 1);
    const int64_t act = job.batch * (prefix + target) * tc.inner_dim() * 22 * elem;
    const auto avail = models::device_available_bytes(device_);
    if (avail && need + act > *avail - *avail / 16) {
      job.kv_cache = false;
      log("KV cache off for this job: it needs " + plan::format_gib(need) + " and " +
          plan::format_gib(*avail) + " is free (" + std::to_string(params.images.size()) +
          " reference image(s)); every step runs the whole sequence");
    }
  }
  last_kv_cache_ = job.kv_cache;

  // 3. reference latents.
  std::vector<torch::Tensor> ref_latents;
  for (const auto& r : refs)
    ref_latents.push_back(with_context(
        "VAE encode", [&] { return qwen21::encode_reference(*vae_, r, dtype_, device_); }));

  // 4-5.
  at::Generator gen = make_generator(params.seed);
  // Progress, with previews on the steps preview_due() picks (EngineOptions.preview).
  StepCallback on_step;
  if (progress) {
    const bool previews = options_.preview;
    const int every = options_.preview_every;
    const int64_t ph = job.height, pw = job.width;
    on_step = StepCallback(
        [&, previews, ph, pw](int done, int total, const torch::Tensor&, const torch::Tensor& x0) {
          ProgressInfo info;
          info.step = done;
          info.total = total;
          if (previews && x0.defined()) info.preview = preview21(x0, ph, pw);
          return progress(info);
        },
        [previews, every](int done, int total) {
          return previews && preview_due(done, total, every);
        });
  }
  auto latents = with_context("denoise", [&] {
    return qwen21::qwen21_denoise(*transformer_, scheduler_config_, job, ref_latents, refs, cond,
                                  do_cfg ? &uncond : nullptr, gen, dtype_, device_, on_step, trace);
  });
  // 6. RGBA images.
  auto images = with_context(
      "VAE decode", [&] { return qwen21::decode21(*vae_, latents, job.width, job.height); });
  if (exact)
    for (auto& im : images)
      im = with_context("geometry", [&] { return from_model(im, canvases.back()); });
  return images;
}

}  // namespace qwen::pipelines
