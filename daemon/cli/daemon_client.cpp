#include "cli/daemon_client.h"

#include <filesystem>

#include "qwen_image/client.h"

namespace qwen::cli {

namespace {

ipc::ImageView view_of(const ImageU8& img, const char* what) {
  ipc::ImageView v;
  v.width = img.width;
  v.height = img.height;
  switch (img.channels) {
    case 1:
      v.format = ipc::PixelFormat::GRAY8;
      break;
    case 3:
      v.format = ipc::PixelFormat::RGB8;
      break;
    case 4:
      v.format = ipc::PixelFormat::RGBA8;
      break;
    default:
      throw EngineError(std::string(what) + " has " + std::to_string(img.channels) +
                        " channels (expected 1, 3 or 4)");
  }
  if (img.empty() || img.pixels.size() != img.size_bytes())
    throw EngineError(std::string(what) + " is empty or its pixel buffer has the wrong size");
  v.data = img.pixels.data();
  return v;
}

}  // namespace

std::vector<ImageU8> run_via_daemon(const RunParams& p, const std::string& instance,
                                    const ProgressFn& progress, const std::string& model,
                                    const std::string& pipeline) {
  ipc::JobRequest r;
  r.pipeline = pipeline.empty() ? std::string(to_string(p.pipeline)) : pipeline;
  r.model = model;
  r.prompts = p.prompts;
  r.negative_prompts = p.negative_prompts;
  r.width = p.width;
  r.height = p.height;
  // Steps 0 and an unset CFG / shift travel as "the model's default" (protocol version 5): the
  // daemon's engine applies the in-process defaults, Lightning's included (QwenEngine::run).
  r.steps = p.steps;
  r.true_cfg_scale = p.true_cfg_scale.value_or(ipc::kModelDefaultTrueCfgScale);
  r.seed = p.seed;
  r.num_images_per_prompt = p.num_images_per_prompt;
  r.strength = p.strength;
  r.exact_geometry = p.geometry == GeometryMode::Exact;
  r.max_sequence_length = p.max_sequence_length;
  r.result_format = ipc::PixelFormat::RGB8;
  // LoRAs (issue #14): a FILE with a '/' travels as its absolute real path (the daemon accepts it
  // when this user owns it), a bare name as a name for the daemon's lora_dir.
  for (const auto& l : p.loras) {
    std::string name = l.path;
    if (name.find('/') != std::string::npos) {
      std::error_code ec;
      const auto real = std::filesystem::canonical(name, ec);
      if (ec) throw EngineError("LoRA " + name + ": " + ec.message());
      name = real.string();
    }
    r.loras.push_back({name, float(l.strength)});
  }
  // Qwen-Image-2.1 (protocol version 4; other models ignore them).
  r.kv_cache = p.kv_cache;
  r.output_resolution = p.output_resolution;
  if (p.shift) r.shift = float(*p.shift);
  r.lightning = p.lightning;
  const bool decompose = r.pipeline == "decompose";
  if (decompose) {
    // Qwen-Image-Layered (issue #16): the resolution bucket sets the size; RGBA layers come back.
    r.layers = p.layers;
    r.resolution = p.resolution;
    r.cfg_normalize = p.cfg_normalize;
    r.width = r.height = 0;
    r.result_format = ipc::PixelFormat::RGBA8;
  }
  for (size_t i = 0; i < p.images.size(); ++i)
    r.images.push_back(view_of(p.images[i], ("input image " + std::to_string(i + 1)).c_str()));
  if (p.mask) {
    if (p.mask->channels != 1) throw EngineError("the mask must have one channel");
    r.mask = view_of(*p.mask, "the mask");
  }
  std::function<bool(const ipc::JobProgress&)> cb;
  if (progress) {
    cb = [&](const ipc::JobProgress& jp) {
      // Steps only, as in-process (the queued / loading / encoding phases of protocol version 4
      // have no step to report).
      if (jp.phase != ipc::JobPhase::Denoising && jp.phase != ipc::JobPhase::Decoding) return true;
      ProgressInfo info;
      info.step = jp.step;
      info.total = jp.total;
      if (jp.preview) {
        info.preview.width = jp.preview->width;
        info.preview.height = jp.preview->height;
        info.preview.channels = 3;
        info.preview.pixels = jp.preview->bytes;
      }
      return progress(info);
    };
  }
  std::vector<ipc::Image> out;
  bool rgba = decompose;
  try {
    ipc::Client client = ipc::Client::connect(instance);
    // A model whose results are RGBA (Qwen-Image-2.1, issue #15) returns them with their alpha, as
    // in-process: the model list says which (ModelCaps::rgba; "" = the daemon's default model).
    if (!decompose) {
      const ipc::DaemonStatus st = client.status();
      for (size_t i = 0; i < st.models.size() && i < st.model_caps.size(); ++i) {
        const std::string& line = st.model_states[i];
        const size_t t1 = line.find('\t'), t2 = line.find('\t', t1 + 1);
        const std::string dir = t2 == std::string::npos ? "" : line.substr(t2 + 1);
        const bool named = model.empty() ? i == 0 : (st.models[i] == model || dir == model);
        if (named) {
          rgba = st.model_caps[i].known && st.model_caps[i].rgba;
          break;
        }
      }
      if (rgba) r.result_format = ipc::PixelFormat::RGBA8;
    }
    out = client.run(r, cb);
  } catch (const ipc::ClientError& e) {
    if (e.kind == ipc::ClientError::Kind::Cancelled) throw CancelledError();
    throw EngineError(std::string("daemon: ") + e.what());
  }
  std::vector<ImageU8> images;
  for (auto& img : out) {
    if (img.format != r.result_format)
      throw EngineError("daemon: result in an unexpected pixel format");
    ImageU8 u;
    u.width = img.width;
    u.height = img.height;
    u.channels = rgba ? 4 : 3;
    u.pixels = std::move(img.bytes);
    images.push_back(std::move(u));
  }
  return images;
}

}  // namespace qwen::cli
