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
      {"steps must be", [](JobHeader* h) { h->steps = 0; }},
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
