// Tensor conversion, zero-copy mapping and module loading (models/weights.h), fixture helpers.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "common/fixtures.h"
#include "common/st_writer.h"
#include "io/safetensors.h"
#include "models/weights.h"

using qwen::io::CheckpointError;
using qwen::io::TensorStore;
using qwen::models::load_module;
using qwen::models::to_tensor;
using qwen::models::to_tensor_raw;
using namespace qwen::test;

namespace {

template <class T>
std::vector<uint8_t> bytes_of(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

StTensor make(const std::string& name, const std::string& dtype, std::vector<int64_t> shape,
              std::vector<uint8_t> bytes) {
  return StTensor{name, dtype, std::move(shape), std::move(bytes)};
}

// One store holding `tensors`, written to a temp folder that lives as long as the fixture.
struct StoreFile {
  TempDir dir;
  TensorStore store;
  explicit StoreFile(const std::vector<StTensor>& tensors) {
    write_file(dir.path() / "m.safetensors", st_serialize(tensors));
    store = TensorStore::open(dir.str("m.safetensors"));
  }
};

std::vector<double> values(const torch::Tensor& t) {
  auto d = t.to(torch::kFloat64).contiguous().reshape({-1});
  return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

}  // namespace

TEST(Weights, Bf16BitsToFloat32) {
  const std::vector<uint16_t> bits = {0x3F80, 0xC000, 0x7F7F, 0x0001, 0x8000, 0x7F80, 0x3EAB};
  StoreFile f({make("x", "BF16", {7}, bytes_of(bits))});
  auto t = to_tensor(*f.store.find("x"), torch::kFloat32);
  ASSERT_EQ(t.scalar_type(), torch::kFloat32);
  auto v = values(t);
  for (size_t i = 0; i < bits.size(); ++i) {
    const uint32_t u = static_cast<uint32_t>(bits[i]) << 16;
    float expected;
    std::memcpy(&expected, &u, 4);
    EXPECT_EQ(static_cast<float>(v[i]), expected) << "bits 0x" << std::hex << bits[i];
  }
  EXPECT_TRUE(std::signbit(v[4]));
  EXPECT_TRUE(std::isinf(v[5]));
  EXPECT_NEAR(v[2], 3.3895313892515355e38, 1e31);
}

TEST(Weights, F16IncludingSubnormals) {
  const std::vector<uint16_t> bits = {0x3C00, 0x0001, 0x03FF, 0x0400,
                                      0x7BFF, 0xFC00, 0x7E00, 0xC500};
  StoreFile f({make("x", "F16", {8}, bytes_of(bits))});
  auto v = values(to_tensor(*f.store.find("x"), torch::kFloat32));
  EXPECT_EQ(v[0], 1.0);
  EXPECT_EQ(v[1], std::ldexp(1.0, -24));         // smallest subnormal
  EXPECT_EQ(v[2], 1023 * std::ldexp(1.0, -24));  // largest subnormal
  EXPECT_EQ(v[3], std::ldexp(1.0, -14));         // smallest normal
  EXPECT_EQ(v[4], 65504.0);
  EXPECT_EQ(v[5], -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(v[6]));
  EXPECT_EQ(v[7], -5.0);
}

TEST(Weights, F8E4M3Decoding) {
  const std::vector<uint8_t> bits = {0x38, 0xB8, 0x7E, 0xFE, 0x7F, 0xFF,
                                     0x01, 0x07, 0x08, 0x00, 0x80, 0x3C};
  StoreFile f({make("x", "F8_E4M3", {12}, bits)});
  auto v = values(to_tensor(*f.store.find("x"), torch::kFloat32));
  EXPECT_EQ(v[0], 1.0);
  EXPECT_EQ(v[1], -1.0);
  EXPECT_EQ(v[2], 448.0);  // max finite
  EXPECT_EQ(v[3], -448.0);
  EXPECT_TRUE(std::isnan(v[4]));  // E4M3FN: S.1111.111 is NaN, there is no infinity
  EXPECT_TRUE(std::isnan(v[5]));
  EXPECT_EQ(v[6], std::ldexp(1.0, -9));      // smallest subnormal
  EXPECT_EQ(v[7], 7 * std::ldexp(1.0, -9));  // largest subnormal
  EXPECT_EQ(v[8], std::ldexp(1.0, -6));      // smallest normal
  EXPECT_EQ(v[9], 0.0);
  EXPECT_EQ(v[10], 0.0);
  EXPECT_TRUE(std::signbit(v[10]));
  EXPECT_EQ(v[11], 1.5);
  // Also straight to bfloat16 (exact: every E4M3 value is representable).
  auto b = to_tensor(*f.store.find("x"), torch::kBFloat16);
  EXPECT_EQ(b.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(values(b)[2], 448.0);
}

TEST(Weights, F8E5M2Decoding) {
  const std::vector<uint8_t> bits = {0x3C, 0x7B, 0x7C, 0xFC, 0x7D, 0x7F, 0x01, 0x04, 0xC0};
  StoreFile f({make("x", "F8_E5M2", {9}, bits)});
  auto v = values(to_tensor(*f.store.find("x"), torch::kFloat32));
  EXPECT_EQ(v[0], 1.0);
  EXPECT_EQ(v[1], 57344.0);  // max finite
  EXPECT_EQ(v[2], std::numeric_limits<double>::infinity());
  EXPECT_EQ(v[3], -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(v[4]));
  EXPECT_TRUE(std::isnan(v[5]));
  EXPECT_EQ(v[6], std::ldexp(1.0, -16));  // smallest subnormal
  EXPECT_EQ(v[7], std::ldexp(1.0, -14));  // smallest normal
  EXPECT_EQ(v[8], -2.0);
}

TEST(Weights, F32ToBf16RoundsToNearestEven) {
  const std::vector<float> x = {1.0f + std::ldexp(1.0f, -8), 1.0f + 3 * std::ldexp(1.0f, -8),
                                1.0f + std::ldexp(1.0f, -9)};
  StoreFile f({make("x", "F32", {3}, bytes_of(x))});
  auto v = values(to_tensor(*f.store.find("x"), torch::kBFloat16));
  EXPECT_EQ(v[0], 1.0);       // tie -> even
  EXPECT_EQ(v[1], 1.015625);  // tie -> even (up)
  EXPECT_EQ(v[2], 1.0);
}

TEST(Weights, IntegerAndBoolConversions) {
  StoreFile f({make("i64", "I64", {3}, bytes_of(std::vector<int64_t>{-5, 0, 1LL << 40})),
               make("i32", "I32", {2}, bytes_of(std::vector<int32_t>{-7, 123456})),
               make("u8", "U8", {3}, {0, 128, 255}), make("b", "BOOL", {3}, {1, 0, 1})});
  auto i64 = to_tensor(*f.store.find("i64"), torch::kInt64);
  EXPECT_EQ(i64.scalar_type(), torch::kInt64);
  EXPECT_EQ(values(i64), (std::vector<double>{-5, 0, std::ldexp(1.0, 40)}));
  EXPECT_EQ(values(to_tensor(*f.store.find("i64"), torch::kFloat32)),
            (std::vector<double>{-5, 0, std::ldexp(1.0, 40)}));
  auto i32 = to_tensor(*f.store.find("i32"), torch::kInt64);
  EXPECT_EQ(i32.scalar_type(), torch::kInt64);
  EXPECT_EQ(values(i32), (std::vector<double>{-7, 123456}));
  EXPECT_EQ(values(to_tensor(*f.store.find("u8"), torch::kFloat32)),
            (std::vector<double>{0, 128, 255}));
  auto b = to_tensor(*f.store.find("b"), torch::kBool);
  EXPECT_EQ(b.scalar_type(), torch::kBool);
  EXPECT_EQ(values(b), (std::vector<double>{1, 0, 1}));
  EXPECT_EQ(values(to_tensor(*f.store.find("b"), torch::kInt64)), (std::vector<double>{1, 0, 1}));
}

TEST(Weights, ZeroCopyWhenAlignedAndMappingOutlivesStore) {
  std::vector<float> x = {1, 2, 3, 4, 5, 6};
  // "pad" (1 byte) shifts the next tensor off 4-byte alignment.
  TempDir dir;
  write_file(dir.path() / "m.safetensors",
             st_serialize({make("a", "F32", {2, 3}, bytes_of(x)), make("pad", "U8", {1}, {9}),
                           make("b", "F32", {6}, bytes_of(x))}));
  torch::Tensor a, b, a2;
  {
    auto store = TensorStore::open(dir.str("m.safetensors"));
    const auto* ra = store.find("a");
    const auto* rb = store.find("b");
    a = to_tensor_raw(*ra);
    EXPECT_EQ(a.data_ptr(), static_cast<const void*>(ra->file->data(*ra->info)));  // zero-copy
    a2 = to_tensor(*ra, torch::kFloat32);
    EXPECT_EQ(a2.data_ptr(), a.data_ptr());
    b = to_tensor_raw(*rb);
    EXPECT_NE(b.data_ptr(),
              static_cast<const void*>(rb->file->data(*rb->info)));  // unaligned: copy
    EXPECT_EQ(to_tensor(*ra, torch::kFloat64).scalar_type(), torch::kFloat64);
  }
  // The store is gone; the tensors keep the mapping alive.
  EXPECT_EQ(values(a), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(values(b), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  // In-place updates are private (copy-on-write) and never fault.
  a.add_(1);
  EXPECT_EQ(values(a)[0], 2.0);
  auto again = TensorStore::open(dir.str("m.safetensors"));
  EXPECT_EQ(values(to_tensor(*again.find("a"), torch::kFloat32))[0], 1.0);
}

namespace {
struct Block : torch::nn::Module {
  Block() {
    proj = register_module("proj", torch::nn::Linear(4, 3));
    scale = register_parameter("scale", torch::zeros({3}));
    steps = register_buffer("steps", torch::zeros({2}, torch::kInt64));
    freqs = register_buffer("freqs", torch::arange(4, torch::kFloat32));  // computed, not stored
  }
  torch::nn::Linear proj{nullptr};
  torch::Tensor scale, steps, freqs;
};
struct Net : torch::nn::Module {
  Net() {
    blocks = register_module("blocks", torch::nn::ModuleList());
    blocks->push_back(std::make_shared<Block>());
    blocks->push_back(std::make_shared<Block>());
  }
  torch::nn::ModuleList blocks{nullptr};
};

std::vector<StTensor> net_tensors(const std::string& fdtype) {
  std::vector<StTensor> out;
  for (int i = 0; i < 2; ++i) {
    const std::string p = "blocks." + std::to_string(i) + ".";
    out.push_back(st_tensor(p + "proj.weight", fdtype, {3, 4}));
    out.push_back(st_tensor(p + "proj.bias", fdtype, {3}));
    out.push_back(st_tensor(p + "scale", fdtype, {3}));
    out.push_back(make(p + "steps", "I64", {2}, bytes_of(std::vector<int64_t>{i, 10 + i})));
  }
  // Give every float tensor exact values.
  for (auto& t : out) {
    if (t.dtype != "F32") continue;
    std::vector<float> v(t.bytes.size() / 4);
    for (size_t k = 0; k < v.size(); ++k) v[k] = 0.25f * static_cast<float>(k) - 1.0f;
    t.bytes = bytes_of(v);
  }
  return out;
}
}  // namespace

TEST(Weights, LoadModuleCopiesEveryParameter) {
  StoreFile f(net_tensors("F32"));
  Net net;
  auto report = load_module(net, f.store, "net", torch::kFloat32, torch::kCPU);
  EXPECT_TRUE(report.missing.empty());
  EXPECT_TRUE(report.unexpected.empty());
  for (auto& p : net.named_parameters()) {
    auto expected = to_tensor(*f.store.find(p.key()), torch::kFloat32);
    EXPECT_TRUE(torch::equal(p.value(), expected)) << p.key();
    EXPECT_EQ(p.value().data_ptr(), expected.data_ptr()) << p.key() << " not zero-copy";
  }
  auto* b1 = net.blocks[1]->as<Block>();
  EXPECT_EQ(values(b1->steps), (std::vector<double>{1, 11}));
  EXPECT_EQ(values(b1->freqs), (std::vector<double>{0, 1, 2, 3}));  // computed buffer kept
  EXPECT_EQ(values(b1->proj->weight)[0], -1.0);
  // The module works after loading and its parameters still track gradients.
  auto y = net.blocks[0]->as<Block>()->proj->forward(torch::ones({1, 4}));
  EXPECT_EQ(y.sizes(), (c10::IntArrayRef{1, 3}));
  EXPECT_TRUE(b1->proj->weight.requires_grad());
}

TEST(Weights, LoadModuleConvertsDtype) {
  // Stored BF16, loaded as float32 and as bfloat16.
  StoreFile f(net_tensors("BF16"));
  Net net32;
  load_module(net32, f.store, "net", torch::kFloat32, torch::kCPU);
  EXPECT_EQ(net32.blocks[0]->as<Block>()->proj->weight.scalar_type(), torch::kFloat32);
  EXPECT_EQ(net32.blocks[0]->as<Block>()->steps.scalar_type(), torch::kInt64);
  Net net16;
  load_module(net16, f.store, "net", torch::kBFloat16, torch::kCPU);
  EXPECT_EQ(net16.blocks[0]->as<Block>()->proj->weight.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(net16.blocks[0]->as<Block>()->proj->weight.to(torch::kFloat32),
                           net32.blocks[0]->as<Block>()->proj->weight));
}

TEST(Weights, LoadModuleReportsAllProblems) {
  auto tensors = net_tensors("F32");
  tensors.erase(tensors.begin());  // blocks.0.proj.weight missing
  tensors.erase(tensors.begin());  // blocks.0.proj.bias missing
  tensors.push_back(st_tensor("blocks.9.extra", "F32", {1}));
  tensors.push_back(st_tensor("lm_head.weight", "F32", {2}));
  for (auto& t : tensors)
    if (t.name == "blocks.1.scale") t = st_tensor("blocks.1.scale", "F32", {4});
  StoreFile f(tensors);
  Net net;
  try {
    load_module(net, f.store, "mynet", torch::kFloat32, torch::kCPU);
    FAIL() << "no error";
  } catch (const CheckpointError& e) {
    const std::string m = e.what();
    for (const char* part : {"mynet", "m.safetensors", "2 missing", "blocks.0.proj.weight",
                             "blocks.0.proj.bias", "2 unexpected", "blocks.9.extra",
                             "lm_head.weight", "blocks.1.scale (expected [3], found [4])"})
      EXPECT_NE(m.find(part), std::string::npos) << part << " not in: " << m;
  }
  // Ignoring prefixes: the ignored names come back in the report.
  auto ok = net_tensors("F32");
  ok.push_back(st_tensor("lm_head.weight", "F32", {2}));
  StoreFile g(ok);
  auto report = load_module(net, g.store, "net", torch::kFloat32, torch::kCPU, {"lm_head."});
  EXPECT_EQ(report.unexpected, (std::vector<std::string>{"lm_head.weight"}));
}

TEST(Fixtures, PathsAndTensors) {
  EXPECT_NE(tiny_model_dir().find("models/qwen-image-tiny"), std::string::npos);
  EXPECT_NE(tiny_edit_model_dir().find("qwen-image-edit-2509-tiny"), std::string::npos);
  auto t = load_tensors(fixture_path("cases/pipeline_edit/tensors.safetensors"));
  ASSERT_TRUE(t.count("image_latents"));
  EXPECT_EQ(t["image_latents"].sizes(), (c10::IntArrayRef{1, 4144, 64}));
  EXPECT_EQ(t["image_latents"].scalar_type(), torch::kFloat32);
  EXPECT_EQ(t["step_latents"].sizes(), (c10::IntArrayRef{2, 1, 16, 64}));
  auto tok = load_tensors(fixture_path("cases/text_encoder_t2i/tensors.safetensors"));
  bool has_int = false;
  for (auto& [k, v] : tok) has_int |= v.scalar_type() == torch::kInt64;
  EXPECT_TRUE(has_int);
  EXPECT_NE(read_text(fixture_path("cases/pipeline_edit/inputs.json")).find("{"),
            std::string::npos);
  EXPECT_THROW(read_text(fixture_path("no/such/file")), std::runtime_error);
  EXPECT_THROW(load_tensors(fixture_path("no/such.safetensors")), CheckpointError);
}

TEST(Fixtures, TinyModelWeightsLoadAsBf16) {
  auto s = TensorStore::open(tiny_model_dir() + "/transformer");
  ASSERT_GT(s.size(), 10u);
  for (const auto& [name, ref] : s.all()) EXPECT_EQ(ref.info->dtype, qwen::io::DType::BF16) << name;
  auto te = TensorStore::open(tiny_model_dir() + "/text_encoder");
  EXPECT_NE(te.find("lm_head.weight"), nullptr);
  EXPECT_NE(te.find("model.language_model.embed_tokens.weight"), nullptr);
}

TEST(Fixtures, AllCloseSemantics) {
  auto a = torch::tensor({1.0f, 2.0f, NAN, 4.0f});
  auto b = torch::tensor({1.0f, 2.05f, NAN, 4.0f});
  EXPECT_TRUE(AllClose(a, a, 0.0));
  EXPECT_TRUE(AllClose(a, b, 0.06));
  EXPECT_TRUE(AllClose(a, b, 0.0, 0.03));
  auto r = AllClose(a, b, 0.01);
  EXPECT_FALSE(r);
  const std::string msg = r.message();
  EXPECT_NE(msg.find("worst at [1]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("1 of 4"), std::string::npos) << msg;
  EXPECT_FALSE(AllClose(a, torch::tensor({1.0f, 2.0f, 3.0f, 4.0f}), 1.0));  // NaN vs number
  EXPECT_FALSE(AllClose(a, a.reshape({2, 2}), 1.0));                        // shapes
  EXPECT_FALSE(AllClose(torch::tensor({INFINITY}), torch::tensor({-INFINITY}), 1.0));
  auto m = AllClose(torch::zeros({2, 3}), torch::ones({2, 3}).index_put_({1, 2}, 5.0), 0.5);
  EXPECT_NE(std::string(m.message()).find("worst at [1, 2]"), std::string::npos) << m.message();
}

// The accelerator loading path (two staging buffers, chunks, read-ahead, conversion after the
// copy) run on the CPU with tiny buffers: every tensor arrives intact, in the caller's order.
TEST(Weights, StagedLoadChunksConvertsAndKeepsOrder) {
  std::vector<float> big(70);
  for (size_t i = 0; i < big.size(); ++i) big[i] = 0.5f * float(i) - 7.25f;
  const std::vector<uint16_t> bf = {0x3F80, 0xC000, 0x7F7F, 0x0001, 0x8000, 0x3EAB, 0x4049};
  const std::vector<int64_t> ints = {-3, 0, 1ll << 40};
  StoreFile f({make("a", "F32", {10, 7}, bytes_of(big)), make("b", "BF16", {7}, bytes_of(bf)),
               make("c", "I64", {3}, bytes_of(ints)), make("d", "F32", {0, 4}, {}),
               make("e", "F32", {2, 35}, bytes_of(big))});
  using qwen::models::StagedTensor;
  const auto* a = f.store.find("a");
  const auto* b = f.store.find("b");
  const auto* c = f.store.find("c");
  const auto* d = f.store.find("d");
  const auto* e = f.store.find("e");
  // Reverse file order, conversions both ways; 24-byte buffers split "a" into 12 chunks.
  const std::vector<StagedTensor> items = {{e, torch::kBFloat16},
                                           {d, torch::kFloat32},
                                           {c, torch::kInt64},
                                           {b, torch::kFloat32},
                                           {a, torch::kFloat32}};
  qwen::models::StagingOptions o;
  o.buffer_bytes = 24;
  o.pinned = false;
  const auto got = qwen::models::load_staged(items, torch::kCPU, o);
  ASSERT_EQ(got.size(), items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const auto want = to_tensor(*items[i].ref, items[i].dtype);
    EXPECT_EQ(got[i].scalar_type(), items[i].dtype) << i;
    EXPECT_EQ(got[i].sizes(), want.sizes()) << i;
    EXPECT_TRUE(torch::equal(got[i], want)) << i;
    EXPECT_NE(got[i].numel() ? got[i].data_ptr() : nullptr,
              static_cast<const void*>(items[i].ref->file->data(*items[i].ref->info)))
        << i << ": staged tensors are copies";
  }
  EXPECT_TRUE(a->file->will_need(*a->info));
  EXPECT_TRUE(d->file->will_need(*d->info));  // empty range
}

// load_module reports what it moved, to the report and to every LoadMeter alive on the thread;
// on the CPU nothing is staged (the parameters are the mapping itself).
TEST(Weights, LoadRateIsMetered) {
  StoreFile f(net_tensors("F32"));
  int64_t stored = 0;
  for (const auto& name : f.store.names())
    stored += int64_t(f.store.find(name)->info->end - f.store.find(name)->info->begin);
  qwen::models::LoadMeter outer;
  qwen::models::LoadReport report;
  {
    qwen::models::LoadMeter inner;
    Net net;
    report = load_module(net, f.store, "net", torch::kFloat32, torch::kCPU);
    EXPECT_EQ(inner.bytes(), report.bytes);
  }
  EXPECT_EQ(report.bytes, stored);
  EXPECT_EQ(report.staged, 0);
  EXPECT_GE(report.seconds, 0.0);
  Net again;
  load_module(again, f.store, "net", torch::kFloat32, torch::kCPU);
  EXPECT_EQ(outer.bytes(), 2 * stored);
  EXPECT_EQ(outer.staged_bytes(), 0);
  EXPECT_NE(outer.summary(torch::kCPU).find("mapped from the files"), std::string::npos)
      << outer.summary(torch::kCPU);
}

// A placement's load (HostLoad, issue #13): the tensors it names go from the file into one host
// buffer (plain host memory on the CPU, standing in for page-locked memory), converted on the
// way, with the values of a plain load; the others are loaded as without it (on the CPU: the
// mapping itself); the report and the meters count the host bytes. Outside the scope nothing is
// placed.
TEST(Weights, HostLoadPutsTheNamedTensorsInOneHostBuffer) {
  for (const char* stored : {"F32", "BF16"}) {
    SCOPED_TRACE(stored);
    StoreFile f(net_tensors(stored));
    auto is_host = [](const std::string& n) { return n.rfind("blocks.1.", 0) == 0; };
    int64_t host_stored = 0;
    for (const auto& name : f.store.names())
      if (is_host(name))
        host_stored += int64_t(f.store.find(name)->info->end - f.store.find(name)->info->begin);
    Net want;
    load_module(want, f.store, "net", torch::kFloat32, torch::kCPU);
    Net net;
    qwen::models::LoadMeter meter;
    qwen::models::LoadReport report;
    {
      qwen::models::HostLoad placed(torch::kCPU, is_host);
      ASSERT_EQ(qwen::models::HostLoad::current(), &placed);
      report = load_module(net, f.store, "net", torch::kFloat32, torch::kCPU);
    }
    EXPECT_EQ(qwen::models::HostLoad::current(), nullptr);
    EXPECT_EQ(report.host, host_stored);
    EXPECT_EQ(meter.host_bytes(), host_stored);
    EXPECT_EQ(report.staged, 0);
    const auto wanted = want.named_parameters();
    const void* buffer = nullptr;
    int placed_tensors = 0;
    auto check = [&](const std::string& name, const torch::Tensor& t, const torch::Tensor& w) {
      SCOPED_TRACE(name);
      EXPECT_TRUE(torch::equal(t, w));
      EXPECT_EQ(t.scalar_type(), w.scalar_type());
      const qwen::io::TensorRef* ref = f.store.find(name);
      const auto* mapped = static_cast<const uint8_t*>(ref->file->data(*ref->info));
      const bool in_mapping =
          t.data_ptr() == static_cast<const void*>(mapped);  // the zero-copy CPU load
      if (!is_host(name)) {
        if (std::string(stored) == "F32") {
          EXPECT_TRUE(in_mapping);
        }
        return;
      }
      ++placed_tensors;
      EXPECT_FALSE(in_mapping);
      // One buffer for all of them: the same storage.
      if (!buffer) buffer = t.storage().data();
      EXPECT_EQ(t.storage().data(), buffer);
    };
    for (const auto& p : net.named_parameters()) check(p.key(), p.value(), wanted[p.key()]);
    const auto wanted_buffers = want.named_buffers();
    for (const auto& b : net.named_buffers())
      if (f.store.find(b.key())) check(b.key(), b.value(), wanted_buffers[b.key()]);
    EXPECT_EQ(placed_tensors, 4);  // blocks.1.{proj.weight, proj.bias, scale, steps}
  }
}
