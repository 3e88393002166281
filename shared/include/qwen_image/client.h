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
  int steps = 50;
  float true_cfg_scale = 4.0f;
  int64_t seed = 0;
  int num_images_per_prompt = 1;
  float strength = 0.6f;
  bool exact_geometry = true;  // keep the input's pixel grid (editor round trips)
  std::vector<ImageView> images;
  std::optional<ImageView> mask;                   // white = repaint
  PixelFormat result_format = PixelFormat::RGBA8;  // RGBA8, RGB8, RGBA_F32 or RGB_F32 (alpha = 1)
  int max_sequence_length = 512;
  std::vector<JobLora> loras;  // at most 8, strengths finite in [-10, 10]
  std::optional<float> shift;  // fixed time shift mu = ln shift, in (0, 100]
  bool lightning = false;      // Lightning defaults (CFG 1, shift 3); steps stay the client's
  // Decompose only (protocol version 3): RGBA layers per picture (kMinLayers..kMaxLayers), the
  // reference's resolution bucket (640 or 1024; the output's area at the input's aspect ratio) and
  // cfg_normalize. width/height must stay 0: the resolution sets the size.
  int layers = kDefaultLayers;
  int resolution = kDefaultResolution;
  bool cfg_normalize = false;
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

struct JobProgress {
  int step = 0;
  int total = 0;
  std::optional<Image> preview;  // small RGB8 preview, present every few steps
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
