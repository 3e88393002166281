// Request encoding, validation of hostile requests, and pixel conversions.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "qwen_image/pixels.h"
#include "qwen_image/protocol.h"

using namespace qwen::ipc;
using namespace qwen::ipc::proto;

namespace {

struct Encoded {
  std::vector<uint8_t> seg;
  JobHeader* h() { return reinterpret_cast<JobHeader*>(seg.data()); }
};

Encoded encode(const JobRequest& r) {
  JobLayout L = plan_job(r);
  Encoded e;
  e.seg.assign(L.total, 0);
  encode_job(r, L, 42, 7, e.seg.data());
  return e;
}

std::string validate(Encoded& e, Request* out = nullptr, ErrorKind* kind = nullptr) {
  Limits lim;
  Request r;
  ErrorKind k;
  std::string err = validate_job(e.seg.data(), e.seg.size(), lim, out ? out : &r, kind ? kind : &k);
  return err;
}

std::vector<uint8_t> g_pixels(40 * 30 * 16, 7);
std::vector<uint8_t> g_mask(40 * 30 * 4, 255);

JobRequest inpaint_request() {
  JobRequest r;
  r.pipeline = "inpaint";
  r.prompts = {"a red fox", "\xe7\x8c\xab"};
  r.negative_prompts = {"blurry"};
  r.steps = 20;
  r.images.push_back(ImageView{40, 30, PixelFormat::RGBA_F32, 40 * 16 + 32, g_pixels.data()});
  r.images[0].height = 29;
  r.mask = ImageView{40, 29, PixelFormat::GRAY8, 0, g_mask.data()};
  return r;
}

}  // namespace

TEST(Protocol, ValidRequestRoundTrips) {
  Encoded e = encode(inpaint_request());
  Request r;
  ErrorKind k;
  ASSERT_EQ(validate(e, &r, &k), "");
  EXPECT_EQ(k, ErrorKind::None);
  EXPECT_EQ(r.pipeline, "inpaint");
  ASSERT_EQ(r.prompts.size(), 2u);
  EXPECT_EQ(r.prompts[1], "\xe7\x8c\xab");
  ASSERT_EQ(r.negative_prompts.size(), 1u);
  EXPECT_EQ(r.steps, 20);
  ASSERT_EQ(r.images.size(), 1u);
  EXPECT_EQ(r.images[0].stride, 40u * 16 + 32);
  ASSERT_TRUE(r.mask.has_value());
  EXPECT_EQ(r.mask->format, uint32_t(PixelFormat::GRAY8));
  EXPECT_EQ(r.client_pid, 42);
  EXPECT_EQ(r.job_id, 7u);
}

TEST(Protocol, WrongVersionIsAProtocolMismatch) {
  Encoded e = encode(inpaint_request());
  e.h()->prefix.version = 99;
  ErrorKind k;
  std::string err = validate(e, nullptr, &k);
  EXPECT_EQ(k, ErrorKind::ProtocolMismatch);
  EXPECT_NE(err.find("protocol version mismatch"), std::string::npos) << err;
  e.h()->prefix.version = kProtocolVersion;
  e.h()->prefix.magic = 0x1234;
  EXPECT_NE(validate(e, nullptr, &k).find("bad magic"), std::string::npos);
  EXPECT_EQ(k, ErrorKind::ProtocolMismatch);
}

TEST(Protocol, SizeDisagreeingWithSegmentIsRejected) {
  Encoded e = encode(inpaint_request());
  e.h()->prefix.segment_size += 64;
  EXPECT_NE(validate(e).find("segment size disagrees"), std::string::npos);
  Encoded t = encode(inpaint_request());
  t.seg.resize(100);
  EXPECT_NE(validate(t).find("header"), std::string::npos);
}

TEST(Protocol, HostileFieldsGetSpecificErrors) {
  struct Case {
    const char* expect;
    void (*mutate)(JobHeader*);
  };
  const Case cases[] = {
      {"out of range", [](JobHeader* h) { h->width = 1 << 20; }},
      {"out of range", [](JobHeader* h) { h->height = -5; }},
      {"steps must be", [](JobHeader* h) { h->steps = -1; }},
      {"unknown pipeline", [](JobHeader* h) { std::strcpy(h->pipeline, "rm -rf"); }},
      {"not NUL-terminated", [](JobHeader* h) { std::memset(h->pipeline, 'a', 32); }},
      {"strength", [](JobHeader* h) { h->strength = NAN; }},
      {"true_cfg_scale", [](JobHeader* h) { h->true_cfg_scale = INFINITY; }},
      {"result format", [](JobHeader* h) { h->result_format = uint32_t(PixelFormat::GRAY8); }},
      {"prompts", [](JobHeader* h) { h->num_prompts = 0; }},
      {"negative prompts", [](JobHeader* h) { h->num_negative_prompts = 5; }},
      {"outside the", [](JobHeader* h) { h->images[0].offset = uint64_t(1) << 40; }},
      {"outside the", [](JobHeader* h) { h->images[0].offset = 10; }},
      {"stride", [](JobHeader* h) { h->images[0].stride = 3; }},
      {"larger than the daemon accepts", [](JobHeader* h) { h->images[0].width = 100000; }},
      {"pixels need", [](JobHeader* h) { h->images[0].size = 16; }},
      {"unknown pixel format", [](JobHeader* h) { h->images[0].format = 77; }},
      {"must be RGB or RGBA", [](JobHeader* h) { h->images[0].format = 5; }},
      {"takes 1 input image", [](JobHeader* h) { h->num_images = 3; }},
      {"needs a mask", [](JobHeader* h) { h->has_mask = 0; }},
      {"single-channel",
       [](JobHeader* h) {
         h->mask.format = uint32_t(PixelFormat::RGB8);
         h->mask.stride = 120;
         h->mask.size = 120 * 29;
       }},
      {"but the image is", [](JobHeader* h) { h->mask.width = 20; }},
      {"prompt text", [](JobHeader* h) { h->text_size = uint64_t(1) << 50; }},
      {"too many result", [](JobHeader* h) { h->num_images_per_prompt = 16; }},
      {"preview", [](JobHeader* h) { h->preview_offset = 8; }},
  };
  for (const auto& c : cases) {
    Encoded e = encode(inpaint_request());
    c.mutate(e.h());
    ErrorKind k;
    const std::string err = validate(e, nullptr, &k);
    EXPECT_NE(err.find(c.expect), std::string::npos)
        << "expected '" << c.expect << "', got '" << err << "'";
    EXPECT_EQ(k, ErrorKind::Rejected) << c.expect;
  }
}

TEST(Protocol, PromptsMustBeUtf8AndBounded) {
  JobRequest r;
  r.prompts = {"ok", std::string("bad \xff\xfe utf8")};
  Encoded e = encode(r);
  EXPECT_NE(validate(e).find("prompt 2 is not valid UTF-8"), std::string::npos);
  r.prompts = {std::string(20000, 'x')};
  Encoded l = encode(r);
  EXPECT_NE(validate(l).find("bytes long"), std::string::npos);
  r.prompts = {std::string("nul\0inside", 10)};
  Encoded n = encode(r);
  EXPECT_NE(validate(n).find("NUL"), std::string::npos);
}

TEST(Protocol, Utf8Validator) {
  EXPECT_TRUE(valid_utf8("plain"));
  EXPECT_TRUE(valid_utf8("\xc3\xa4\xe2\x82\xac\xf0\x9f\x98\x80"));
  EXPECT_FALSE(valid_utf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(valid_utf8("\xe2\x82"));          // truncated
}

TEST(Protocol, PipelinesAndTheirInputs) {
  for (const char* p : {"generate", "img2img", "inpaint", "edit", "edit-plus", "edit-inpaint"})
    EXPECT_TRUE(known_pipeline(p)) << p;
  EXPECT_FALSE(known_pipeline("upscale"));
  JobRequest r;
  r.pipeline = "img2img";
  r.prompts = {"x"};
  Encoded e = encode(r);
  EXPECT_NE(validate(e).find("takes 1 input image(s), got 0"), std::string::npos) << validate(e);
}

TEST(Protocol, ClientRefusesBrokenViews) {
  JobRequest r;
  r.prompts = {"x"};
  r.pipeline = "img2img";
  r.images.push_back(ImageView{10, 10, PixelFormat::RGB8, 5, g_pixels.data()});
  EXPECT_THROW(plan_job(r), ClientError);
  r.images[0] = ImageView{10, 10, PixelFormat::RGB8, 0, nullptr};
  EXPECT_THROW(plan_job(r), ClientError);
}

TEST(Pixels, FloatToU8ClampsAndRounds) {
  const float src[] = {0.0f, 0.5f, 1.0f, 1.5f, -1.0f, NAN, 0.25f, 1.0f};
  ImageDesc d{2, 1, uint32_t(PixelFormat::RGBA_F32), 0, 32, 0, 32};
  uint8_t out[8];
  pixels::to_u8(reinterpret_cast<const uint8_t*>(src), d, 4, out);
  const uint8_t want[] = {0, 128, 255, 255, 0, 0, 64, 255};
  EXPECT_EQ(std::memcmp(out, want, 8), 0);
  uint8_t rgb[6];
  pixels::to_u8(reinterpret_cast<const uint8_t*>(src), d, 3, rgb);
  EXPECT_EQ(rgb[3], 0);
  EXPECT_EQ(rgb[5], 64);
}

TEST(Pixels, StridedRgb8ToRgbaAddsOpaqueAlpha) {
  // 2x2 RGB8 with 2 bytes of padding per row.
  const uint8_t src[] = {1, 2, 3, 4, 5, 6, 0, 0, 7, 8, 9, 10, 11, 12, 0, 0};
  ImageDesc d{2, 2, uint32_t(PixelFormat::RGB8), 0, 8, 0, 16};
  uint8_t out[16];
  pixels::to_u8(src, d, 4, out);
  const uint8_t want[] = {1, 2, 3, 255, 4, 5, 6, 255, 7, 8, 9, 255, 10, 11, 12, 255};
  EXPECT_EQ(std::memcmp(out, want, 16), 0);
}

TEST(Pixels, FromU8ToEveryFormat) {
  const uint8_t rgb[] = {0, 51, 255, 10, 20, 30};
  float f[8];
  pixels::from_u8(rgb, 2, 1, 3, PixelFormat::RGBA_F32, reinterpret_cast<uint8_t*>(f));
  EXPECT_FLOAT_EQ(f[1], 0.2f);
  EXPECT_FLOAT_EQ(f[2], 1.0f);
  EXPECT_FLOAT_EQ(f[3], 1.0f);
  uint8_t rgba[8];
  pixels::from_u8(rgb, 2, 1, 3, PixelFormat::RGBA8, rgba);
  EXPECT_EQ(rgba[7], 255);
  EXPECT_EQ(rgba[4], 10);
  uint8_t same[6];
  pixels::from_u8(rgb, 2, 1, 3, PixelFormat::RGB8, same);
  EXPECT_EQ(std::memcmp(same, rgb, 6), 0);
}

TEST(Pixels, PreviewDownscaleFits) {
  std::vector<uint8_t> src(600 * 300 * 3, 100), dst(256 * 256 * 3);
  int w = 0, h = 0;
  pixels::downscale_rgb8(src.data(), 600, 300, 256, dst.data(), &w, &h);
  EXPECT_LE(w, 256);
  EXPECT_LE(h, 256);
  EXPECT_EQ(w, 200);
  EXPECT_EQ(h, 100);
  EXPECT_EQ(dst[0], 100);
}

// LoRAs, shift and lightning (protocol version 2, issue #14): round trip and limits.
TEST(Protocol, LorasShiftAndLightning) {
  JobRequest req = inpaint_request();
  req.loras = {{"style", 0.7f}, {"/home/u/l.safetensors", -1.5f}};
  req.shift = 3.0f;
  req.lightning = true;
  Encoded e = encode(req);
  Request r;
  ASSERT_EQ(validate(e, &r), "");
  ASSERT_EQ(r.loras.size(), 2u);
  EXPECT_EQ(r.loras[0].name, "style");
  EXPECT_EQ(r.loras[0].strength, 0.7f);
  EXPECT_EQ(r.loras[1].name, "/home/u/l.safetensors");
  EXPECT_EQ(r.loras[1].strength, -1.5f);
  EXPECT_EQ(r.prompts.size(), 2u);
  EXPECT_EQ(r.negative_prompts, std::vector<std::string>{"blurry"});
  ASSERT_TRUE(r.shift.has_value());
  EXPECT_EQ(*r.shift, 3.0f);
  EXPECT_TRUE(r.lightning);
  Encoded plain = encode(inpaint_request());
  ASSERT_EQ(validate(plain, &r), "");
  EXPECT_TRUE(r.loras.empty());
  EXPECT_FALSE(r.shift.has_value());
  EXPECT_FALSE(r.lightning);

  e.h()->lora_strengths[1] = 11.0f;
  EXPECT_NE(validate(e).find("LoRA 2: strength must be a number in -10..10"), std::string::npos);
  e.h()->lora_strengths[1] = NAN;
  EXPECT_NE(validate(e).find("LoRA 2: strength"), std::string::npos);
  e.h()->lora_strengths[1] = 1.0f;
  e.h()->shift = 101.0f;
  EXPECT_NE(validate(e).find("shift must be"), std::string::npos);
  e.h()->shift = -1.0f;
  EXPECT_NE(validate(e).find("shift must be"), std::string::npos);
  e.h()->shift = 0.0f;
  e.h()->num_loras = 9;
  EXPECT_NE(validate(e).find("at most 8 LoRAs"), std::string::npos);
  e.h()->num_loras = 3;  // one more string than the text holds
  EXPECT_NE(validate(e).find("truncated"), std::string::npos);
  req.loras.assign(9, {"x", 1.0f});
  EXPECT_THROW(plan_job(req), ClientError);
}

// Decompose (protocol version 3, issue #16): layers / resolution / cfg_normalize round trip, and
// every limit has its own message.
namespace {
JobRequest decompose_request() {
  JobRequest r;
  r.pipeline = "decompose";
  r.prompts = {"a poster"};
  r.images.push_back(ImageView{40, 29, PixelFormat::RGBA8, 0, g_pixels.data()});
  r.layers = 6;
  r.resolution = 1024;
  r.cfg_normalize = true;
  return r;
}
}  // namespace

TEST(Protocol, DecomposeRoundTripsItsFields) {
  Encoded e = encode(decompose_request());
  Request r;
  ASSERT_EQ(validate(e, &r), "");
  EXPECT_EQ(r.pipeline, "decompose");
  EXPECT_EQ(r.layers, 6);
  EXPECT_EQ(r.resolution, 1024);
  EXPECT_TRUE(r.cfg_normalize);
  EXPECT_EQ(r.version, kProtocolVersion);
  EXPECT_TRUE(known_pipeline("decompose"));
  EXPECT_EQ(pipeline_inputs("decompose").min_images, 1);
  EXPECT_EQ(pipeline_inputs("decompose").max_images, 1);
  EXPECT_FALSE(pipeline_inputs("decompose").mask);
  // Other pipelines carry the defaults.
  Encoded plain = encode(inpaint_request());
  ASSERT_EQ(validate(plain, &r), "");
  EXPECT_EQ(r.layers, kDefaultLayers);
  EXPECT_EQ(r.resolution, kDefaultResolution);
  EXPECT_FALSE(r.cfg_normalize);
}

TEST(Protocol, DecomposeLimitsGetSpecificErrors) {
  struct Case {
    const char* expect;
    void (*mutate)(JobHeader*);
  };
  const Case cases[] = {
      {"layers must be 2..10, got 1", [](JobHeader* h) { h->layers = 1; }},
      {"layers must be 2..10, got 11", [](JobHeader* h) { h->layers = 11; }},
      {"layers must be 2..10, got -3", [](JobHeader* h) { h->layers = -3; }},
      {"resolution must be 640 or 1024", [](JobHeader* h) { h->resolution = 512; }},
      {"cfg_normalize must be 0 or 1", [](JobHeader* h) { h->cfg_normalize = 2; }},
      {"decompose takes no width/height", [](JobHeader* h) { h->width = 640; }},
      {"too many result layers: 1 prompt(s) x 2 image(s) x 10 layers exceeds 16",
       [](JobHeader* h) {
         h->layers = 10;
         h->num_images_per_prompt = 2;
       }},
      {"ask for result format RGBA8 or RGBA_F32",
       [](JobHeader* h) { h->result_format = uint32_t(PixelFormat::RGB8); }},
      {"takes 1 input image(s), got 0", [](JobHeader* h) { h->num_images = 0; }},
      {"takes no mask", [](JobHeader* h) { h->has_mask = 1; }},
  };
  for (const auto& c : cases) {
    Encoded e = encode(decompose_request());
    c.mutate(e.h());
    ErrorKind k;
    const std::string err = validate(e, nullptr, &k);
    EXPECT_NE(err.find(c.expect), std::string::npos)
        << "expected '" << c.expect << "', got '" << err << "'";
    EXPECT_EQ(k, ErrorKind::Rejected) << c.expect;
  }
  // The same limits bind every pipeline's fields (one vocabulary), and the client refuses first.
  Encoded g = encode(inpaint_request());
  g.h()->resolution = 700;
  EXPECT_NE(validate(g).find("resolution must be 640 or 1024"), std::string::npos);
  JobRequest bad = decompose_request();
  bad.layers = 12;
  EXPECT_THROW(plan_job(bad), ClientError);
  bad.layers = 4;
  bad.resolution = 768;
  EXPECT_THROW(plan_job(bad), ClientError);
}

// A version-2 client (no decompose fields, a shorter header) still gets its job taken.
TEST(Protocol, Version2JobsAreStillAccepted) {
  JobRequest req = inpaint_request();
  req.loras = {{"style", 0.5f}};
  Encoded e = encode(req);
  e.h()->prefix.version = 2;
  e.h()->prefix.header_size = uint32_t(kJobHeaderV2Size);
  e.h()->layers = 99;  // beyond a version-2 header: never read
  Request r;
  ErrorKind k;
  ASSERT_EQ(validate(e, &r, &k), "");
  EXPECT_EQ(k, ErrorKind::None);
  EXPECT_EQ(r.version, 2u);
  EXPECT_EQ(r.layers, kDefaultLayers);
  ASSERT_EQ(r.loras.size(), 1u);
  EXPECT_EQ(r.loras[0].name, "style");
  // A version-2 header must have the version-2 size; version 1 is too old.
  e.h()->prefix.header_size = uint32_t(sizeof(JobHeader));
  EXPECT_NE(validate(e, &r, &k).find("job header size"), std::string::npos);
  EXPECT_EQ(k, ErrorKind::ProtocolMismatch);
  e.h()->prefix.version = 1;
  EXPECT_NE(validate(e, &r, &k).find("protocol version mismatch"), std::string::npos);
}

// The model list with typed capabilities (status block): what version-2 clients read is unchanged.
TEST(Protocol, ModelListCarriesTypedCapabilities) {
  std::vector<ModelEntry> models(3);
  models[0] = {"Qwen-Image", "loaded", "/m/Qwen-Image", {}};
  models[0].caps.known = models[0].caps.can_generate = models[0].caps.loras = true;
  models[0].caps.family = "qwen-image";
  models[1] = {"layered", "loaded, resident", "/m/Qwen-Image-Layered", {}};
  models[1].caps.known = models[1].caps.can_decompose = models[1].caps.rgba = true;
  models[1].caps.family = "qwen-image-layered";
  models[2] = {"edit", "configured", "/m/dir\twith tab", {}};
  char buf[2048];
  encode_models(models, buf, sizeof buf);
  // Version-2 readers stop at the first NUL: exactly the old lines.
  EXPECT_EQ(std::string(buf),
            "Qwen-Image\tloaded\t/m/Qwen-Image\nlayered\tloaded, resident\t/m/Qwen-Image-Layered\n"
            "edit\tconfigured\t/m/dir with tab\n");
  int version = 0;
  auto back = decode_models(buf, sizeof buf, &version);
  EXPECT_EQ(version, int(kProtocolVersion));
  ASSERT_EQ(back.size(), 3u);
  EXPECT_EQ(back[1].name, "layered");
  EXPECT_EQ(back[1].state, "loaded, resident");
  EXPECT_EQ(back[1].dir, "/m/Qwen-Image-Layered");
  EXPECT_TRUE(back[0].caps.known && back[0].caps.can_generate && back[0].caps.loras);
  EXPECT_FALSE(back[0].caps.can_decompose || back[0].caps.can_edit);
  EXPECT_TRUE(back[1].caps.known && back[1].caps.can_decompose && back[1].caps.rgba);
  EXPECT_FALSE(back[1].caps.can_generate);
  EXPECT_EQ(back[1].caps.family, "qwen-image-layered");
  EXPECT_FALSE(back[2].caps.known);
  EXPECT_EQ(caps_flags(back[1].caps), "decompose,rgba");
  EXPECT_EQ(caps_flags(back[2].caps), "unknown");
  // A version-2 daemon's block: lines only.
  char old[64] = "a\tloaded\t/x\n";
  auto v2 = decode_models(old, sizeof old, &version);
  EXPECT_EQ(version, 2);
  ASSERT_EQ(v2.size(), 1u);
  EXPECT_EQ(v2[0].dir, "/x");
  EXPECT_FALSE(v2[0].caps.known);
  // Entries that do not fit are left out whole (never a half line or half a capability list).
  char small[80];
  encode_models(models, small, sizeof small);
  auto cut = decode_models(small, sizeof small, &version);
  ASSERT_EQ(cut.size(), 1u);
  EXPECT_TRUE(cut[0].caps.known);
}

// ---- protocol version 4 ----

namespace {
std::vector<uint8_t> g_refs((kMaxJobImages + 1) * 24 * 20 * 4);
// An edit with `n` references, reference i filled with the value i + 1.
JobRequest edit_request(int n, const std::string& pipeline = "edit-plus") {
  JobRequest r;
  r.pipeline = pipeline;
  r.prompts = {"put them together"};
  for (int i = 0; i < n; ++i) {
    uint8_t* px = g_refs.data() + size_t(i) * 24 * 20 * 4;
    std::fill(px, px + 24 * 20 * 4, uint8_t(i + 1));
    r.images.push_back(ImageView{24, 20, PixelFormat::RGBA8, 0, px});
  }
  return r;
}
}  // namespace

// Qwen-Image-2.1 edits take up to 10 references: more than the version-3 header's 8 descriptors.
TEST(Protocol, Version4CarriesTenReferencesAndUpToSixteenImages) {
  EXPECT_EQ(kMaxEditReferences, 10);
  EXPECT_GE(kMaxJobImages, 11);
  EXPECT_EQ(pipeline_inputs("edit").max_images, kMaxEditReferences);
  EXPECT_EQ(pipeline_inputs("edit-plus").max_images, kMaxEditReferences);
  EXPECT_EQ(pipeline_inputs("edit-auto").max_images, kMaxEditReferences);
  Encoded e = encode(edit_request(10));
  Request r;
  ASSERT_EQ(validate(e, &r), "");
  ASSERT_EQ(r.images.size(), 10u);
  for (size_t i = 0; i < r.images.size(); ++i) {
    const ImageDesc& d = r.images[i];
    EXPECT_EQ(d.width, 24);
    EXPECT_EQ(d.height, 20);
    // Each descriptor points at its own pixels (images 9 and 10 through more_images).
    EXPECT_EQ(e.seg[d.offset], uint8_t(i + 1)) << "image " << i + 1;
    EXPECT_EQ(e.seg[d.offset + d.size - 1], uint8_t(i + 1)) << "image " << i + 1;
  }
  EXPECT_EQ(e.h()->more_images[1].offset, r.images[9].offset);
  // 11 references: the edit pipelines' limit, named.
  Encoded eleven = encode(edit_request(11));
  EXPECT_NE(validate(eleven).find("takes 1..10 input image(s), got 11"), std::string::npos)
      << validate(eleven);
  // The client refuses more than kMaxJobImages before anything is sent.
  try {
    plan_job(edit_request(kMaxJobImages + 1));
    ADD_FAILURE() << "17 images were laid out";
  } catch (const ClientError& ce) {
    EXPECT_NE(std::string(ce.what()).find("at most 16 input images"), std::string::npos);
  }
  // A hostile descriptor in the version-4 part is checked like the others.
  Encoded bad = encode(edit_request(10));
  bad.h()->more_images[1].offset = uint64_t(1) << 40;
  EXPECT_NE(validate(bad).find("input image 10: pixels at offset"), std::string::npos)
      << validate(bad);
  Encoded many = encode(edit_request(10));
  many.h()->num_images = kMaxJobImages + 1;
  EXPECT_NE(validate(many).find("at most 16 input images, got 17"), std::string::npos);
}

// A version-3 client (header without the version-4 fields) still gets its job taken, with the
// version-4 defaults, and at most the 8 images its header can describe.
TEST(Protocol, Version3JobsAreStillAccepted) {
  JobRequest req = edit_request(3);
  req.kv_cache = false;         // not in a version-3 header
  req.output_resolution = 512;  // idem
  Encoded e = encode(req);
  e.h()->prefix.version = 3;
  e.h()->prefix.header_size = uint32_t(kJobHeaderV3Size);
  Request r;
  ErrorKind k;
  ASSERT_EQ(validate(e, &r, &k), "");
  EXPECT_EQ(r.version, 3u);
  EXPECT_EQ(r.images.size(), 3u);
  EXPECT_TRUE(r.kv_cache);
  EXPECT_EQ(r.output_resolution, 0);
  // A version-3 header with a version-4 size is a mismatched build.
  e.h()->prefix.header_size = uint32_t(sizeof(JobHeader));
  EXPECT_NE(validate(e, &r, &k).find("job header size"), std::string::npos);
  EXPECT_EQ(k, ErrorKind::ProtocolMismatch);
  // Nine images do not fit a version-3 header.
  Encoded nine = encode(edit_request(9));
  nine.h()->prefix.version = 3;
  nine.h()->prefix.header_size = uint32_t(kJobHeaderV3Size);
  EXPECT_NE(validate(nine).find("a version-3 job carries at most 8 input images, got 9"),
            std::string::npos)
      << validate(nine);
  EXPECT_EQ(job_header_size(2), kJobHeaderV2Size);
  EXPECT_EQ(job_header_size(3), kJobHeaderV3Size);
  EXPECT_EQ(job_header_size(4), sizeof(JobHeader));
  EXPECT_EQ(job_header_size(5), sizeof(JobHeader));  // version 5: the same layout
  EXPECT_EQ(job_header_size(6), 0u);
}

// Qwen-Image-2.1's kv_cache and output_resolution travel in the version-4 section.
TEST(Protocol, KvCacheAndOutputResolutionRoundTrip) {
  JobRequest req;
  req.prompts = {"a glass cup"};
  Encoded def = encode(req);
  Request r;
  ASSERT_EQ(validate(def, &r), "");
  EXPECT_TRUE(r.kv_cache);
  EXPECT_EQ(r.output_resolution, 0);
  req.kv_cache = false;
  req.output_resolution = 512;
  Encoded e = encode(req);
  ASSERT_EQ(validate(e, &r), "");
  EXPECT_FALSE(r.kv_cache);
  EXPECT_EQ(r.output_resolution, 512);
  e.h()->output_resolution = 16;
  EXPECT_NE(
      validate(e).find("output_resolution must be 0 (the model's default) or 32..8192, got 16"),
      std::string::npos)
      << validate(e);
  e.h()->output_resolution = 9000;
  EXPECT_NE(validate(e).find("got 9000"), std::string::npos);
  e.h()->output_resolution = 0;
  e.h()->kv_cache = 7;
  EXPECT_NE(validate(e).find("kv_cache must be 0 or 1"), std::string::npos);
}

// One set of limits (issue #17): a value the engine refuses is Rejected at submission, with a
// message that names the value and the engine's range.
TEST(Protocol, EngineLimitsAreCheckedAtSubmission) {
  JobRequest req;
  req.prompts = {"a cat"};
  req.max_sequence_length = 2000;  // passed the daemon (4096) and failed in the engine before
  Encoded e = encode(req);
  ErrorKind k;
  EXPECT_EQ(validate(e, nullptr, &k), "max_sequence_length must be 1..1024, got 2000");
  EXPECT_EQ(k, ErrorKind::Rejected);
  e.h()->max_sequence_length = kMaxSequenceLength;
  EXPECT_EQ(validate(e), "");
  // Configured limits can only lower the engine's.
  Limits generous;
  generous.max_sequence_length = 4096;
  generous.max_steps = 100000;
  generous.max_output_dim = 65536;
  Request r;
  e.h()->max_sequence_length = 2000;
  EXPECT_NE(validate_job(e.seg.data(), e.seg.size(), generous, &r, &k).find("1..1024, got 2000"),
            std::string::npos);
  e.h()->max_sequence_length = 512;
  e.h()->steps = 1001;
  EXPECT_NE(validate_job(e.seg.data(), e.seg.size(), generous, &r, &k).find("1..1000, got 1001"),
            std::string::npos);
  e.h()->steps = 20;
  e.h()->width = 8;  // the engine's minimum side is 16
  EXPECT_NE(validate(e).find("0 = default, else 16..8192"), std::string::npos) << validate(e);
  e.h()->width = 9000;
  EXPECT_NE(validate_job(e.seg.data(), e.seg.size(), generous, &r, &k).find("16..8192"),
            std::string::npos);
}

// ---- protocol version 5: the model's defaults ----

// Steps 0 and true_cfg_scale -1 (limits.h) say "the model's default" (the engine then applies the
// model's or a Lightning LoRA's values); shift 0 already did. Explicit values travel as they are.
TEST(Protocol, Version5CarriesTheModelsDefaults) {
  EXPECT_EQ(kProtocolVersion, 5u);
  JobRequest req;
  req.prompts = {"a fox"};
  req.loras = {{"Qwen-Image-Lightning-4steps-V1.0", 1.0f}};
  req.steps = kModelDefaultSteps;
  req.true_cfg_scale = kModelDefaultTrueCfgScale;
  Encoded e = encode(req);
  EXPECT_EQ(e.h()->prefix.version, 5u);
  EXPECT_EQ(e.h()->steps, 0);
  EXPECT_EQ(e.h()->true_cfg_scale, -1.0f);
  EXPECT_EQ(e.h()->shift, 0.0f);
  Request r;
  ErrorKind k;
  ASSERT_EQ(validate(e, &r, &k), "");
  EXPECT_EQ(k, ErrorKind::None);
  EXPECT_EQ(r.steps, 0);
  EXPECT_FALSE(r.true_cfg_scale.has_value());
  EXPECT_FALSE(r.shift.has_value());
  EXPECT_FALSE(r.lightning);
  // Explicit values are kept, CFG 0 and 1 included.
  for (float cfg : {0.0f, 1.0f, 4.0f}) {
    req.steps = 7;
    req.true_cfg_scale = cfg;
    req.shift = 2.5f;
    Encoded x = encode(req);
    ASSERT_EQ(validate(x, &r), "");
    EXPECT_EQ(r.steps, 7);
    ASSERT_TRUE(r.true_cfg_scale.has_value());
    EXPECT_EQ(*r.true_cfg_scale, cfg);
    ASSERT_TRUE(r.shift.has_value());
    EXPECT_EQ(*r.shift, 2.5f);
  }
  // Only -1 means the default; other negative values are refused with the range.
  e.h()->true_cfg_scale = -0.5f;
  EXPECT_EQ(validate(e), "true_cfg_scale must be a number in 0..100 (-1 = the model's default)");
  e.h()->true_cfg_scale = -1.0f;
  e.h()->steps = -1;
  EXPECT_EQ(validate(e), "steps must be 1..1000, got -1 (0 = the model's default)");
}

// A version-4 client (the same header as version 5) keeps its meaning: its steps and CFG are
// always explicit, and 0 / -1 are refused as a version-4 daemon refused them.
TEST(Protocol, Version4JobsAreStillAccepted) {
  JobRequest req = edit_request(9);
  req.steps = 12;
  req.true_cfg_scale = 2.0f;
  Encoded e = encode(req);
  e.h()->prefix.version = 4;
  Request r;
  ErrorKind k;
  ASSERT_EQ(validate(e, &r, &k), "");
  EXPECT_EQ(r.version, 4u);
  EXPECT_EQ(r.steps, 12);
  ASSERT_TRUE(r.true_cfg_scale.has_value());
  EXPECT_EQ(*r.true_cfg_scale, 2.0f);
  EXPECT_EQ(r.images.size(), 9u);
  e.h()->steps = 0;
  EXPECT_EQ(validate(e, &r, &k), "steps must be 1..1000, got 0");
  EXPECT_EQ(k, ErrorKind::Rejected);
  e.h()->steps = 12;
  e.h()->true_cfg_scale = -1.0f;
  EXPECT_EQ(validate(e), "true_cfg_scale must be a number in 0..100");
  // Versions 2 and 3 alike.
  for (uint32_t v : {2u, 3u}) {
    Encoded old = encode(inpaint_request());
    old.h()->prefix.version = v;
    old.h()->prefix.header_size = uint32_t(job_header_size(v));
    ASSERT_EQ(validate(old, &r), "") << v;
    EXPECT_EQ(r.steps, 20);
    ASSERT_TRUE(r.true_cfg_scale.has_value());
    EXPECT_EQ(*r.true_cfg_scale, 4.0f);
    old.h()->steps = 0;
    EXPECT_EQ(validate(old), "steps must be 1..1000, got 0") << v;
  }
}

// Issue #14: the LoRA section after the capability section; older readers see the same models.
TEST(Protocol, ModelListCarriesTheLorasAfterTheCapabilities) {
  std::vector<ModelEntry> models(1);
  models[0] = {"Qwen-Image", "loaded", "/m/Qwen-Image", {}};
  models[0].caps.known = models[0].caps.can_generate = true;
  std::vector<LoraInfo> loras = {
      {"style", false, 0}, {"Qwen-Image-Lightning-4steps", true, 4}, {"tab\tname", false, 0}};
  char buf[2048];
  encode_models(models, buf, sizeof buf, loras);
  EXPECT_EQ(std::string(buf), "Qwen-Image\tloaded\t/m/Qwen-Image\n");  // version-2 readers
  int version = 0;
  std::vector<LoraInfo> back;
  int left_out = -1;
  auto m = decode_models(buf, sizeof buf, &version, &back, &left_out);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_TRUE(m[0].caps.known && m[0].caps.can_generate);
  EXPECT_EQ(version, int(kProtocolVersion));
  ASSERT_EQ(back.size(), 3u);
  EXPECT_EQ(left_out, 0);
  EXPECT_EQ(back[0].name, "style");
  EXPECT_FALSE(back[0].lightning);
  EXPECT_EQ(back[1].name, "Qwen-Image-Lightning-4steps");
  EXPECT_TRUE(back[1].lightning);
  EXPECT_EQ(back[1].lightning_steps, 4);
  EXPECT_EQ(back[2].name, "tab name");
  // A version-3 daemon's block (no LoRA section): none, nothing left out.
  char v3[2048];
  encode_models(models, v3, sizeof v3);
  decode_models(v3, sizeof v3, &version, &back, &left_out);
  EXPECT_TRUE(back.empty());
  EXPECT_EQ(left_out, 0);
  // The models take precedence; LoRAs that do not fit are left out whole and counted.
  std::vector<LoraInfo> many;
  for (int i = 0; i < 200; ++i) many.push_back({"lora-number-" + std::to_string(i), false, 0});
  encode_models(models, buf, sizeof buf, many);
  m = decode_models(buf, sizeof buf, &version, &back, &left_out);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_TRUE(m[0].caps.known);
  EXPECT_GT(back.size(), 10u);
  EXPECT_LT(back.size(), 200u);
  EXPECT_EQ(int(back.size()) + left_out, 200);
  for (const auto& l : back) EXPECT_EQ(l.name.rfind("lora-number-", 0), 0u) << l.name;
}

// Issue #17: the result segment and the preview are written and read by shared/ alone.
TEST(Protocol, ResultsAndPreviewsRoundTripThroughSharedCode) {
  std::vector<uint8_t> rgb(5 * 3 * 3), rgba(4 * 2 * 4);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = uint8_t(i * 7);
  for (size_t i = 0; i < rgba.size(); ++i) rgba[i] = uint8_t(200 - i);
  const std::vector<ResultPixels> px = {{5, 3, 3, rgb.data()}, {4, 2, 4, rgba.data()}};
  const ResultHeader rh = plan_result(px, PixelFormat::RGBA8);
  EXPECT_EQ(rh.count, 2u);
  std::vector<uint8_t> seg(rh.prefix.segment_size);
  write_result(rh, px, seg.data());
  std::vector<Image> out;
  ASSERT_EQ(read_result(seg.data(), seg.size(), &out), "");
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].width, 5);
  EXPECT_EQ(out[0].format, PixelFormat::RGBA8);
  EXPECT_EQ(out[0].bytes[4], rgb[3]);   // pixel 1, red
  EXPECT_EQ(out[0].bytes[3], 255);      // alpha added
  EXPECT_EQ(out[1].bytes[7], rgba[7]);  // alpha kept
  EXPECT_NE(read_result(seg.data(), sizeof(ResultHeader) - 1, &out), "");
  EXPECT_THROW(plan_result({}, PixelFormat::RGB8), std::invalid_argument);
  EXPECT_THROW(plan_result(px, PixelFormat::GRAY8), std::invalid_argument);
  // Previews: larger ones are scaled to fit kPreviewMax, and read back under the seqlock.
  JobRequest req;
  req.prompts = {"x"};
  Encoded e = encode(req);
  std::vector<uint8_t> big(512 * 300 * 3, 77);
  publish_preview(e.seg.data(), big.data(), 512, 300);
  EXPECT_EQ(e.h()->preview_seq, 2u);
  auto p = read_preview(e.seg.data(), e.seg.size(), e.h()->preview_offset, 2);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->width, kPreviewMax);
  EXPECT_EQ(p->height, 150);
  EXPECT_EQ(p->bytes[0], 77);
  EXPECT_FALSE(read_preview(e.seg.data(), e.seg.size(), e.h()->preview_offset, 1).has_value());
  EXPECT_FALSE(read_preview(e.seg.data(), e.seg.size(), e.h()->preview_offset, 4).has_value());
  // The job phase (version 4).
  JobProgress jp;
  ASSERT_TRUE(read_phase(e.seg.data(), &jp));
  EXPECT_EQ(jp.phase, JobPhase::Queued);
  set_phase(e.seg.data(), JobPhase::LoadingModel, 0.5f, "loading vae (2/3)");
  ASSERT_TRUE(read_phase(e.seg.data(), &jp));
  EXPECT_EQ(jp.phase, JobPhase::LoadingModel);
  EXPECT_EQ(jp.fraction, 0.5f);
  EXPECT_EQ(jp.detail, "loading vae (2/3)");
  set_phase(e.seg.data(), JobPhase::Denoising, -1.0f, std::string(500, 'x'));
  ASSERT_TRUE(read_phase(e.seg.data(), &jp));
  EXPECT_EQ(jp.detail.size(), kPhaseDetailBytes - 1);
  e.h()->phase_seq |= 1;  // being rewritten
  EXPECT_FALSE(read_phase(e.seg.data(), &jp));
}
