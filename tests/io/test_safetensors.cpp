// safetensors parsing, mapping, stores and hostile files (torch-free).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "common/st_writer.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;
using qwen::io::CheckpointError;
using qwen::io::DType;
using qwen::io::SafetensorsFile;
using qwen::io::TensorStore;
using namespace qwen::test;

namespace {

// Runs `f`, expects a CheckpointError whose message contains every one of `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no CheckpointError thrown";
  } catch (const CheckpointError& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg;
  }
}

void expect_header_error(const std::string& header, std::initializer_list<std::string> parts,
                         uint64_t data_bytes = 64) {
  expect_error(
      [&] {
        qwen::io::parse_header(header.data(), header.size(), 8 + header.size() + data_bytes,
                               "hdr.st");
      },
      parts);
}

}  // namespace

TEST(Safetensors, DtypeNamesAndSizes) {
  struct E {
    DType d;
    const char* n;
    size_t s;
  };
  for (const E& e :
       {E{DType::F64, "F64", 8}, E{DType::F32, "F32", 4}, E{DType::F16, "F16", 2},
        E{DType::BF16, "BF16", 2}, E{DType::F8_E4M3, "F8_E4M3", 1}, E{DType::F8_E5M2, "F8_E5M2", 1},
        E{DType::I64, "I64", 8}, E{DType::I32, "I32", 4}, E{DType::I16, "I16", 2},
        E{DType::I8, "I8", 1}, E{DType::U8, "U8", 1}, E{DType::BOOL, "BOOL", 1}}) {
    EXPECT_EQ(qwen::io::dtype_size(e.d), e.s);
    EXPECT_STREQ(qwen::io::dtype_name(e.d), e.n);
    DType back{};
    ASSERT_TRUE(qwen::io::parse_dtype(e.n, &back));
    EXPECT_EQ(back, e.d);
  }
  DType d{};
  EXPECT_FALSE(qwen::io::parse_dtype("F4", &d));
}

TEST(Safetensors, ParseHeaderValid) {
  const std::string h = R"({"b":{"dtype":"F32","shape":[2,3],"data_offsets":[8,32]},)"
                        R"("a":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]},)"
                        R"("e":{"dtype":"I64","shape":[0,5],"data_offsets":[32,32]},)"
                        R"("s":{"dtype":"U8","shape":[],"data_offsets":[32,33]},)"
                        R"("__metadata__":{"format":"pt"}})";
  auto p = qwen::io::parse_header(h.data(), h.size(), 8 + h.size() + 33, "x");
  ASSERT_EQ(p.tensors.size(), 4u);
  EXPECT_EQ(p.data_offset, 8 + h.size());
  EXPECT_EQ(p.tensors[0].name, "a");  // data-offset order
  EXPECT_EQ(p.tensors[1].name, "b");
  EXPECT_EQ(p.tensors[1].dtype, DType::F32);
  EXPECT_EQ(p.tensors[1].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(p.tensors[1].numel(), 6);
  EXPECT_EQ(p.tensors[2].numel(), 0);
  EXPECT_EQ(p.tensors[3].numel(), 1);  // scalar
  EXPECT_EQ(p.metadata.at("format"), "pt");
}

TEST(Safetensors, HostileHeaders) {
  expect_header_error("{\"a\":", {"hdr.st", "not valid JSON"});
  expect_header_error("[1,2]", {"hdr.st", "not a JSON object"});
  expect_header_error("\"str\"", {"not a JSON object"});
  expect_header_error(R"({"a":5})", {"tensor 'a'", "not a JSON object"});
  expect_header_error(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", {"'dtype'"});
  expect_header_error(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", {"'shape'"});
  expect_header_error(R"({"a":{"dtype":"F32","shape":[1]}})", {"data_offsets"});
  expect_header_error(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", {"data_offsets"});
  expect_header_error(R"({"a":{"dtype":"Q4_K","shape":[1],"data_offsets":[0,4]}})",
                      {"tensor 'a'", "unknown dtype 'Q4_K'"});
  expect_header_error(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})",
                      {"non-negative integers"});
  expect_header_error(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})",
                      {"non-negative integers"});
  expect_header_error(R"({"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,4]}})",
                      {"non-negative integers"});
  expect_header_error(
      R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})",
      {"absurdly large"});
  expect_header_error(
      R"({"a":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]}})",
      {"too large"});
  expect_header_error(
      R"({"a":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}})",
      {"dimensions"});
  expect_header_error(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})",
                      {"non-negative integers"});
  expect_header_error(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})",
                      {"begin after end"});
  expect_header_error(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[64,68]}})",
                      {"outside the 64-byte data section"});
  expect_header_error(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                      {"needs 12 bytes", "span 8"});
  expect_header_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                      {"'a' and 'b' overlap"});
  expect_header_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                      {"'a' twice"});
  expect_header_error(R"({"__metadata__":[1]})", {"__metadata__"});
  expect_header_error(R"({"__metadata__":{"k":1}})", {"__metadata__", "'k'"});
  // Header longer than the file / than the limit.
  const std::string h = "{}";
  expect_error([&] { qwen::io::parse_header(h.data(), h.size(), 9, "f"); }, {"past the end"});
  expect_error(
      [&] { qwen::io::parse_header(h.data(), qwen::io::kMaxHeaderBytes + 1, UINT64_MAX, "f"); },
      {"limit"});
}

TEST(Safetensors, OpenFileAndReadData) {
  TempDir tmp;
  auto a = st_tensor("a", "F32", {2, 2});
  a.bytes = f32_bytes({1.f, 2.f, 3.f, 4.f});
  auto b = st_tensor("b", "BF16", {3});
  write_file(tmp.path() / "m.safetensors", st_serialize({a, b}));
  auto f = SafetensorsFile::open(tmp.str("m.safetensors"));
  ASSERT_EQ(f->tensors().size(), 2u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  const auto* ta = f->find("a");
  ASSERT_NE(ta, nullptr);
  EXPECT_EQ(std::memcmp(f->data(*ta), a.bytes.data(), 16), 0);
  const auto* tb = f->find("b");
  ASSERT_NE(tb, nullptr);
  EXPECT_EQ(std::memcmp(f->data(*tb), b.bytes.data(), 6), 0);
  EXPECT_EQ(f->find("c"), nullptr);
  // A store over the file and over its folder.
  for (const std::string& p : {tmp.str("m.safetensors"), tmp.str()}) {
    auto s = TensorStore::open(p);
    EXPECT_EQ(s.names(), (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(s.total_bytes(), 22u);
    ASSERT_NE(s.find("a"), nullptr);
    EXPECT_EQ(s.find("a")->info->shape, (std::vector<int64_t>{2, 2}));
  }
}

TEST(Safetensors, HostileFiles) {
  TempDir tmp;
  const std::string good = st_serialize({st_tensor("w", "F32", {4, 4})});
  auto open = [&](const std::string& name, const std::string& bytes) {
    write_file(tmp.path() / name, bytes);
    return [p = tmp.str(name)] { SafetensorsFile::open(p); };
  };
  expect_error(open("empty.safetensors", ""), {"empty.safetensors", "too short"});
  expect_error(open("short.safetensors", "abc"), {"short.safetensors", "too short"});
  expect_error(open("trunc.safetensors", good.substr(0, good.size() - 10)),
               {"trunc.safetensors", "outside", "truncated"});
  expect_error(open("hdrtrunc.safetensors", good.substr(0, 20)),
               {"hdrtrunc.safetensors", "past the end"});
  expect_error(open("len.safetensors", st_raw("{}", "", 1000)),
               {"len.safetensors", "past the end"});
  expect_error(open("huge.safetensors", st_raw("{}", "", 200ull * 1024 * 1024)),
               {"huge.safetensors", "limit"});
  expect_error(open("json.safetensors", st_raw("{nope", "")), {"json.safetensors", "JSON"});
  expect_error([&] { SafetensorsFile::open(tmp.str("absent.safetensors")); },
               {"absent.safetensors", "cannot open"});
  expect_error([&] { SafetensorsFile::open(tmp.str()); }, {"not a regular file"});
  expect_error([&] { TensorStore::open(tmp.str("nothing-here")); }, {"does not exist"});
  TempDir empty;
  expect_error([&] { TensorStore::open(empty.str()); }, {"no .safetensors file"});
}

TEST(Safetensors, FolderWithSeveralFilesNeedsIndex) {
  TempDir tmp;
  write_file(tmp.path() / "x.safetensors", st_serialize({st_tensor("a", "F32", {1})}));
  write_file(tmp.path() / "y.safetensors", st_serialize({st_tensor("b", "F32", {1})}));
  expect_error([&] { TensorStore::open(tmp.str()); },
               {"several", "x.safetensors", "y.safetensors"});
  // The default name wins over variants.
  write_file(tmp.path() / "model.safetensors", st_serialize({st_tensor("c", "F32", {1})}));
  EXPECT_EQ(TensorStore::open(tmp.str()).names(), (std::vector<std::string>{"c"}));
}

namespace {
void write_sharded(const TempDir& tmp, const std::string& index_json) {
  write_file(tmp.path() / "m-00001-of-00002.safetensors",
             st_serialize({st_tensor("a", "F32", {2}), st_tensor("b", "BF16", {3})}));
  write_file(tmp.path() / "m-00002-of-00002.safetensors",
             st_serialize({st_tensor("c", "I64", {1})}));
  write_file(tmp.path() / "model.safetensors.index.json", index_json);
}
}  // namespace

TEST(Safetensors, ShardedStore) {
  TempDir tmp;
  write_sharded(tmp, R"({"metadata":{"total_size":22},"weight_map":{
    "a":"m-00001-of-00002.safetensors","b":"m-00001-of-00002.safetensors",
    "c":"m-00002-of-00002.safetensors"}})");
  for (const std::string& p : {tmp.str(), tmp.str("model.safetensors.index.json")}) {
    auto s = TensorStore::open(p);
    EXPECT_EQ(s.names(), (std::vector<std::string>{"a", "b", "c"}));
    EXPECT_NE(s.find("a")->file->path().find("00001"), std::string::npos);
    EXPECT_NE(s.find("c")->file->path().find("00002"), std::string::npos);
    EXPECT_EQ(s.find("c")->info->dtype, DType::I64);
  }
}

TEST(Safetensors, HostileShardIndexes) {
  const std::string s1 = "m-00001-of-00002.safetensors", s2 = "m-00002-of-00002.safetensors";
  auto check = [&](const std::string& idx, std::initializer_list<std::string> parts) {
    TempDir tmp;
    write_sharded(tmp, idx);
    expect_error([&] { TensorStore::open(tmp.str()); }, parts);
  };
  check("{bad", {"model.safetensors.index.json", "not valid JSON"});
  check("[]", {"not a JSON object"});
  check(R"({"metadata":{}})", {"no 'weight_map'"});
  check(R"({"weight_map":{"a":"m-00003-of-00002.safetensors"}})",
        {"shard 'm-00003-of-00002.safetensors'", "missing"});
  check(R"({"weight_map":{"a":")" + s1 + R"(","b":")" + s1 + R"(","c":")" + s1 + R"("}})",
        {"tensor 'c'", "does not hold it"});
  check(R"({"weight_map":{"a":")" + s1 + R"(","c":")" + s2 + R"("}})",
        {"holds tensor 'b'", "does not list"});
  check(R"({"weight_map":{"a":"../x.safetensors"}})", {"not a plain file name"});
  check(R"({"weight_map":{"a":"/etc/passwd"}})", {"not a plain file name"});
  check(R"({"weight_map":{"a":7}})", {"'a'", "not a file name"});
}

TEST(Safetensors, TensorInTwoShards) {
  TempDir tmp;
  write_file(tmp.path() / "s1.safetensors", st_serialize({st_tensor("a", "F32", {2})}));
  write_file(tmp.path() / "s2.safetensors",
             st_serialize({st_tensor("a", "F32", {2}), st_tensor("c", "F32", {1})}));
  write_file(tmp.path() / "model.safetensors.index.json",
             R"({"weight_map":{"a":"s1.safetensors","c":"s2.safetensors"}})");
  expect_error([&] { TensorStore::open(tmp.str()); },
               {"tensor 'a' is present in shard 's2.safetensors' and in 's1.safetensors'"});
}

TEST(Safetensors, StoreRenaming) {
  TempDir tmp;
  write_file(tmp.path() / "m.safetensors",
             st_serialize({st_tensor("model.diffusion_model.x", "F32", {1}),
                           st_tensor("model.diffusion_model.y", "F32", {1}),
                           st_tensor("other", "F32", {1})}));
  auto s = TensorStore::open(tmp.str("m.safetensors"));
  s.strip_prefix("model.diffusion_model.");
  EXPECT_EQ(s.names(), (std::vector<std::string>{"other", "x", "y"}));
  s.rename("x", "z");
  EXPECT_EQ(s.find("x"), nullptr);
  ASSERT_NE(s.find("z"), nullptr);
  EXPECT_EQ(s.find("z")->info->name, "model.diffusion_model.x");  // still the file's tensor
  expect_error([&] { s.rename("y", "z"); }, {"'z'", "taken"});
  expect_error([&] { s.rename("nope", "q"); }, {"'nope'", "no such tensor"});
  s.erase("other");
  EXPECT_EQ(s.size(), 2u);
  // Stripping that merges two names is an error.
  write_file(tmp.path() / "n.safetensors",
             st_serialize({st_tensor("p.a", "F32", {1}), st_tensor("a", "F32", {1})}));
  auto n = TensorStore::open(tmp.str("n.safetensors"));
  expect_error([&] { n.strip_prefix("p."); }, {"two tensors named 'a'"});
}
