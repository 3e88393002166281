// Quantised weights kept as stored and dequantised per use.
#include "models/quant.h"

#include <atomic>
#include <cstdio>
#include <optional>

#include "models/dequant.h"
#include "models/weights.h"

namespace qwen::models {

namespace {

torch::Dtype fp8_dtype(io::DType d) {
  return d == io::DType::F8_E5M2 ? torch::kFloat8_e5m2 : torch::kFloat8_e4m3fn;
}

torch::Tensor scalar_f32(const io::TensorRef& ref) {
  return to_tensor(ref, torch::kFloat32).reshape({});
}

}  // namespace

QuantizedWeight QuantizedWeight::from_format(const io::TensorFormat& f) {
  switch (f.encoding) {
    case io::Encoding::Plain:
      return dense(to_tensor_raw(f.ref));
    case io::Encoding::Fp8: {
      torch::Tensor w = to_tensor_raw(f.ref);
      // 1-byte storage read as the layer's format (ComfyUI views the weight as the format dtype).
      if (w.scalar_type() != fp8_dtype(f.fp8)) w = w.view(fp8_dtype(f.fp8));
      return fp8(w, f.scale.info ? scalar_f32(f.scale) : torch::Tensor(),
                 f.input_scale.info ? scalar_f32(f.input_scale) : torch::Tensor());
    }
    case io::Encoding::Ggml: {
      auto file = f.gguf;
      void* p = const_cast<uint8_t*>(file->data(*f.gguf_info));
      const auto n = static_cast<int64_t>(f.gguf_info->nbytes);
      torch::Tensor blocks = n == 0 ? torch::empty({0}, torch::kUInt8)
                                    : torch::from_blob(
                                          p, {n}, [file](void*) mutable { file.reset(); },
                                          torch::TensorOptions().dtype(torch::kUInt8));
      return ggml(blocks, f.ggml, f.shape);
    }
  }
  throw io::CheckpointError(f.file_path() + ": tensor '" + f.key + "' has an unknown encoding");
}

QuantizedWeight QuantizedWeight::dense(torch::Tensor w) {
  QuantizedWeight q;
  q.kind_ = Kind::Dense;
  q.shape_ = w.sizes().vec();
  q.storage_ = std::move(w);
  return q;
}

QuantizedWeight QuantizedWeight::fp8(torch::Tensor w, torch::Tensor scale,
                                     torch::Tensor input_scale) {
  QuantizedWeight q;
  q.kind_ = Kind::Fp8;
  q.shape_ = w.sizes().vec();
  q.storage_ = std::move(w);
  q.scale_ = std::move(scale);
  q.input_scale_ = std::move(input_scale);
  return q;
}

QuantizedWeight QuantizedWeight::ggml(torch::Tensor blocks, io::GgmlType type,
                                      std::vector<int64_t> shape) {
  QuantizedWeight q;
  q.kind_ = Kind::Ggml;
  q.ggml_ = type;
  q.shape_ = std::move(shape);
  q.storage_ = std::move(blocks);
  return q;
}

int64_t QuantizedWeight::storage_bytes() const {
  int64_t n = storage_.defined() ? storage_.numel() * storage_.element_size() : 0;
  for (const auto* t : {&scale_, &input_scale_})
    if (t->defined()) n += t->numel() * t->element_size();
  return n;
}

std::string QuantizedWeight::storage_name() const {
  switch (kind_) {
    case Kind::Dense:
      return c10::toString(storage_.scalar_type());
    case Kind::Fp8:
      return std::string(storage_.scalar_type() == torch::kFloat8_e5m2 ? "F8_E5M2" : "F8_E4M3") +
             (scale_.defined() ? "*scale" : "");
    case Kind::Ggml:
      return io::ggml_type_name(ggml_);
  }
  return "?";
}

torch::Tensor QuantizedWeight::dequantize(torch::Dtype dtype) const {
  switch (kind_) {
    case Kind::Dense:
      return storage_.scalar_type() == dtype ? storage_ : storage_.to(dtype);
    case Kind::Fp8:
      return dequantize_fp8(storage_, scale_, dtype);
    case Kind::Ggml:
      return dequantize_ggml(storage_, ggml_, shape_, dtype);
  }
  return {};
}

torch::Tensor QuantizedWeight::dequantize(torch::Dtype dtype, torch::Device device) const {
  if (storage_.device() == device) return dequantize(dtype);
  return to(device).dequantize(dtype);
}

torch::Tensor QuantizedWeight::rows(const torch::Tensor& ids, torch::Dtype dtype) const {
  if (shape_.size() != 2)
    throw io::CheckpointError("QuantizedWeight::rows needs a 2-D weight, this one is " +
                              io::shape_to_string(shape_));
  const torch::Tensor flat = ids.reshape({-1}).to(torch::kInt64);
  const int64_t n = flat.numel(), cols = shape_[1];
  std::vector<int64_t> out_shape = ids.sizes().vec();
  out_shape.push_back(cols);
  torch::Tensor out;
  switch (kind_) {
    case Kind::Dense:
      out = storage_.index_select(0, flat).to(dtype);
      break;
    case Kind::Fp8:  // gathered as bytes (index_select has no float8 kernels everywhere)
      out = dequantize_fp8(
          storage_.view(torch::kUInt8).index_select(0, flat).view(storage_.scalar_type()), scale_,
          dtype);
      break;
    case Kind::Ggml: {
      const int64_t row_bytes = storage_.numel() / std::max<int64_t>(shape_[0], 1);
      out = dequantize_ggml(storage_.view({shape_[0], row_bytes}).index_select(0, flat), ggml_,
                            {n, cols}, dtype);
      break;
    }
  }
  return out.view(out_shape);
}

QuantizedWeight QuantizedWeight::to(torch::Device device, bool non_blocking) const {
  QuantizedWeight q = *this;
  auto move = [&](const torch::Tensor& t) {
    return t.defined() ? t.to(device, /*non_blocking=*/non_blocking) : t;
  };
  q.storage_ = move(storage_);
  q.scale_ = move(scale_);
  q.input_scale_ = move(input_scale_);
  return q;
}

namespace {

std::atomic<int64_t> g_fp8_matmuls{0};
// Set when a device refused _scaled_mm (a driver or build without the fp8 kernels): reported once,
// then every call takes the dequantised path.
std::atomic<bool> g_fp8_refused{false};

constexpr double kE4m3Max = 448.0;  // torch.finfo(torch.float8_e4m3fn).max
// Smallest activation scale: a row of zeros (or of values below 448 * 1e-12) still divides by a
// finite number (torchao's float8 EPS).
constexpr double kMinScale = 1e-12;

}  // namespace

bool fp8_matmul_applies(const torch::Tensor& x, const QuantizedWeight& w) {
  if (w.kind() != QuantizedWeight::Kind::Fp8) return false;
  const torch::Tensor& s = w.storage();
  if (s.scalar_type() != torch::kFloat8_e4m3fn || s.dim() != 2 || !s.is_contiguous()) return false;
  const int64_t n = s.size(0), k = s.size(1);
  if (n == 0 || k == 0 || n % 16 != 0 || k % 16 != 0) return false;
  if (w.scale().defined() && w.scale().numel() != 1) return false;
  if (!x.defined() || x.dim() < 1 || x.size(-1) != k || x.numel() == 0) return false;
  const auto dt = x.scalar_type();
  if (x.is_cuda()) return dt == torch::kBFloat16;  // row-wise scaled_mm writes bfloat16 only
  return x.is_cpu() && (dt == torch::kFloat32 || dt == torch::kBFloat16);
}

torch::Tensor fp8_linear(const torch::Tensor& x, const QuantizedWeight& w,
                         const torch::Tensor& bias) {
  const QuantizedWeight on_x = w.device() == x.device() ? w : w.to(x.device());
  const torch::Tensor& wq = on_x.storage();  // [N, K] row-major: wq.t() is column-major
  const int64_t n = wq.size(0), k = wq.size(1);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(x.device());
  // Per-row dynamic activation scale (see quant.h for why not ComfyUI's static one).
  // The row maxima in x's own dtype (a maximum of |x| is exact in any dtype) and one float32
  // working copy divided in place: the same numbers as dividing a float32 copy, without two more
  // M x K float32 temporaries per layer (0.7 GB for a 20B MLP down-projection at 1328^2).
  const torch::Tensor x_rows = x.reshape({-1, k});
  const torch::Tensor scale_a = x_rows.abs()
                                    .amax({1}, /*keepdim=*/true)
                                    .to(torch::kFloat32)
                                    .div_(kE4m3Max)
                                    .clamp_min_(kMinScale);
  const torch::Tensor xq = x_rows.to(torch::kFloat32, /*non_blocking=*/false, /*copy=*/true)
                               .div_(scale_a)
                               .clamp_(-kE4m3Max, kE4m3Max)
                               .to(torch::kFloat8_e4m3fn);
  const torch::Tensor scale_b =
      on_x.scale().defined() ? on_x.scale().to(f32).reshape({1, 1}).expand({1, n}).contiguous()
                             : torch::ones({1, n}, f32);
  std::optional<torch::Tensor> b;
  if (bias.defined()) b = bias.scalar_type() == x.scalar_type() ? bias : bias.to(x.scalar_type());
  torch::Tensor y = at::_scaled_mm(xq, wq.t(), scale_a, scale_b, b, /*scale_result=*/{},
                                   x.scalar_type(), /*use_fast_accum=*/false);
  g_fp8_matmuls.fetch_add(1, std::memory_order_relaxed);
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = n;
  return y.view(shape);
}

int64_t fp8_matmul_count() { return g_fp8_matmuls.load(std::memory_order_relaxed); }

torch::Tensor quantized_linear(const torch::Tensor& x, const QuantizedWeight& w,
                               const torch::Tensor& bias, bool fp8_matmul) {
  if (fp8_matmul && !g_fp8_refused.load(std::memory_order_relaxed) && fp8_matmul_applies(x, w)) {
    try {
      return fp8_linear(x, w, bias);
    } catch (const c10::OutOfMemoryError&) {
      throw;  // out of memory is the job's error (the daemon's OOM handling), not a refusal
    } catch (const std::exception& e) {
      // ComfyUI's fp8_linear handler does the same (logs and falls back to dequantising). Any
      // exception: torch's CUTLASS row-wise kernels (sm89, sm100/120) throw std::runtime_error.
      if (!g_fp8_refused.exchange(true))
        std::fprintf(stderr,
                     "fp8 matmul: at::_scaled_mm refused (%s); using dequantised weights from now "
                     "on\n",
                     e.what());
    }
  }
  const torch::Tensor weight = w.dequantize(x.scalar_type(), x.device());
  if (!bias.defined()) return at::linear(x, weight);
  return at::linear(x, weight,
                    bias.scalar_type() == x.scalar_type() ? bias : bias.to(x.scalar_type()));
}

QuantLinearImpl::QuantLinearImpl(QuantizedWeight w, torch::Tensor b) : weight_(std::move(w)) {
  // Registered tensors share their TensorImpl with weight_, so Module::to() moves both.
  register_buffer("weight_storage", weight_.storage());
  if (weight_.scale().defined()) register_buffer("weight_scale", weight_.scale());
  if (weight_.input_scale().defined()) register_buffer("input_scale", weight_.input_scale());
  if (b.defined()) bias = register_parameter("bias", std::move(b), /*requires_grad=*/false);
}

torch::Tensor QuantLinearImpl::forward(const torch::Tensor& x) {
  return quantized_linear(x, weight_, bias);
}

}  // namespace qwen::models
