// Wire layout of the daemon protocol (internal to shared/ and daemon/server; the plug-in uses
// client.h). Everything here is torch-free and Boost-free so that the request validation can be
// fuzzed on its own.
//
// Three kinds of POSIX shared-memory objects, all 0600 and named per uid and per instance:
//   <prefix>.lock                 empty; the daemon holds flock(LOCK_EX) on it while it lives
//   <prefix>.ctl                  daemon-owned control block: status, heartbeat, submission slots
//   <prefix>.job.<pid>.<id>       client-owned, one per job: request, input pixels, progress
//   <prefix>.res.<pid>.<id>       daemon-owned, one per finished job: the result pixels
// with <prefix> = "qwen-image.<uid>.<instance>". Each segment starts with a SegmentPrefix whose
// layout never changes, so a mismatched client and daemon can always read each other's version.
// No pointers: every location is an offset from the segment start.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qwen_image/client.h"

namespace qwen::ipc::proto {

constexpr uint32_t kMagicControl = 0x43494D51;  // "QMIC"
constexpr uint32_t kMagicJob = 0x4A494D51;      // "QMIJ"
constexpr uint32_t kMagicResult = 0x52494D51;   // "QMIR"
// The job format's version, which clients write into their job segments. 2: LoRAs, shift and
// lightning in JobHeader; 3: decompose (layers, resolution, cfg_normalize appended to JobHeader);
// 4: more input images (kMaxJobImages), kv_cache and output_resolution (Qwen-Image-2.1), the job's
// phase and model-load progress, all appended to JobHeader; 5: the model's defaults (steps
// kModelDefaultSteps = 0 and true_cfg_scale kModelDefaultTrueCfgScale = -1, limits.h, which
// older versions refuse; shift 0 as before), same header layout as version 4.
// The daemon still takes version-2, 3 and 4 job segments (a version-2/3 header ends before the
// later fields, which then take their defaults; a version-4 job's steps and CFG keep their
// meaning), so older plug-ins keep working with a newer daemon.
constexpr uint32_t kProtocolVersion = 5;
constexpr uint32_t kOldestJobVersion = 2;
// The control block and the result segments have not changed since version 2; they keep that
// number so that version-2 clients still attach. The daemon's job version travels in the status
// block's capability section (encode_models).
constexpr uint32_t kControlVersion = 2;

// Image descriptors in the version-2 part of JobHeader (all a version-2/3 client can send); a
// version-4 job carries up to kMaxJobImages (client.h), the rest in JobHeader::more_images.
constexpr int kMaxImages = 8;
constexpr int kMoreImages = kMaxJobImages - kMaxImages;
constexpr int kMaxResults = kMaxJobResults;
constexpr int kMaxLoras = kMaxJobLoras;
constexpr size_t kPhaseDetailBytes = 128;
constexpr int kSlots = 64;
constexpr int kPreviewMax = 256;  // previews are at most kPreviewMax x kPreviewMax RGB8
constexpr size_t kAlign = 64;

struct SegmentPrefix {
  uint32_t magic;
  uint32_t version;
  uint32_t header_size;
  uint32_t reserved;
  uint64_t segment_size;
};
static_assert(sizeof(SegmentPrefix) == 24);

struct ImageDesc {
  int32_t width;
  int32_t height;
  uint32_t format;  // PixelFormat
  uint32_t reserved;
  uint64_t stride;
  uint64_t offset;  // from the segment start
  uint64_t size;    // bytes reserved at offset (>= stride * (height - 1) + width * bpp)
};
static_assert(sizeof(ImageDesc) == 40);

enum class JobState : uint32_t {
  Submitted = 0,  // written by the client, not yet seen by the daemon
  Queued = 1,
  Running = 2,
  Done = 3,
  Failed = 4,
  Rejected = 5,
  Cancelled = 6,
};
inline bool is_final(JobState s) { return s >= JobState::Done; }

// Kind of a failure, stored next to the message (mirrors ClientError::Kind where it can).
enum class ErrorKind : uint32_t {
  None = 0,
  Rejected = 1,
  JobFailed = 2,
  Cancelled = 3,
  ProtocolMismatch = 4,
  ShuttingDown = 5,
};

constexpr size_t kErrorBytes = 1024;

// Job segment header. Fields marked [D] are written by the daemon only, [C] by the client only.
// The daemon copies the whole header into private memory before validating it.
struct JobHeader {
  SegmentPrefix prefix;     // [C] offset 0 (version-stable)
  uint32_t seq;             // [D] offset 24: futex word, bumped on every daemon-side change
  uint32_t state;           // [D] offset 28: JobState
  uint32_t cancel;          // [C] offset 32: 1 = cancel requested
  uint32_t collected;       // [C] offset 36: 1 = result copied out
  uint32_t error_kind;      // [D] offset 40: ErrorKind
  uint32_t reserved0;       //     offset 44
  char error[kErrorBytes];  // [D] offset 48: UTF-8, NUL-terminated
  // ---- request [C] ----
  int64_t client_pid;
  uint64_t job_id;
  char pipeline[32];
  char model[256];
  int32_t width;
  int32_t height;
  int32_t steps;  // version 5: kModelDefaultSteps (0) = the model's default
  int32_t num_images_per_prompt;
  int32_t max_sequence_length;
  float true_cfg_scale;  // version 5: kModelDefaultTrueCfgScale (-1) = the model's default
  float strength;
  uint32_t exact_geometry;
  int64_t seed;
  uint32_t result_format;
  uint32_t num_prompts;
  uint32_t num_negative_prompts;
  uint32_t num_images;
  uint64_t text_offset;  // strings: u32 byte length + bytes: prompts, negative prompts, LoRAs
  uint64_t text_size;
  ImageDesc images[kMaxImages];
  uint32_t has_mask;
  uint32_t reserved1;
  ImageDesc mask;
  uint64_t preview_offset;  // room for kPreviewMax^2 * 3 bytes
  uint64_t preview_size;
  // ---- progress [D] ----
  int32_t step;
  int32_t total;
  int32_t queue_position;  // 0 = running or not queued
  uint32_t preview_seq;
  int32_t preview_width;
  int32_t preview_height;
  // ---- result [D] ----
  uint64_t result_size;
  uint32_t num_results;
  uint32_t reserved2;
  // ---- request [C], version 2 ----
  uint32_t num_loras;               // LoRA strings (a name or an absolute path) in the text area
  uint32_t lightning;               // 1 = Lightning defaults (CFG 1, shift 3 unless given)
  float lora_strengths[kMaxLoras];  // one per LoRA, finite, in [-10, 10]
  float shift;                      // 0 = the model's (or Lightning's) default, else in (0, 100]
  uint32_t reserved3;
  // ---- request [C], version 3 (decompose, Qwen-Image-Layered; ignored by other pipelines) ----
  int32_t layers;          // RGBA layers to produce: kMinLayers..kMaxLayers (0 = kDefaultLayers)
  int32_t resolution;      // the reference's bucket: 640 or 1024 (0 = kDefaultResolution)
  uint32_t cfg_normalize;  // 0/1: rescale the CFG prediction to the conditional one's norm
  uint32_t reserved4;
  // ---- request [C], version 4 ----
  uint32_t kv_cache;                   // 0/1 (Qwen-Image-2.1's use_kv_cache; older versions: 1)
  int32_t output_resolution;           // 0 = the model's default, else kMin..kMaxOutputResolution
  ImageDesc more_images[kMoreImages];  // input images kMaxImages + 1 .. num_images
  // ---- progress [D], version 4 (written only into version-4 segments; set_phase / read_phase) --
  uint32_t phase_seq;    // seqlock over the three fields below (odd: writing)
  uint32_t phase;        // JobPhase
  float phase_fraction;  // LoadingModel: 0..1; -1 = unknown
  uint32_t reserved5;
  char phase_detail[kPhaseDetailBytes];  // UTF-8, NUL-terminated: "loading transformer (2/3)"
};
static_assert(offsetof(JobHeader, seq) == 24 && offsetof(JobHeader, state) == 28 &&
              offsetof(JobHeader, error) == 48);
// A version-2 job header: everything before the version-3 fields.
constexpr size_t kJobHeaderV2Size = offsetof(JobHeader, layers);
static_assert(kJobHeaderV2Size == 1920, "the version-2 job header layout must not change");
// A version-3 job header: everything before the version-4 fields.
constexpr size_t kJobHeaderV3Size = offsetof(JobHeader, kv_cache);
static_assert(kJobHeaderV3Size == 1936, "the version-3 job header layout must not change");
// The header size a job segment of `version` has (0 for a version the daemon does not take).
// Version 5 changed what steps / true_cfg_scale may say, not the layout.
constexpr size_t job_header_size(uint32_t version) {
  return version == 2                                  ? kJobHeaderV2Size
         : version == 3                                ? kJobHeaderV3Size
         : version == 4 || version == kProtocolVersion ? sizeof(JobHeader)
                                                       : 0;
}

struct ResultHeader {
  SegmentPrefix prefix;
  uint32_t count;
  uint32_t reserved;
  ImageDesc images[kMaxResults];
};

// Daemon status, published under a seqlock in the control block.
struct StatusBlock {
  char version[32];
  char device[64];
  char instance[64];
  // One line per model, "name<TAB>state<TAB>dir", NUL-terminated (all a version-2 client reads),
  // then the capability section (encode_models / decode_models), NUL-terminated.
  char models[2048];
  int32_t queued;
  int32_t busy;
  int32_t step;
  int32_t total;
  int64_t rss_bytes;
  int64_t model_bytes;
  int64_t jobs_done;
};

enum class SlotState : uint32_t { Free = 0, Claimed = 1, Submitted = 2 };
struct Slot {
  uint64_t word;  // (generation << 8) | SlotState
  int64_t pid;
  uint64_t job_id;
  int64_t claim_ns;  // CLOCK_MONOTONIC
};

struct ControlHeader {
  SegmentPrefix prefix;
  int64_t daemon_pid;
  int64_t started_unix;
  uint32_t doorbell;  // futex word: clients bump it after submitting
  uint32_t status_seq;
  int64_t heartbeat_ns;  // CLOCK_MONOTONIC, refreshed every ~100 ms
  StatusBlock status;
  Slot slots[kSlots];
};

// ---- limits and validation (daemon side) ----

struct Limits {
  int max_output_dim = kMaxOutputSide;  // width / height asked for
  int max_input_dim = 16384;            // input images and mask
  int64_t max_input_pixels = 16384LL * 16384LL;
  int max_steps = kMaxSteps;
  size_t max_prompt_bytes = 16384;
  int max_prompts = 16;
  int max_images_per_prompt = 16;
  int max_sequence_length = kMaxSequenceLength;
  uint64_t max_segment_bytes = 8ULL << 30;
};

// A validated request: strings copied out, image descriptors checked against the segment.
struct Request {
  std::string pipeline;
  std::string model;
  std::vector<std::string> prompts;
  std::vector<std::string> negative_prompts;
  // steps 0 (version 5): the model's default, resolved by the engine.
  int width = 0, height = 0, steps = 0, num_images_per_prompt = 1, max_sequence_length = 512;
  float strength = 0.6f;
  std::optional<float> true_cfg_scale;  // unset (version 5): the model's default
  bool exact_geometry = true;
  int64_t seed = 0;
  PixelFormat result_format = PixelFormat::RGBA8;
  std::vector<ImageDesc> images;
  std::optional<ImageDesc> mask;
  int64_t client_pid = 0;
  uint64_t job_id = 0;
  std::vector<JobLora> loras;  // name (no '/') or absolute path, not yet resolved
  std::optional<float> shift;
  bool lightning = false;
  int layers = kDefaultLayers;  // decompose
  int resolution = kDefaultResolution;
  bool cfg_normalize = false;
  bool kv_cache = true;                 // version 4 (Qwen-Image-2.1)
  int output_resolution = 0;            // version 4: 0 = the model's default
  uint32_t version = kProtocolVersion;  // the client's job version
};

// Validates a job segment of `size` bytes (the size of the mapping, not what the header claims).
// Returns "" and fills *out when the request is well-formed; otherwise a specific message.
// `kind` receives ProtocolMismatch for a foreign magic/version and Rejected otherwise.
std::string validate_job(const void* segment, size_t size, const Limits& limits, Request* out,
                         ErrorKind* kind);

// Pipeline names and the inputs each takes.
bool known_pipeline(const std::string& name);
struct PipelineInputs {
  int min_images;
  int max_images;
  bool mask;
};
PipelineInputs pipeline_inputs(const std::string& name);

// The daemon's model list as it travels in StatusBlock::models: the version-2 lines
// "name<TAB>state<TAB>dir\n" up to a NUL (what version-2 clients read), then a capability section
//   "qwen-image-caps <job protocol version>\n" and per model, in the same order,
//   "<family><TAB><flags><TAB><max_references>\n" with flags a comma-separated subset of
//   generate, edit, decompose, rgba, loras (or "unknown": not loaded and not inferable)
// and a NUL. Entries that do not fit into `cap` bytes are left out whole.
// Version 4 appends a LoRA section after that NUL (older clients stop at it):
//   "qwen-image-loras <number of LoRAs available>\n" and per LoRA that fits
//   "<name><TAB><lora|lightning><TAB><lightning steps, 0 = unknown>\n", then a NUL. Models take
// precedence; LoRAs that do not fit are left out whole (the count says how many there are).
struct ModelEntry {
  std::string name, state, dir;
  ModelCaps caps;
};
void encode_models(const std::vector<ModelEntry>& models, char* out, size_t cap,
                   const std::vector<LoraInfo>& loras = {});
// Reads what encode_models wrote (or a version-2 daemon's lines: caps unknown, *job_version 2).
// `loras` / `loras_left_out` (optional) receive the LoRA section (empty / 0 without one).
std::vector<ModelEntry> decode_models(const char* buf, size_t cap, int* job_version,
                                      std::vector<LoraInfo>* loras = nullptr,
                                      int* loras_left_out = nullptr);
std::string caps_flags(const ModelCaps& caps);  // "generate,loras", "unknown", ...

bool valid_utf8(const std::string& s);
bool valid_pixel_format(uint32_t f);
size_t bytes_per_pixel(PixelFormat f);

// ---- client side: layout and encoding ----

struct JobLayout {
  size_t text_offset = 0, text_size = 0;
  std::vector<size_t> image_offsets;
  size_t mask_offset = 0;
  size_t preview_offset = 0, preview_size = 0;
  size_t total = 0;
};
// Computes where everything goes; throws ClientError(Rejected) for requests that cannot be laid
// out.
JobLayout plan_job(const JobRequest& request);
// Writes the header, the strings and the pixels into `segment` (of layout.total bytes).
void encode_job(const JobRequest& request, const JobLayout& layout, int64_t pid, uint64_t job_id,
                void* segment);

inline size_t align_up(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

// ---- results, previews and the job phase: written by the daemon, read by the client ----
// (shared/src/results.cpp; the daemon's job.cpp only calls these.)

// One 8-bit image as the engine returns it: 1, 3 or 4 channels, tightly packed.
struct ResultPixels {
  int width = 0, height = 0, channels = 0;
  const uint8_t* data = nullptr;
};
// The result segment's header for `images` in `format` (RGBA8, RGB8, RGBA_F32 or RGB_F32);
// prefix.segment_size is the size of the segment to create. Throws std::invalid_argument for no
// images, more than kMaxResults, or a malformed image.
ResultHeader plan_result(const std::vector<ResultPixels>& images, PixelFormat format);
// Fills a segment of rh.prefix.segment_size bytes: the pixels converted to the format, then the
// header.
void write_result(const ResultHeader& rh, const std::vector<ResultPixels>& images, void* segment);
// Reads a result segment of `size` bytes into packed images; "" or what is malformed.
std::string read_result(const void* segment, size_t size, std::vector<Image>* out);

// Writes a preview (packed RGB8, any size: box-downscaled to fit kPreviewMax) into the job
// segment's preview area under the preview seqlock (preview_seq odd while writing). The caller
// checks that the segment has a preview area (JobHeader::preview_size > 0).
void publish_preview(void* job_segment, const uint8_t* rgb, int width, int height);
// The preview published as sequence `pseq` (even), read from `preview_offset` (the client's own
// layout) of a `size`-byte job segment; nullopt when absent, malformed, or rewritten meanwhile.
std::optional<Image> read_preview(const void* job_segment, size_t size, size_t preview_offset,
                                  uint32_t pseq);

// The job's phase (version 4 segments only: the caller checks the client's version).
void set_phase(void* job_segment, JobPhase phase, float fraction = -1.0f,
               const std::string& detail = "");
// Fills p->phase, fraction and detail from a version-4 job segment; false while being rewritten.
bool read_phase(const void* job_segment, JobProgress* p);

}  // namespace qwen::ipc::proto
