#include "plan/memory_plan.h"

#include "plan/model_sizes.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>
#include <stdexcept>

namespace qwen::plan {

// ---- sizes ------------------------------------------------------------------------------------

int64_t ComponentSize::bytes() const {
  int64_t n = 0;
  for (const auto& t : tensors) n += t.bytes;
  return n;
}

int64_t ComponentSize::bytes_with_prefix(const std::string& prefix, const std::string& part) const {
  int64_t n = 0;
  for (const auto& t : tensors)
    if (t.name.rfind(prefix, 0) == 0 && (part.empty() || t.name.find(part) != std::string::npos))
      n += t.bytes;
  return n;
}

namespace {
bool is_modulation(const std::string& name) {
  return name.rfind("transformer_blocks.", 0) == 0 &&
         (name.find(".img_mod.") != std::string::npos ||
          name.find(".txt_mod.") != std::string::npos);
}
// Block index of a "transformer_blocks.N." name, or -1.
int64_t block_of(const std::string& name) {
  static const std::string p = "transformer_blocks.";
  if (name.rfind(p, 0) != 0) return -1;
  size_t i = p.size();
  int64_t v = 0;
  bool any = false;
  while (i < name.size() && std::isdigit(static_cast<unsigned char>(name[i]))) {
    v = v * 10 + (name[i] - '0');
    ++i;
    any = true;
  }
  return any ? v : -1;
}
}  // namespace

int64_t ModelSizes::modulation_bytes() const {
  int64_t n = 0;
  for (const auto& t : transformer.tensors)
    if (is_modulation(t.name)) n += t.bytes;
  return n;
}

int64_t ModelSizes::block_bytes() const {
  std::map<int64_t, int64_t> per_block;
  for (const auto& t : transformer.tensors) {
    const int64_t b = block_of(t.name);
    if (b >= 0 && !is_modulation(t.name)) per_block[b] += t.bytes;
  }
  int64_t m = 0;
  for (const auto& [b, n] : per_block) m = std::max(m, n);
  return m;
}

int64_t ModelSizes::non_block_bytes() const {
  int64_t n = 0;
  for (const auto& t : transformer.tensors)
    if (block_of(t.name) < 0) n += t.bytes;
  return n;
}

ComponentSize reformat(const ComponentSize& c, double bits_per_weight, const std::string& storage) {
  ComponentSize out = c;
  out.format = storage;
  for (auto& t : out.tensors) {
    // Small Linears (the 64-wide img_in / proj_out) stay as they are in the published files.
    if (!t.linear || t.numel < (int64_t(1) << 20)) continue;
    t.bytes = static_cast<int64_t>(std::ceil(t.numel * bits_per_weight / 8.0));
    t.storage = storage;
  }
  return out;
}

// ---- modes ------------------------------------------------------------------------------------

const char* to_string(TextEncoderPlace p) {
  switch (p) {
    case TextEncoderPlace::Gpu:
      return "gpu";
    case TextEncoderPlace::Offload:
      return "offload";
    case TextEncoderPlace::Cpu:
      return "cpu";
  }
  return "?";
}

const char* to_string(TransformerPlace p) {
  switch (p) {
    case TransformerPlace::Resident:
      return "resident";
    case TransformerPlace::Modulation:
      return "modulation";
    case TransformerPlace::Stream:
      return "stream";
  }
  return "?";
}

const std::vector<MemoryMode>& memory_modes() {
  using TE = TextEncoderPlace;
  using TR = TransformerPlace;
  static const std::vector<MemoryMode> modes = {
      {"resident", TE::Gpu, TR::Resident, "every component on the device (fastest, most memory)"},
      {"offload-text", TE::Offload, TR::Resident,
       "transformer resident; text encoder in pinned host memory, on the device only to encode"},
      {"modulation", TE::Offload, TR::Modulation,
       "text encoder offloaded; transformer without its timestep-only modulation weights "
       "(outputs precomputed per job)"},
      {"cpu-text", TE::Cpu, TR::Modulation,
       "text encoder on the CPU; transformer without its modulation weights"},
      {"stream", TE::Offload, TR::Stream,
       "text encoder offloaded; transformer blocks streamed from pinned host memory (as many "
       "kept on the device as fit)"},
      {"stream-cpu-text", TE::Cpu, TR::Stream,
       "text encoder on the CPU; transformer blocks streamed (the least device memory)"},
  };
  return modes;
}

std::vector<std::string> memory_mode_names() {
  std::vector<std::string> names = {"auto"};
  for (const auto& m : memory_modes()) names.push_back(m.name);
  return names;
}

const MemoryMode* find_memory_mode(const std::string& name) {
  for (const auto& m : memory_modes())
    if (name == m.name) return &m;
  return nullptr;
}

void check_memory_mode(const std::string& name) {
  if (name.empty() || name == "auto" || find_memory_mode(name)) return;
  std::string list;
  for (const auto& n : memory_mode_names()) list += (list.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown memory mode '" + name + "' (expected one of: " + list +
                              "; `qwen-image plan --list-modes` lists them)");
}

// ---- activation estimates ----------------------------------------------------------------------

namespace {
int64_t image_tokens(const JobShape& job) {
  // Latents are 1/8 of the pixels, packed 2 x 2: one token per 16 x 16 pixels. Edit condition
  // images are resized to about 1024 x 1024 (pipeline_edit: calculate_dimensions(1024 * 1024)).
  // Decompose (Qwen-Image-Layered): `frames` of the same size in one sequence.
  return job.frames * (job.width / 16) * (job.height / 16) + job.condition_images * 64 * 64;
}
int64_t text_tokens(const JobShape& job) {
  // Prompt template (34 dropped tokens) and, for edits, the condition images' vision tokens in the
  // prompt (384 x 384 condition image: 27 x 27 merged patches).
  return job.text_tokens + 34 + job.condition_images * 729;
}
// Qwen-Image-2.1: the text rows of the transformer's prefix (the prompt, the 14-token system
// prefix the pipeline drops and per reference its `<imageN><|vision_start|>...<|vision_end|>` text;
// the image slots are the references' latent tokens, counted by image_tokens()), and the text
// encoder's sequence, which holds the slots themselves: 1,024 per 1024 x 1024 reference (16 px
// patches merged 2 x 2).
int64_t text_tokens21(const JobShape& job) {
  return job.text_tokens + 14 + job.condition_images * 8;
}
int64_t encoder_tokens21(const JobShape& job) {
  return text_tokens21(job) + job.condition_images * 1024;
}
int64_t prefix_tokens(const ModelSizes& m, const JobShape& job) {
  return m.qwen21 ? text_tokens21(job) + job.condition_images * 64 * 64 : text_tokens(job);
}
}  // namespace

int64_t transformer_activation_bytes(const ModelSizes& m, const JobShape& job) {
  // Qwen-Image-2.1: one stream (text + references + target; its SwiGLU 3D wide) at the first step,
  // which runs the whole sequence; about the same count of [S, D] copies.
  const int64_t s = m.qwen21 ? prefix_tokens(m, job) + (job.width / 16) * (job.height / 16)
                             : image_tokens(job) + text_tokens(job);
  // Live at the peak of a block (one pass; CFG passes run one after the other): the two streams
  // [S, D] and their normed / modulated copies, q, k, v and RoPE'd q, k (float32 tables), the
  // attention output, and the MLP's [S, 4D] projection with its GELU: about 22 [S, D] tensors in
  // the compute dtype. Flash / efficient attention: no [S, S] scores (all-true masks are dropped).
  int64_t bytes = job.batch * s * m.dim * 22 * m.dtype_bytes;
  // A quantised Linear is dequantised per call (models/quant.h): the largest one (img_mod,
  // [6D, D]) in the compute dtype, two in flight.
  const bool quantised = std::any_of(
      m.transformer.tensors.begin(), m.transformer.tensors.end(),
      [&](const TensorSize& t) { return t.linear && t.bytes < t.numel * m.dtype_bytes; });
  if (quantised) bytes += 2 * 6 * m.dim * m.dim * m.dtype_bytes;
  return bytes;
}

int64_t text_encoder_activation_bytes(const ModelSizes& m, const JobShape& job) {
  if (m.qwen21) {
    // Qwen3-VL through SDPA (no [T, T] scores): per layer ~10 hidden copies and the MLP's gate /
    // up; the vision tower on each reference's 4,096 patches (1,152 wide, ~20 copies).
    const int64_t t = encoder_tokens21(job);
    const int64_t lm = job.batch * t * (2 * m.text_intermediate + 10 * m.text_hidden);
    const int64_t vision = job.condition_images * 4096 * 1152 * 20;
    return std::max<int64_t>((lm + vision) * m.dtype_bytes, 256 * kMiB);
  }
  const int64_t t = text_tokens(job);
  // Per layer: hidden [T, H] copies (~10) and the MLP's gate / up [T, I]; eager attention scores
  // [heads = 28, T, T] in float32. Prompts are encoded one batch at a time (CFG: two encodes).
  const int64_t per =
      job.batch *
      (t * (2 * m.text_intermediate + 10 * m.text_hidden) * m.dtype_bytes + 28 * t * t * 4);
  return std::max<int64_t>(per, 256 * kMiB);
}

int64_t vae_decode_bytes(const JobShape& job, int64_t dtype_bytes, bool tiled) {
  // models/vae.cpp vae_peak_bytes: 768 + 336 * element size bytes per pixel, 50% headroom.
  auto per = [&](int64_t pixels) { return pixels * (768 + 336 * dtype_bytes) * 3 / 2; };
  if (!tiled) return job.batch * per(job.width * job.height);
  // One 256 x 256 tile at a time, plus the blended float32 output rows and the result.
  return per(256 * 256) + job.batch * job.width * job.height * 3 * 4 * 2;
}

int64_t modulation_cache_bytes(const ModelSizes& m, const JobShape& job) {
  if (m.qwen21) return 0;  // one shared modulation, computed per step in the forward
  // Per step and block: img_mod [B (x2 with zero_cond_t), 6D] and txt_mod [B, 6D]; norm_out
  // [B, 2D] and temb [B, D] per step.
  const int64_t rows = job.batch * ((m.zero_cond_t ? 2 : 1) + 1);
  return job.steps * (m.layers * rows * 6 * m.dim + job.batch * 3 * m.dim) * m.dtype_bytes;
}

int64_t kv_cache_bytes(const ModelSizes& m, const JobShape& job) {
  if (!m.qwen21) return 0;
  // Transformer21KVCache: k and v [B, prefix, heads, head_dim] per block, one cache per CFG branch.
  return 2 * m.layers * job.batch * prefix_tokens(m, job) * m.dim * m.dtype_bytes *
         (job.cfg ? 2 : 1);
}

// ---- the planner
// ---------------------------------------------------------------------------------

namespace {

// Rough extra seconds a placement costs a job over all-resident, for auto's choice among the
// modes that fit: host -> device copies at 20 GB/s (pinned PCIe 4.0 x16), text encoding on the
// CPU at 100 GFLOP/s for a 128-token prompt (twice with CFG).
double estimated_cost(const ModelSizes& m, const JobShape& job, const MemoryPlan& p) {
  constexpr double kCopy = 20e9, kCpuFlops = 100e9;
  const double passes = double(job.steps) * (job.cfg ? 2 : 1);
  double cost = double(p.streamed_bytes_per_pass) * passes / kCopy;
  if (p.transformer != TransformerPlace::Resident) cost += double(m.modulation_bytes()) / kCopy;
  const double te_params = double(m.text_encoder.bytes()) / double(m.dtype_bytes);
  if (p.text_encoder == TextEncoderPlace::Offload) cost += double(m.text_encoder.bytes()) / kCopy;
  if (p.text_encoder == TextEncoderPlace::Cpu)
    cost += 2.0 * te_params * 128 * (job.cfg ? 2 : 1) / kCpuFlops;
  // Qwen-Image-2.1: the transformer leaves the device for the encode and comes back.
  if (p.swap_transformer) cost += double(p.transformer_device_bytes) / kCopy;
  return cost;
}

MemoryPlan evaluate(const ModelSizes& m, const JobShape& job, int64_t budget,
                    const MemoryMode& mode, int64_t resident_blocks, bool kv = false) {
  MemoryPlan p;
  p.mode = mode.name;
  p.text_encoder = mode.text_encoder;
  p.transformer = mode.transformer;
  // Qwen-Image-2.1 has no per-block timestep-only weights: `modulation` keeps it resident.
  if (m.qwen21 && p.transformer == TransformerPlace::Modulation)
    p.transformer = TransformerPlace::Resident;
  p.budget = budget;
  p.kv_cache = m.qwen21 && kv;
  p.kv_cache_bytes = job.kv_cache ? kv_cache_bytes(m, job) : 0;
  const int64_t total = m.transformer.bytes();
  const int64_t mod = m.modulation_bytes();
  const int64_t block = m.block_bytes();
  const int64_t te = m.text_encoder.bytes();
  const int64_t vae = m.vae.bytes();
  const int64_t te_gpu = mode.text_encoder == TextEncoderPlace::Gpu ? te : 0;

  int64_t t_dev = total;  // transformer bytes resident between passes
  int64_t buffers = 0;    // stream: the two block slots
  if (p.transformer != TransformerPlace::Resident) {
    p.modulation_cache_bytes = modulation_cache_bytes(m, job);
    t_dev = total - mod;
  }
  if (mode.transformer == TransformerPlace::Stream) {
    resident_blocks = std::clamp<int64_t>(resident_blocks, 0, m.layers);
    p.resident_blocks = resident_blocks;
    const int64_t streamed = m.layers - resident_blocks;
    t_dev = m.non_block_bytes() + resident_blocks * block;
    buffers = streamed > 0 ? std::min<int64_t>(2, streamed) * block : 0;
    p.streamed_bytes_per_pass = streamed * block;
  } else {
    p.resident_blocks = m.layers;
  }
  p.transformer_device_bytes = t_dev;

  // Encode: the text encoder (unless on the CPU) with its activations; edit condition images go
  // through the VAE encoder (bounded by the decode estimate of one 1024 x 1024 image).
  int64_t enc_act =
      mode.text_encoder == TextEncoderPlace::Cpu ? 0 : text_encoder_activation_bytes(m, job);
  int64_t cond = 0;
  if (job.condition_images > 0) {
    JobShape c = job;
    c.width = c.height = 1024;
    c.batch = 1;
    cond = vae_decode_bytes(c, m.dtype_bytes, false);
  }
  p.encode_peak =
      t_dev + vae + (mode.text_encoder == TextEncoderPlace::Cpu ? 0 : te) + std::max(enc_act, cond);
  // Qwen-Image-2.1 with an offloaded text encoder: when the two do not fit together, the resident
  // transformer goes to pinned host memory for the encode (not with streaming: its resident
  // blocks are chosen to fit next to the encoder).
  if (m.qwen21 && mode.text_encoder == TextEncoderPlace::Offload &&
      p.transformer == TransformerPlace::Resident &&
      kDeviceReserve + p.encode_peak > budget - budget / 32) {
    p.swap_transformer = true;
    p.encode_peak -= t_dev;
  }
  // Modulation precompute (not resident): two blocks' img_mod + txt_mod weights in flight and the
  // growing output cache.
  if (p.transformer != TransformerPlace::Resident && !m.qwen21) {
    const int64_t per_block_mod = m.layers > 0 ? mod / m.layers : 0;
    p.modulation_peak = t_dev + te_gpu + vae + 2 * per_block_mod + p.modulation_cache_bytes;
  }
  // Denoise: text embeddings (cond + uncond, [B, T, 3584]) are small next to the activations.
  const int64_t embeds = 2 * job.batch * text_tokens(job) * m.text_hidden * m.dtype_bytes;
  p.denoise_peak = t_dev + buffers + te_gpu + vae + p.modulation_cache_bytes + embeds +
                   transformer_activation_bytes(m, job) + (p.kv_cache ? p.kv_cache_bytes : 0);
  // Decode: the VAE tiles when untiled would not fit (models/vae.h vae_should_tile: also above
  // 4 MP per image).
  const int64_t decode_base = t_dev + te_gpu + vae + kDeviceReserve;
  p.vae_tiled = job.width * job.height > int64_t(2048) * 2048 ||
                decode_base + vae_decode_bytes(job, m.dtype_bytes, false) > budget;
  if (job.width <= 256 && job.height <= 256) p.vae_tiled = false;
  p.decode_peak = t_dev + te_gpu + vae + vae_decode_bytes(job, m.dtype_bytes, p.vae_tiled);

  p.peak =
      kDeviceReserve + std::max({p.encode_peak, p.modulation_peak, p.denoise_peak, p.decode_peak});
  // A margin for allocator fragmentation on top of the reserve.
  p.fits = p.peak <= budget - budget / 32;
  p.cost_seconds = estimated_cost(m, job, p);
  return p;
}

// The mode at its best: stream keeps as many blocks resident as fit.
MemoryPlan evaluate_blocks(const ModelSizes& m, const JobShape& job, int64_t budget,
                           const MemoryMode& mode, bool kv) {
  if (mode.transformer != TransformerPlace::Stream)
    return evaluate(m, job, budget, mode, m.layers, kv);
  // Peaks grow with the resident blocks: binary search the largest count that fits.
  MemoryPlan best = evaluate(m, job, budget, mode, 0, kv);
  if (!best.fits) return best;
  int64_t lo = 0, hi = m.layers;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (evaluate(m, job, budget, mode, mid, kv).fits)
      lo = mid;
    else
      hi = mid - 1;
  }
  return evaluate(m, job, budget, mode, lo, kv);
}

// Qwen-Image-2.1: with the KV cache when the job wants it and it fits, else without (every step
// then runs the whole sequence; the plan says so).
MemoryPlan evaluate_best(const ModelSizes& m, const JobShape& job, int64_t budget,
                         const MemoryMode& mode) {
  const bool kv = m.qwen21 && job.kv_cache;
  MemoryPlan p = evaluate_blocks(m, job, budget, mode, kv);
  if (p.fits || !kv) return p;
  MemoryPlan off = evaluate_blocks(m, job, budget, mode, false);
  return off.fits ? off : p;
}

MemoryPlan choose(const ModelSizes& m, const JobShape& job, int64_t budget,
                  const std::string& mode) {
  if (!mode.empty() && mode != "auto")
    return evaluate_best(m, job, budget, *find_memory_mode(mode));
  // The cheapest mode that fits (estimated_cost; ties: the earlier mode of memory_modes()).
  // Qwen-Image-2.1: a mode with the KV cache before any without it (an uncached step reruns the
  // whole prefix: with references several times the target's work).
  MemoryPlan best, last;
  for (const auto& mm : memory_modes()) {
    last = evaluate_best(m, job, budget, mm);
    const bool better_kv = last.kv_cache && !best.kv_cache;
    const bool worse_kv = !last.kv_cache && best.kv_cache;
    if (last.fits &&
        (!best.fits || better_kv || (!worse_kv && last.cost_seconds < best.cost_seconds - 0.5)))
      best = last;
  }
  return best.fits ? best : last;
}

struct FormatOption {
  const char* name;
  double bits;
  const char* example;
};
const FormatOption kFormats[] = {
    {"fp8 (F8_E4M3)", 8.0, "e.g. qwen_image_fp8_e4m3fn.safetensors"},
    {"GGUF Q8_0", 8.5, "e.g. qwen-image-Q8_0.gguf"},
    {"GGUF Q6_K", 6.5625, "e.g. qwen-image-Q6_K.gguf"},
    {"GGUF Q5_K_M", 5.5, "e.g. qwen-image-Q5_K_M.gguf"},
    {"GGUF Q4_K_M", 4.5, "e.g. qwen-image-Q4_K_M.gguf"},
    {"GGUF Q3_K_M", 3.4375, "e.g. qwen-image-Q3_K_M.gguf"},
    {"GGUF Q2_K", 2.625, "e.g. qwen-image-Q2_K.gguf"},
};

double bits_per_linear_weight(const ComponentSize& c) {
  int64_t bytes = 0, numel = 0;
  for (const auto& t : c.tensors)
    if (t.linear && t.numel >= (int64_t(1) << 20)) {
      bytes += t.bytes;
      numel += t.numel;
    }
  return numel > 0 ? 8.0 * bytes / numel : 16.0;
}

std::string advise(const ModelSizes& m, const JobShape& job, int64_t budget,
                   const MemoryPlan& failed) {
  const std::string in_mode =
      failed.requested == "auto" ? std::string() : " in mode " + failed.requested;
  std::string out = "the model needs " + format_gib(failed.peak) + " of device memory" + in_mode +
                    " at " + std::to_string(job.width) + "x" + std::to_string(job.height) +
                    " but " + format_gib(budget) + " is available";
  if (failed.requested != "auto") {
    const MemoryPlan a = choose(m, job, budget, "auto");
    if (a.fits)
      return out + "; --memory auto fits (mode " + a.mode + ", predicted peak " +
             format_gib(a.peak) + ")";
  }
  // Quantise-on-load (`--quantize fp8`, plan/model_sizes.h quantize_on_load): the files the user
  // has, in fp8 memory. Named first when it fits, next to the file / format that would.
  std::string quantized;
  if (!m.quantize_fp8) {
    ModelSizes q = m;
    q.transformer = quantize_on_load(m.transformer, io::QuantizeMode::Fp8);
    q.quantize_fp8 = true;
    if (q.transformer.bytes() < m.transformer.bytes()) {
      const MemoryPlan p = choose(q, job, budget, failed.requested);
      if (p.fits)
        quantized = "; --quantize fp8 (the transformer's block weights quantised to fp8 as they "
                    "load, " +
                    format_gib(q.transformer.bytes()) + ", no other download) would fit" +
                    in_mode + " (mode " + p.mode + ", predicted peak " + format_gib(p.peak) + ")";
    }
  }
  const double bits = bits_per_linear_weight(m.transformer);
  for (const auto& f : kFormats) {
    if (f.bits >= bits - 0.01) continue;
    ModelSizes alt = m;
    alt.transformer = reformat(m.transformer, f.bits, f.name);
    const MemoryPlan p = choose(alt, job, budget, failed.requested);
    if (p.fits)
      return out + quantized + (quantized.empty() ? "; " : "; or ") + "the transformer as " +
             f.name + " (" + format_gib(alt.transformer.bytes()) + ", " + f.example +
             ") would fit" + in_mode + " (mode " + p.mode + ", predicted peak " +
             format_gib(p.peak) + "): pass it with --transformer FILE";
  }
  if (!quantized.empty()) return out + quantized;
  if (job.width * job.height > 1024 * 1024) {
    JobShape small = job;
    small.width = small.height = 1024;
    const MemoryPlan p = choose(m, small, budget, failed.requested);
    if (p.fits)
      return out + "; a 1024x1024 image would fit (predicted peak " + format_gib(p.peak) + ")";
  }
  return out + "; no transformer format fits: use a card with more memory or --device cpu";
}

}  // namespace

MemoryPlan plan_memory(const ModelSizes& model, const JobShape& job, int64_t device_bytes,
                       const std::string& mode) {
  check_memory_mode(mode);
  if (!model.transformer.present())
    throw std::invalid_argument("memory plan: the model has no transformer weights");
  const std::string requested = mode.empty() ? "auto" : mode;
  MemoryPlan p = choose(model, job, device_bytes, requested);
  p.requested = requested;
  if (!p.fits) p.advice = advise(model, job, device_bytes, p);
  return p;
}

// ---- text ---------------------------------------------------------------------------------------

std::string format_gib(int64_t bytes) {
  char buf[64];
  if (bytes < 100 * kMiB)  // small models (test fixtures): MiB, so the line says something
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / kMiB);
  else
    std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / kGiB);
  return buf;
}

std::vector<std::string> MemoryPlan::lines(const ModelSizes& m) const {
  std::vector<std::string> out;
  out.push_back("memory mode: " + mode + (requested == "auto" ? " (auto)" : "") + ", device " +
                format_gib(budget));
  std::string t = "transformer: " + std::string(to_string(transformer)) + " (" +
                  format_gib(transformer_device_bytes) + " on the device, " + m.transformer.format;
  if (transformer != TransformerPlace::Resident && !m.qwen21)
    t += "; img_mod/txt_mod " + format_gib(m.modulation_bytes()) +
         " in host memory, outputs precomputed per job " + format_gib(modulation_cache_bytes);
  if (transformer == TransformerPlace::Stream)
    t += "; " + std::to_string(resident_blocks) + " of " + std::to_string(m.layers) +
         " blocks resident, " + format_gib(streamed_bytes_per_pass) + " streamed per pass";
  if (m.qwen21 && (mode == "modulation" || mode == "cpu-text"))
    t += "; no per-block timestep-only weights in Qwen-Image-2.1: kept resident";
  if (swap_transformer) t += "; in pinned host memory while the text encoder encodes";
  out.push_back(t + ")");
  const std::string te = format_gib(m.text_encoder.bytes()) + " " + m.text_encoder.format;
  switch (text_encoder) {
    case TextEncoderPlace::Gpu:
      out.push_back("text_encoder: gpu (" + te + " on the device)");
      break;
    case TextEncoderPlace::Offload:
      out.push_back("text_encoder: offload (" + te +
                    " in pinned host memory, on the device only while encoding)");
      break;
    case TextEncoderPlace::Cpu:
      out.push_back("text_encoder: cpu (" + te + " in host memory, encodes on the CPU)");
      break;
  }
  out.push_back(std::string("vae: ") + (vae_tiled ? "tiled" : "untiled") + " (" +
                format_gib(m.vae.bytes()) + " on the device)");
  if (m.qwen21) {
    if (kv_cache)
      out.push_back("kv_cache: on (" + format_gib(kv_cache_bytes) +
                    " on the device: the text and reference keys/values of every block)");
    else if (kv_cache_bytes > 0)
      out.push_back("kv_cache: off (it would need " + format_gib(kv_cache_bytes) +
                    ", which does not fit: every step runs the whole sequence; fewer or smaller "
                    "references keep it)");
    else
      out.push_back("kv_cache: off (not asked for: every step runs the whole sequence)");
  }
  out.push_back("predicted peak: " + format_gib(peak));
  return out;
}

std::string MemoryPlan::summary() const {
  std::string s = "memory mode " + mode + (requested == "auto" ? " (auto)" : "") +
                  ": transformer " + to_string(transformer);
  if (transformer == TransformerPlace::Stream)
    s += " (" + std::to_string(resident_blocks) + " blocks resident)";
  if (swap_transformer) s += " (off the device while encoding)";
  s += std::string(", text encoder ") + to_string(text_encoder) + ", vae " +
       (vae_tiled ? "tiled" : "untiled") + ", predicted peak " + format_gib(peak) + " of " +
       format_gib(budget);
  if (kv_cache) s += ", kv cache " + format_gib(kv_cache_bytes);
  return s;
}

int64_t parse_size(const std::string& text) {
  const auto bad = [&] {
    return std::invalid_argument("bad memory size '" + text +
                                 "' (expected e.g. 24G, 24GB, 24GiB, 16384M or a byte count)");
  };
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  if (i == 0) throw bad();
  double v = 0;
  try {
    v = std::stod(text.substr(0, i));
  } catch (const std::exception&) {
    throw bad();
  }
  std::string unit = text.substr(i);
  while (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  for (auto& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  double scale = 0;
  if (unit.empty() || unit == "B")
    scale = 1;
  else if (unit == "K" || unit == "KB" || unit == "KIB")
    scale = 1024.0;
  else if (unit == "M" || unit == "MB" || unit == "MIB")
    scale = double(kMiB);
  else if (unit == "G" || unit == "GB" || unit == "GIB")
    scale = double(kGiB);
  else if (unit == "T" || unit == "TB" || unit == "TIB")
    scale = double(kGiB) * 1024.0;
  else
    throw bad();
  const double bytes = v * scale;
  if (!(bytes > 0) || bytes > 9e18) throw bad();
  return static_cast<int64_t>(bytes);
}

}  // namespace qwen::plan
