// models/attention.h: the no-mask-without-padding rule, the SDPA backend names, the self-check
// (run on the CPU, where cuDNN and memory-efficient attention cannot run) and that configuring the
// CPU changes nothing.
#include <ATen/Context.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>

#include "models/attention.h"

using namespace qwen::models;

namespace {

struct Flags {
  bool flash, efficient, math, cudnn;
  std::vector<int64_t> order;
  static Flags now() {
    auto& c = at::globalContext();
    Flags f{c.userEnabledFlashSDP(),
            c.userEnabledMemEfficientSDP(),
            c.userEnabledMathSDP(),
            c.userEnabledCuDNNSDP(),
            {}};
    for (auto b : c.sDPPriorityOrder()) f.order.push_back(static_cast<int64_t>(b));
    return f;
  }
  bool operator==(const Flags&) const = default;
};

}  // namespace

TEST(Attention, NoMaskWithoutPadding) {
  EXPECT_FALSE(padding_mask_or_none({}).defined());
  EXPECT_FALSE(padding_mask_or_none(torch::ones({2, 5}, torch::kInt64)).defined());
  EXPECT_FALSE(padding_mask_or_none(torch::ones({1, 3}, torch::kBool)).defined());
  auto padded = torch::ones({2, 5}, torch::kInt64);
  padded[1][4] = 0;
  const auto kept = padding_mask_or_none(padded);
  ASSERT_TRUE(kept.defined());
  EXPECT_TRUE(kept.is_same(padded));
}

TEST(Attention, BackendNames) {
  for (const char* n : {"auto", "cudnn", "flash", "efficient", "math"})
    EXPECT_STREQ(to_string(parse_sdpa_backend(n)), n);
  try {
    parse_sdpa_backend("fastest");
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'fastest'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cudnn, flash, efficient or math"), std::string::npos);
  }
}

TEST(Attention, ConfiguringTheCpuChangesNothing) {
  const Flags before = Flags::now();
  for (const char* req : {"", "auto", "cudnn", "math"}) {
    const SdpaChoice c = configure_sdpa(req, torch::kCPU);
    EXPECT_FALSE(c.backend.has_value()) << req;
    EXPECT_TRUE(c.candidates.empty()) << req;
  }
  EXPECT_EQ(Flags::now(), before);
  EXPECT_THROW(configure_sdpa("fastest", torch::kCPU), std::invalid_argument);
  setenv("QWEN_SDPA_BACKEND", "nonsense", 1);
  EXPECT_THROW(configure_sdpa("", torch::kCPU), std::invalid_argument);
  unsetenv("QWEN_SDPA_BACKEND");
}

// The self-check's mechanics on the CPU: a backend the device lacks is reported unavailable with
// torch's reason, the CPU's kernels agree with float32 math, and the global switches are restored.
TEST(Attention, SelfCheckReportsAndRestores) {
  const Flags before = Flags::now();
  SdpaProbe p;
  p.heads = 3;
  p.seq = 40;
  p.head_dim = 16;
  p.dtype = torch::kFloat32;
  p.iterations = 2;
  p.tolerance = 1e-5;
  const auto cands = sdpa_self_check(
      torch::kCPU, p,
      {SdpaBackend::CuDNN, SdpaBackend::Efficient, SdpaBackend::Flash, SdpaBackend::Math});
  ASSERT_EQ(cands.size(), 4u);
  for (int i : {0, 1}) {
    EXPECT_FALSE(cands[i].available) << to_string(cands[i].backend);
    EXPECT_FALSE(cands[i].error.empty());
  }
  for (int i : {2, 3}) {
    EXPECT_TRUE(cands[i].available) << to_string(cands[i].backend) << ": " << cands[i].error;
    EXPECT_TRUE(cands[i].agrees) << cands[i].max_abs_err;
    EXPECT_GT(cands[i].ms, 0.0);
  }
  EXPECT_EQ(cands[3].max_abs_err, 0.0);  // math is its own reference
  EXPECT_EQ(Flags::now(), before);
  SdpaChoice shown;
  shown.backend = SdpaBackend::Flash;
  shown.reason = "test";
  shown.candidates = cands;
  const std::string d = describe(shown);
  EXPECT_EQ(d.rfind("flash (test: cudnn unavailable, efficient unavailable, flash ", 0), 0u) << d;
}
