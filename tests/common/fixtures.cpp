// Test helpers over the project's copy of the qwen-tiny fixtures.
#include "common/fixtures.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "io/safetensors.h"
#include "models/weights.h"

namespace qwen::test {

std::string fixture_path(const std::string& relative) {
  std::string p = QWEN_FIXTURES;
  p.append("/").append(relative);
  return p;
}

std::string tiny_model_dir() { return fixture_path("models/qwen-image-tiny"); }
std::string tiny_edit_model_dir() { return fixture_path("models/qwen-image-edit-2509-tiny"); }

std::map<std::string, torch::Tensor> load_tensors(const std::string& path) {
  const auto store = io::TensorStore::open(path);
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, ref] : store.all()) {
    const io::DType d = ref.info->dtype;
    const bool is_float = d == io::DType::F64 || d == io::DType::F32 || d == io::DType::F16 ||
                          d == io::DType::BF16 || d == io::DType::F8_E4M3 ||
                          d == io::DType::F8_E5M2;
    // Copies: the result must not depend on the mapping staying around.
    out[name] = models::to_tensor(ref, is_float ? torch::kFloat32 : torch::kInt64).clone();
  }
  return out;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {
std::string shape_of(const torch::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}
}  // namespace

::testing::AssertionResult AllClose(const torch::Tensor& actual, const torch::Tensor& expected,
                                    double atol, double rtol) {
  if (!actual.defined() || !expected.defined())
    return ::testing::AssertionFailure() << "undefined tensor";
  if (actual.sizes() != expected.sizes())
    return ::testing::AssertionFailure() << "shape mismatch: actual " << shape_of(actual)
                                         << " vs expected " << shape_of(expected);
  if (actual.numel() == 0) return ::testing::AssertionSuccess();
  const auto a = actual.detach().to(torch::kCPU, torch::kFloat64).contiguous().reshape({-1});
  const auto b = expected.detach().to(torch::kCPU, torch::kFloat64).contiguous().reshape({-1});
  const double* pa = a.data_ptr<double>();
  const double* pb = b.data_ptr<double>();
  int64_t bad = 0, worst = -1;
  double worst_excess = -1, max_abs = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double x = pa[i], y = pb[i];
    if (std::isnan(x) || std::isnan(y)) {
      if (std::isnan(x) && std::isnan(y)) continue;  // NaN where the reference has NaN
      ++bad;
      if (worst_excess < INFINITY) worst_excess = INFINITY, worst = i;
      continue;
    }
    if (std::isinf(x) || std::isinf(y)) {
      if (x == y) continue;
      ++bad;
      if (worst_excess < INFINITY) worst_excess = INFINITY, worst = i;
      continue;
    }
    const double d = std::abs(x - y);
    max_abs = std::max(max_abs, d);
    const double excess = d - (atol + rtol * std::abs(y));
    if (excess > 0) {
      ++bad;
      if (excess > worst_excess) worst_excess = excess, worst = i;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess() << "max abs diff " << max_abs;
  // Unravel the worst index.
  std::ostringstream idx;
  int64_t rem = worst;
  std::vector<int64_t> coord(actual.dim());
  for (int64_t d = actual.dim() - 1; d >= 0; --d) {
    coord[d] = rem % actual.size(d);
    rem /= actual.size(d);
  }
  idx << "[";
  for (size_t i = 0; i < coord.size(); ++i) idx << (i ? ", " : "") << coord[i];
  idx << "]";
  return ::testing::AssertionFailure()
         << bad << " of " << a.numel() << " elements differ beyond atol " << atol << " + rtol "
         << rtol << "; worst at " << idx.str() << ": actual " << pa[worst] << " vs expected "
         << pb[worst] << "; max abs diff " << max_abs << "; shape " << shape_of(actual);
}

}  // namespace qwen::test
