// Differential tests against the live reference: a Python script (gen_random.py) writes a fresh
// random tiny model folder, inputs and the outputs of the real diffusers / transformers code into a
// temp dir; the tests load it with the project's code and compare. Seed: $QWEN_REFERENCE_SEED, else
// the clock (printed); $QWEN_REFERENCE_PYTHON overrides the interpreter. The temp dir is removed
// after a passing test; kept (and printed) after a failure or with $QWEN_REFERENCE_KEEP=1.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>

namespace qwen::reftest {

// Component and pipeline tolerances: the ones of the fixture tests
// (tests/fixtures/qwen-tiny/README.md, "Tolerances").
inline constexpr double kComponentAtol = 1e-4;
inline constexpr double kComponentRtol = 1e-4;
inline constexpr int kPngMaxLevels = 1;

// The reference interpreter (<source>/.venv/bin/python), or "" with `why` set when it cannot import
// torch + diffusers + transformers.
std::string reference_python(std::string* why);

// True when $CI is "true" (CI runs .ci/run with CI=true): a missing reference is then a failure.
bool reference_required();

class ReferenceCase {
 public:
  // Runs gen_random.py for `parts` ("transformer", "vae", "text_encoder", "t2i", "img2img",
  // "inpaint", "edit", "edit_plus", "edit_inpaint", comma-separated).
  // On success ok() is true; when the reference is unavailable skip_reason() is set; on a script
  // failure error() holds its log.
  // `script`: the generator in tests/reference/ (same command line: OUT --seed S --parts P
  // --threads 1, writes OUT/case.json); other model families have their own (gen_layered.py,
  // gen_qwen21.py).
  explicit ReferenceCase(const std::string& parts, const std::string& extra_args = "",
                         const std::string& script = "gen_random.py");
  ~ReferenceCase();

  bool ok() const { return ok_; }
  const std::string& skip_reason() const { return skip_; }
  const std::string& error() const { return error_; }
  int64_t seed() const { return seed_; }
  const std::string& dir() const { return dir_; }
  std::string model_dir() const { return dir_ + "/model"; }
  // The edit model folder (edit parts: the components of model_dir() plus processor/).
  std::string edit_model_dir() const { return dir_ + "/edit_model"; }
  const nlohmann::json& json() const { return json_; }
  // Tensors of OUT/<part>.safetensors (float -> float32, integer -> int64).
  std::map<std::string, torch::Tensor> tensors(const std::string& part) const;

 private:
  bool ok_ = false;
  std::string skip_, error_, dir_;
  int64_t seed_ = 0;
  nlohmann::json json_;
};

}  // namespace qwen::reftest

// Generates the case (QWEN_REFERENCE_CASE(var, parts[, extra gen_random.py arguments])), or
// (reference unavailable) fails the calling test under CI=true and skips it otherwise; fails it
// when gen_random.py fails.
#define QWEN_REFERENCE_CASE(var, ...)                                                            \
  ::qwen::reftest::ReferenceCase var(__VA_ARGS__);                                               \
  if (!var.skip_reason().empty()) {                                                              \
    if (::qwen::reftest::reference_required())                                                   \
      GTEST_FAIL() << var.skip_reason() << " (CI=true: the live reference is "                   \
                   << "required; installers/setup.sh creates it)";                               \
    GTEST_SKIP() << var.skip_reason();                                                           \
  }                                                                                              \
  ASSERT_TRUE(var.ok()) << "gen_random.py failed (seed " << var.seed() << "):\n" << var.error(); \
  ::testing::Test::RecordProperty("reference_seed", std::to_string(var.seed()))
