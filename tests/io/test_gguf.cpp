// GGUF reader (io/gguf.h): the format samples, every metadata value type, shapes, alignment,
// ComfyUI-GGUF's orig_shape, and hostile / broken files (each error names the file).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "common/st_writer.h"
#include "gguf_writer.h"
#include "io/gguf.h"

using nlohmann::json;
using qwen::io::CheckpointError;
using qwen::io::GgmlType;
using qwen::io::GgufFile;
using qwen::io::GgufHeader;
using qwen::io::GgufType;
using qwen::io::parse_gguf;
using namespace qwen::test;

namespace {

const std::string kSamples = QWEN_FORMAT_SAMPLES;
const char* kGgufSamples[] = {"pub-tiny-Q8_0.gguf", "pub-tiny-Q4_0.gguf", "pub-tiny-Q5_1.gguf",
                              "q-pub-Kmix.gguf"};

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const CheckpointError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no CheckpointError thrown";
  return {};
}

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << (msg)

GgufHeader parse(const std::string& bytes, const std::string& label = "bad.gguf") {
  return parse_gguf(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), label);
}

// parse() must fail; returns the message after checking that it names the file.
std::string parse_error(const std::string& bytes) {
  const std::string msg = error_of([&] { parse(bytes); });
  EXPECT_EQ(msg.rfind("bad.gguf: ", 0), 0u) << msg;
  return msg;
}

json manifest() {
  std::ifstream in(kSamples + "/manifest.json");
  return json::parse(in);
}

// A small valid file: two KVs, a Q8_0 matrix and an F32 vector.
GgufBuilder small_file() {
  GgufBuilder b;
  b.kv_string("general.architecture", "qwen_image").kv_u32("general.quantization_version", 2);
  b.tensor("w", {64, 2}, static_cast<uint32_t>(GgmlType::Q8_0), pattern_bytes(4 * 34));
  b.tensor("b", {2}, static_cast<uint32_t>(GgmlType::F32), pattern_bytes(8, 5));
  return b;
}

}  // namespace

TEST(Gguf, SampleFilesMatchTheManifest) {
  const json m = manifest();
  for (const char* name : kGgufSamples) {
    SCOPED_TRACE(name);
    const auto f = GgufFile::open(kSamples + "/files/" + name);
    const json& entry = m["files"][name];
    EXPECT_EQ(f->file_size(), entry["bytes"].get<uint64_t>());
    EXPECT_EQ(f->header().version, 3u);
    EXPECT_EQ(f->header().alignment, 32u);
    EXPECT_EQ(f->header().data_offset % 32, 0u);
    EXPECT_EQ(f->architecture(), "qwen_image");
    EXPECT_EQ(f->metadata("general.file_type")->as_int(name, "general.file_type"),
              entry["metadata"]["general.file_type"].get<int64_t>());
    EXPECT_EQ(f->metadata("general.quantization_version")->as_uint(name, "q"), 2u);
    ASSERT_EQ(f->tensors().size(), entry["tensors"].size());
    for (const auto& [tname, te] : entry["tensors"].items()) {
      const auto* t = f->find(tname);
      ASSERT_NE(t, nullptr) << tname;
      EXPECT_EQ(qwen::io::ggml_type_name(t->type), te["type"].get<std::string>()) << tname;
      const auto ne = te["ggml_ne"].get<std::vector<int64_t>>();
      EXPECT_EQ(t->ne, ne) << tname;
      EXPECT_EQ(t->shape, std::vector<int64_t>(ne.rbegin(), ne.rend())) << tname;  // torch order
      EXPECT_FALSE(t->orig_shape);
      const auto& tr = qwen::io::ggml_traits(t->type);
      EXPECT_EQ(t->nbytes, static_cast<uint64_t>(t->numel()) / tr.block_size * tr.type_size);
      EXPECT_EQ(t->offset % 32, 0u);
      EXPECT_LE(f->data(*t) + t->nbytes, f->data(f->tensors()[0]) + f->file_size());
    }
  }
}

TEST(Gguf, TypeTable) {
  EXPECT_STREQ(qwen::io::ggml_type_name(GgmlType::Q4_K), "Q4_K");
  EXPECT_EQ(qwen::io::ggml_traits(GgmlType::Q6_K).type_size, 210u);
  EXPECT_EQ(qwen::io::ggml_traits(GgmlType::IQ4_XS).block_size, 256u);
  EXPECT_EQ(qwen::io::ggml_type_traits(4), nullptr);  // Q4_2, removed from ggml
  EXPECT_TRUE(qwen::io::ggml_type_supported(GgmlType::IQ4_NL));
  EXPECT_FALSE(qwen::io::ggml_type_supported(GgmlType::IQ2_XXS));
  EXPECT_FALSE(qwen::io::ggml_type_supported(GgmlType::Q8_1));
}

TEST(Gguf, EveryMetadataValueType) {
  GgufBuilder b;
  b.kv("u8", kU8, std::string(1, '\xfe'))
      .kv("i8", kI8, std::string(1, '\xfe'))
      .kv("u16", kU16, std::string("\x34\x12", 2))
      .kv("i16", kI16, std::string("\xff\xff", 2))
      .kv_u32("u32", 4000000000u)
      .kv("i32", kI32, le32(static_cast<uint32_t>(-7)))
      .kv("f32", kF32, le32(0x3fc00000u))  // 1.5
      .kv("bool", kBool, std::string(1, '\x01'))
      .kv_string("str", "héllo")
      .kv("u64", kU64, le64(1ull << 40))
      .kv("i64", kI64, le64(static_cast<uint64_t>(-5)))
      .kv("f64", kF64, le64(0x4004000000000000ull))  // 2.5
      .kv_i32_array("ints", {3, -1, 7})
      .kv("floats", kArray, le32(kF32) + le64(2) + le32(0x3f800000u) + le32(0xc0000000u))
      .kv("strs", kArray, le32(kString) + le64(2) + gguf_str("a") + gguf_str("bc"))
      .kv("nested", kArray,
          le32(kArray) + le64(2) + le32(kU8) + le64(2) + "\x01\x02" + le32(kString) + le64(1) +
              gguf_str("x"))
      .kv("empty", kArray, le32(kI64) + le64(0));
  const GgufHeader h = parse(b.build(), "meta.gguf");
  ASSERT_EQ(h.metadata.size(), 17u);
  EXPECT_EQ(h.metadata[0].first, "u8");  // file order kept
  const std::string l = "meta.gguf";
  EXPECT_EQ(h.find("u8")->as_int(l, "u8"), 254);
  EXPECT_EQ(h.find("i8")->as_int(l, "i8"), -2);
  EXPECT_EQ(h.find("u16")->as_int(l, "u16"), 0x1234);
  EXPECT_EQ(h.find("i16")->as_int(l, "i16"), -1);
  EXPECT_EQ(h.find("u32")->as_uint(l, "u32"), 4000000000u);
  EXPECT_EQ(h.find("i32")->as_int(l, "i32"), -7);
  EXPECT_EQ(h.find("f32")->as_float(l, "f32"), 1.5);
  EXPECT_TRUE(h.find("bool")->as_bool(l, "bool"));
  EXPECT_EQ(h.find("str")->as_string(l, "str"), "héllo");
  EXPECT_EQ(h.find("u64")->as_uint(l, "u64"), 1ull << 40);
  EXPECT_EQ(h.find("i64")->as_int(l, "i64"), -5);
  EXPECT_EQ(h.find("f64")->as_float(l, "f64"), 2.5);
  EXPECT_EQ(h.find("ints")->as_int_array(l, "ints", GgufType::I32),
            (std::vector<int64_t>{3, -1, 7}));
  EXPECT_EQ(h.find("floats")->as_float_array(l, "floats"), (std::vector<double>{1.0, -2.0}));
  EXPECT_EQ(h.find("strs")->as_string_array(l, "strs"), (std::vector<std::string>{"a", "bc"}));
  const auto nested = h.find("nested")->elements(l, "nested");
  ASSERT_EQ(nested.size(), 2u);
  EXPECT_EQ(nested[0].as_int_array(l, "nested"), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(nested[1].as_string_array(l, "nested"), (std::vector<std::string>{"x"}));
  EXPECT_TRUE(h.find("empty")->as_int_array(l, "empty").empty());
  EXPECT_EQ(h.find("ints")->to_string(), "[INT32 x 3: 3, -1, 7]");
  EXPECT_EQ(h.find("str")->to_string(), "\"héllo\"");
  EXPECT_EQ(h.find("nested")->to_string(), "[ARRAY x 2: [UINT8 x 2: 1, 2], [STRING x 1: \"x\"]]");
  EXPECT_TRUE(h.find("u16")->is_integer());
  EXPECT_TRUE(h.find("f64")->is_float());
  EXPECT_EQ(h.find("missing"), nullptr);

  // Type mismatches name the file and the key.
  std::string msg = error_of([&] { h.find("str")->as_int(l, "str"); });
  EXPECT_HAS(msg, "meta.gguf: metadata 'str' is STRING, expected an integer");
  msg = error_of([&] { h.find("i32")->as_uint(l, "i32"); });
  EXPECT_HAS(msg, "negative");
  msg = error_of([&] { h.find("ints")->as_int_array(l, "ints", GgufType::U32); });
  EXPECT_HAS(msg, "'ints' is ARRAY of INT32, expected ARRAY of UINT32");
  msg = error_of([&] { h.find("u64")->as_bool(l, "u64"); });
  EXPECT_HAS(msg, "expected BOOL");
}

TEST(Gguf, TensorInfosShapesAndData) {
  const std::string bytes = small_file().build();
  const GgufHeader h = parse(bytes, "ok.gguf");
  ASSERT_EQ(h.tensors.size(), 2u);
  const auto* w = h.tensor("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->type, GgmlType::Q8_0);
  EXPECT_EQ(w->ne, (std::vector<int64_t>{64, 2}));
  EXPECT_EQ(w->shape, (std::vector<int64_t>{2, 64}));  // [out, in] from ne = [in, out]
  EXPECT_EQ(w->nbytes, 4u * 34);
  EXPECT_EQ(w->offset, 0u);
  const auto* b = h.tensor("b");
  EXPECT_EQ(b->offset, 160u);  // 136 bytes padded to 32
  EXPECT_EQ(b->shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(h.data_offset % 32, 0u);
  EXPECT_EQ(std::memcmp(bytes.data() + h.data_offset + w->offset, pattern_bytes(136).data(), 136),
            0);
  EXPECT_EQ(h.tensor("nope"), nullptr);
}

TEST(Gguf, VersionTwoAndCustomAlignment) {
  GgufBuilder b = small_file();
  b.version = 2;
  b.alignment = 64;
  b.kv_u32("general.alignment", 64);
  const GgufHeader h = parse(b.build(), "v2.gguf");
  EXPECT_EQ(h.version, 2u);
  EXPECT_EQ(h.alignment, 64u);
  EXPECT_EQ(h.data_offset % 64, 0u);
  EXPECT_EQ(h.tensor("b")->offset, 192u);
}

TEST(Gguf, ComfyOrigShape) {
  GgufBuilder b = small_file();
  b.kv_i32_array("comfy.gguf.orig_shape.w", {2, 4, 16});
  const GgufHeader h = parse(b.build(), "orig.gguf");
  EXPECT_EQ(h.tensor("w")->shape, (std::vector<int64_t>{2, 4, 16}));
  EXPECT_TRUE(h.tensor("w")->orig_shape);
  EXPECT_EQ(h.tensor("w")->ne, (std::vector<int64_t>{64, 2}));
  EXPECT_FALSE(h.tensor("b")->orig_shape);

  GgufBuilder wrong_count = small_file();
  wrong_count.kv_i32_array("comfy.gguf.orig_shape.w", {3, 64});
  std::string msg = parse_error(wrong_count.build());
  EXPECT_HAS(msg, "'comfy.gguf.orig_shape.w' gives shape [3, 64] (192 values)");
  EXPECT_HAS(msg, "holds 128 values");

  GgufBuilder wrong_type = small_file();  // ComfyUI-GGUF: "Expected ARRAY of INT32"
  wrong_type.kv("comfy.gguf.orig_shape.w", kArray, le32(kU32) + le64(2) + le32(2) + le32(64));
  msg = parse_error(wrong_type.build());
  EXPECT_HAS(msg, "is ARRAY of UINT32, expected ARRAY of INT32");
}

TEST(Gguf, OpensAFileAndNamesItInErrors) {
  TempDir dir;
  write_file(dir.path() / "m.gguf", small_file().build());
  const auto f = GgufFile::open(dir.str("m.gguf"));
  EXPECT_EQ(f->path(), dir.str("m.gguf"));
  EXPECT_EQ(f->architecture(), "qwen_image");
  EXPECT_EQ(std::memcmp(f->data(*f->find("b")), pattern_bytes(8, 5).data(), 8), 0);
  EXPECT_TRUE(qwen::io::is_gguf_file(dir.str("m.gguf")));

  const std::string full = small_file().build();
  write_file(dir.path() / "cut.gguf", full.substr(0, full.size() - 40));
  std::string msg = error_of([&] { GgufFile::open(dir.str("cut.gguf")); });
  EXPECT_HAS(msg, dir.str("cut.gguf") + ": tensor 'b'");
  EXPECT_HAS(msg, "truncated file");
  write_file(dir.path() / "tiny.gguf", "GGUF\x03");
  msg = error_of([&] { GgufFile::open(dir.str("tiny.gguf")); });
  EXPECT_HAS(msg, dir.str("tiny.gguf") + ": file of 5 bytes is too short");
  msg = error_of([&] { GgufFile::open(dir.str("absent.gguf")); });
  EXPECT_HAS(msg, dir.str("absent.gguf") + ": cannot open");
  EXPECT_FALSE(qwen::io::is_gguf_file(dir.str("absent.gguf")));
}

// ---- hostile and broken files ----------------------------------------------------------------

TEST(GgufErrors, TruncatedAtEveryByte) {
  const std::string full = small_file().build();
  const GgufHeader h = parse(full);
  // Every byte up to the end of the last tensor's data is needed; the trailing padding is not.
  const uint64_t needed = h.data_offset + h.tensor("b")->offset + h.tensor("b")->nbytes;
  ASSERT_LT(needed, full.size());
  for (size_t cut = 0; cut < full.size(); ++cut) {
    const std::string part = full.substr(0, cut);
    if (cut >= needed) {
      EXPECT_NO_THROW(parse(part)) << "cut " << cut;
      continue;
    }
    const std::string msg = error_of([&] { parse(part); });
    EXPECT_EQ(msg.rfind("bad.gguf: ", 0), 0u) << "cut " << cut << ": " << msg;
  }
  EXPECT_HAS(parse_error(full.substr(0, 30)), "truncated");
  EXPECT_HAS(parse_error(full.substr(0, 60)), "truncated file");
}

TEST(GgufErrors, NotGgufAndVersions) {
  EXPECT_HAS(parse_error(std::string("GGML") + std::string(40, '\0')), "not a GGUF file");
  EXPECT_HAS(parse_error(""), "not a GGUF file");
  GgufBuilder b = small_file();
  b.version = 1;
  EXPECT_HAS(parse_error(b.build()), "GGUF version 1 is not supported");
  b.version = 4;
  EXPECT_HAS(parse_error(b.build()), "unsupported GGUF version 4");
  b.version = 0x03000000;  // a big-endian writer's 3
  EXPECT_HAS(parse_error(b.build()), "big-endian GGUF");
}

TEST(GgufErrors, UnknownTensorType) {
  GgufBuilder b = small_file();
  b.tensors[0].type = 99;
  EXPECT_HAS(parse_error(b.build()), "tensor 'w' has unknown ggml tensor type 99");
  b.tensors[0].type = 4;  // removed Q4_2
  EXPECT_HAS(parse_error(b.build()), "unknown ggml tensor type 4");
}

TEST(GgufErrors, UnknownValueType) {
  GgufBuilder b = small_file();
  b.kv("weird", 13, le32(0));
  EXPECT_HAS(parse_error(b.build()), "metadata 'weird' has unknown value type 13");
  GgufBuilder a = small_file();
  a.kv("arr", kArray, le32(77) + le64(1) + le32(0));
  EXPECT_HAS(parse_error(a.build()), "array of unknown value type 77");
}

TEST(GgufErrors, SizeInconsistentWithShapeAndType) {
  // Rows must be whole blocks.
  GgufBuilder rows = small_file();
  rows.tensors[0].ne = {48, 2};
  EXPECT_HAS(parse_error(rows.build()),
             "rows of 48 values are not a whole number of Q8_0 blocks of 32");
  GgufBuilder k = small_file();
  k.tensors[0] = {"kq", {64, 4}, static_cast<uint32_t>(GgmlType::Q4_K), pattern_bytes(144), {}};
  EXPECT_HAS(parse_error(k.build()),
             "rows of 64 values are not a whole number of Q4_K blocks of 256");
  // The shape says more bytes than there are between this tensor and the next one.
  GgufBuilder big = small_file();
  big.tensor("c", {256}, static_cast<uint32_t>(GgmlType::F32), pattern_bytes(1024));
  big.tensors[0].ne = {64, 8};  // 16 blocks = 544 bytes, but 'b' starts at 160
  std::string msg = parse_error(big.build());
  EXPECT_HAS(msg,
             "tensor 'w' (Q8_0, shape [8, 64]: 544 bytes at data offset 0) overlaps tensor 'b'");
  // ... or than the file holds.
  GgufBuilder last = small_file();
  last.tensors[1].ne = {1000};
  msg = parse_error(last.build());
  EXPECT_HAS(msg,
             "tensor 'b' (F32, shape [1000]: 4000 bytes at data offset 160) runs past the end");
}

TEST(GgufErrors, OverlappingMisalignedAndOutOfRange) {
  GgufBuilder ov = small_file();
  ov.tensors[1].offset = 128;  // inside w's 136 bytes
  EXPECT_HAS(parse_error(ov.build()), "overlaps tensor 'b' at data offset 128");
  GgufBuilder mis = small_file();
  mis.tensors[1].offset = 144;
  EXPECT_HAS(parse_error(mis.build()),
             "tensor 'b' data offset 144 is not a multiple of the alignment 32");
  GgufBuilder far = small_file();
  far.tensors[1].offset = 1ull << 62;
  EXPECT_HAS(parse_error(far.build()), "runs past the end");
  GgufBuilder wrap = small_file();  // offset + size wraps around 2^64
  wrap.tensors[1].offset = ~0ull - 31;
  EXPECT_HAS(parse_error(wrap.build()), "runs past the end");
}

TEST(GgufErrors, BadAlignment) {
  for (uint32_t a : {0u, 48u}) {
    GgufBuilder b = small_file();
    b.kv_u32("general.alignment", a);
    EXPECT_HAS(parse_error(b.build()),
               "general.alignment = " + std::to_string(a) + " is not a power of two");
  }
  GgufBuilder s = small_file();
  s.kv_string("general.alignment", "32");
  EXPECT_HAS(parse_error(s.build()), "'general.alignment' is STRING, expected an unsigned integer");
  GgufBuilder huge = small_file();
  huge.kv("general.alignment", kU64, le64(1ull << 40));
  EXPECT_HAS(parse_error(huge.build()), "absurdly large");
}

TEST(GgufErrors, AbsurdCountsAndLengths) {
  GgufBuilder t = small_file();
  t.n_tensors_override = 1ull << 60;
  EXPECT_HAS(parse_error(t.build()), "declares 1152921504606846976 tensors");
  GgufBuilder kv = small_file();
  kv.n_kv_override = 1ull << 60;
  EXPECT_HAS(parse_error(kv.build()), "declares 1152921504606846976 metadata entries");
  GgufBuilder s = small_file();
  s.kv("long", kString, le64(1ull << 62) + "abc");
  EXPECT_HAS(parse_error(s.build()), "metadata 'long' (a string of 4611686018427387904 bytes)");
  GgufBuilder arr = small_file();
  arr.kv("many", kArray, le32(kU64) + le64(1ull << 61));
  EXPECT_HAS(parse_error(arr.build()), "array of 2305843009213693952 UINT64 values does not fit");
  GgufBuilder strs = small_file();
  strs.kv("manystr", kArray, le32(kString) + le64(1ull << 40));
  EXPECT_HAS(parse_error(strs.build()), "STRING values does not fit");
  GgufBuilder name = small_file();
  name.tensors[0].name = std::string(70000, 'n');
  EXPECT_HAS(parse_error(name.build()), "is absurdly long (limit 65536");
  GgufBuilder key = small_file();
  key.kvs[0].key = std::string(1ull << 17, 'k');
  EXPECT_HAS(parse_error(key.build()), "metadata entry 0 key of 131072 bytes is absurdly long");
  GgufBuilder dims = small_file();
  dims.tensors[0].ne.assign(17, 1);
  EXPECT_HAS(parse_error(dims.build()), "tensor 'w' has 17 dimensions (at most 16");
  GgufBuilder neg = small_file();
  neg.tensors[1].ne = {1ull << 63};
  EXPECT_HAS(parse_error(neg.build()), "tensor 'b' dimension 0 = 9223372036854775808 is negative");
  GgufBuilder prod = small_file();
  prod.tensors[1].ne = {1ull << 40, 1ull << 40};
  EXPECT_HAS(parse_error(prod.build()), "are absurdly large");
  // Arrays nested deeper than kGgufMaxArrayDepth.
  std::string v = le32(kU8) + le64(0);
  for (int i = 0; i < 9; ++i) v = le32(kArray) + le64(1) + v;
  GgufBuilder deep = small_file();
  deep.kv("deep", kArray, v);
  EXPECT_HAS(parse_error(deep.build()), "arrays nested more than 8 deep");
}

TEST(GgufErrors, Duplicates) {
  GgufBuilder k = small_file();
  k.kv_u32("general.quantization_version", 2);
  EXPECT_HAS(parse_error(k.build()), "metadata key 'general.quantization_version' appears twice");
  GgufBuilder t = small_file();
  t.tensors[1].name = "w";
  EXPECT_HAS(parse_error(t.build()), "tensor 'w' appears twice");
}
