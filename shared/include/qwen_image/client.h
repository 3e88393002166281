// Client side of the daemon protocol: what the GIMP plug-in and `qwen-image --daemon` use.
// Pixels travel through POSIX shared memory (Boost.Interprocess), never encoded.
// This header is the contract between shared/ (owner: transport) and plugin/. Changes must stay
// source-compatible for the plug-in (add fields, do not rename).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "qwen_image/limits.h"

namespace qwen::ipc {

enum class PixelFormat : uint32_t {
  RGBA8 = 1,
  RGB8 = 2,
  RGBA_F32 = 3,
  RGB_F32 = 4,
  GRAY8 = 5,     // single channel: masks
  GRAY_F32 = 6,  // single channel: masks, 0..1
};
int channels(PixelFormat);
int bytes_per_channel(PixelFormat);

// A view of caller-owned pixels (rows may be padded: stride >= width * bytes per pixel).
struct ImageView {
  int width = 0;
  int height = 0;
  PixelFormat format = PixelFormat::RGBA8;
  size_t stride = 0;  // bytes per row; 0 = tightly packed
  const void* data = nullptr;
};

// Pixels owned by the client after a job (tightly packed).
struct Image {
  int width = 0;
  int height = 0;
  PixelFormat format = PixelFormat::RGBA8;
  std::vector<uint8_t> bytes;
};

// A LoRA for one job: `name` is a bare name (no '/', looked up as NAME or NAME.safetensors in the
// daemon's lora_dir) or an absolute path to a file the client's user owns.
struct JobLora {
  std::string name;
  float strength = 1.0f;
};

// Decompose (Qwen-Image-Layered, issue #16): the limits the daemon, the CLI and the plug-in share.
inline constexpr int kMinLayers = 2;
inline constexpr int kMaxLayers = 10;
inline constexpr int kDefaultLayers = 4;
inline constexpr int kDefaultResolution = 640;
// The reference's `resolution` buckets (QwenImageLayeredPipeline asserts resolution in [640,
// 1024]).
inline bool valid_decompose_resolution(int r) { return r == 640 || r == 1024; }

// Input images (protocol version 4): a job carries at most kMaxJobImages pictures (references and
// the picture an edit-inpaint-like pipeline paints into); the edit pipelines take at most
// kMaxEditReferences of them (Qwen-Image-2.1 edits: 1-10 references; a model may take fewer, see
// ModelCaps::max_references). Version-2/3 clients are limited to 8 (their header's descriptors).
inline constexpr int kMaxJobImages = 16;
inline constexpr int kMaxEditReferences = 10;

struct JobRequest {
  std::string pipeline =
      "generate";     // generate | img2img | inpaint | edit | edit-plus | edit-inpaint |
                      // edit-auto (the daemon picks edit or edit-plus: several images, or a
                      // model whose model_index.json names QwenImageEditPlusPipeline -> edit-plus)
                      // | decompose (one RGB/RGBA image in, prompts x images x `layers` RGBA
                      // layers out, each entry's layers bottom first; result_format RGBA8/RGBA_F32)
  std::string model;  // "" = the daemon's default model
  std::vector<std::string> prompts;  // >= 1
  std::vector<std::string> negative_prompts;
  int width = 0;  // 0 = pipeline default
  int height = 0;
  int steps = 50;               // kModelDefaultSteps (0): the model's default (Lightning: 4/8)
  float true_cfg_scale = 4.0f;  // kModelDefaultTrueCfgScale (-1): the model's (Lightning: 1)
  int64_t seed = 0;
  int num_images_per_prompt = 1;
  float strength = 0.6f;
  bool exact_geometry = true;  // keep the input's pixel grid (editor round trips)
  std::vector<ImageView> images;
  std::optional<ImageView> mask;                   // white = repaint
  PixelFormat result_format = PixelFormat::RGBA8;  // RGBA8, RGB8, RGBA_F32 or RGB_F32 (alpha = 1)
  int max_sequence_length = 512;
  std::vector<JobLora> loras;  // at most 8, strengths finite in [-10, 10]
  std::optional<float> shift;  // fixed time shift mu = ln shift, in (0, 100]; unset: the model's
                               // (Lightning: 3)
  // Lightning defaults for the values left to the model (steps 8, CFG 1, shift 3) without a LoRA
  // the daemon recognises as Lightning (merged Lightning checkpoints); explicit values stay.
  bool lightning = false;
  // Decompose only (protocol version 3): RGBA layers per picture (kMinLayers..kMaxLayers), the
  // reference's resolution bucket (640 or 1024; the output's area at the input's aspect ratio) and
  // cfg_normalize. width/height must stay 0: the resolution sets the size.
  int layers = kDefaultLayers;
  int resolution = kDefaultResolution;
  bool cfg_normalize = false;
  // Qwen-Image-2.1 (issue #15, protocol version 4): keep the text and reference keys/values from
  // the first step (the reference's use_kv_cache; false = uncached, `--no-kv-cache`), and the
  // reference's output_resolution (default output side and reference area; 0 = the model's
  // default, else kMinOutputResolution..kMaxOutputResolution). Other models ignore both.
  bool kv_cache = true;
  int output_resolution = 0;
};

// What a served model can do, as the daemon reports it (one definition for the daemon, the CLI and
// both plug-in front-ends; protocol.h encode_models / decode_models carry it).
struct ModelCaps {
  bool known = false;  // false: not loaded yet and not inferable, or a daemon older than version 3
  std::string
      family;  // the model type ("qwen-image", "qwen-image-edit-2511", ...) or pipeline class
  bool can_generate = false;   // generate / img2img / inpaint
  bool can_edit = false;       // edit / edit-plus / edit-inpaint / edit-auto
  bool can_decompose = false;  // decompose (Qwen-Image-Layered)
  bool rgba = false;           // takes and returns RGBA pictures
  bool loras = false;          // accepts the job's LoRAs
  int max_references = 0;      // input images an edit takes (Edit: 1, Edit-Plus: 3)
};

// What a job is doing (protocol version 4; a version-3 daemon reports Denoising only).
enum class JobPhase : uint32_t {
  Queued = 0,          // waiting behind other jobs (JobProgress::queue_position)
  LoadingModel = 1,    // the job's model is loading (JobProgress::fraction / detail)
  EncodingPrompt = 2,  // the model is loaded; prompts (and references) are being encoded
  Denoising = 3,       // step / total
  Decoding = 4,        // the last step is done; the VAE decodes the result
};
const char* to_string(JobPhase);  // "queued", "loading model", "encoding prompt", ...

struct JobProgress {
  int step = 0;
  int total = 0;
  std::optional<Image> preview;  // small RGB8 preview, present every few steps
  // Protocol version 4 (zero/empty from an older daemon, where phase stays Denoising).
  JobPhase phase = JobPhase::Denoising;
  float fraction = -1.0f;  // LoadingModel: share of the components loaded (0..1); -1 unknown
  std::string detail;      // LoadingModel: e.g. "loading transformer (2/3)"; else ""
  int queue_position = 0;  // Queued: 1 = next
};

// A LoRA file the daemon can apply by name (protocol version 4 status: the files in its
// lora_dir folders). `lightning`: recognised as a Lightning LoRA by its file name or its
// safetensors metadata (as daemon/models/lora.h lightning_info does), `lightning_steps` 4 or 8
// when the name says so, else 0.
struct LoraInfo {
  std::string name;  // what a job sends (JobLora::name): the file name without .safetensors
  bool lightning = false;
  int lightning_steps = 0;
};

struct DaemonStatus {
  int64_t pid = 0;
  std::string version;
  std::string device;
  std::vector<std::string> models;  // loaded or configured model names, default first
  int queued_jobs = 0;
  bool busy = false;
  int64_t memory_bytes = 0;         // resident memory (host) and device memory in use
  int64_t device_memory_bytes = 0;  // weights of the loaded models
  // Added by the transport: details for `qwen-image status`.
  std::string instance;
  int protocol_version = 0;
  std::vector<std::string> model_states;  // "name<TAB>state<TAB>dir" per model, same order
  std::vector<ModelCaps> model_caps;      // per model, same order (known = false when unknown)
  int step = 0;                           // progress of the running job
  int total = 0;
  int64_t jobs_done = 0;
  double heartbeat_age_s = 0;  // seconds since the daemon's last heartbeat
  // Protocol version 4: the LoRAs in the daemon's lora_dir(s), by name; entries that did not fit
  // into the status block are left out and counted in loras_left_out.
  std::vector<LoraInfo> loras;
  int loras_left_out = 0;
};

struct ClientError : std::runtime_error {
  enum class Kind {
    NoDaemon,          // nothing serves this instance
    DaemonDied,        // the daemon went away during the job
    ProtocolMismatch,  // plug-in and daemon versions disagree
    Rejected,          // the daemon refused the request (message says why)
    JobFailed,         // the job ran and failed (out of memory, model error...)
    Cancelled,
    Timeout,
    SharedMemory,  // cannot create/open shared memory (e.g. Flatpak's private /dev/shm)
  };
  ClientError(Kind k, const std::string& msg) : std::runtime_error(msg), kind(k) {}
  Kind kind;
};

// Instance name: explicit, else $QWEN_IMAGE_INSTANCE, else "default".
std::string resolve_instance(const std::string& explicit_name = "");

class Client {
 public:
  // Throws ClientError(NoDaemon) within `timeout_ms` when no daemon serves the instance.
  static Client connect(const std::string& instance = "", int timeout_ms = 3000);
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  ~Client();

  DaemonStatus status();
  // Runs one job and blocks until it ends. `progress` is called from this thread; returning false
  // cancels the job. Throws ClientError on any failure (daemon death is noticed within seconds).
  std::vector<Image> run(const JobRequest& request,
                         const std::function<bool(const JobProgress&)>& progress = {});

 private:
  Client() = default;
  struct Impl;
  Impl* impl_ = nullptr;
};

}  // namespace qwen::ipc
