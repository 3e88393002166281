// Quantised weights kept as stored and dequantised per use.
#include "models/quant.h"

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

torch::Tensor quantized_linear(const torch::Tensor& x, const QuantizedWeight& w,
                               const torch::Tensor& bias) {
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
