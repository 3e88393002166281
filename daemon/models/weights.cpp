// Checkpoint tensors -> torch tensors / module parameters.
#include "models/weights.h"

#include <cstdint>
#include <cstring>
#include <set>
#include <sstream>

namespace qwen::models {

namespace {

torch::Dtype torch_dtype(io::DType d) {
  switch (d) {
    case io::DType::F64:
      return torch::kFloat64;
    case io::DType::F32:
      return torch::kFloat32;
    case io::DType::F16:
      return torch::kFloat16;
    case io::DType::BF16:
      return torch::kBFloat16;
    case io::DType::F8_E4M3:
      return torch::kFloat8_e4m3fn;
    case io::DType::F8_E5M2:
      return torch::kFloat8_e5m2;
    case io::DType::I64:
      return torch::kInt64;
    case io::DType::I32:
      return torch::kInt32;
    case io::DType::I16:
      return torch::kInt16;
    case io::DType::I8:
      return torch::kInt8;
    case io::DType::U8:
      return torch::kUInt8;
    case io::DType::BOOL:
      return torch::kBool;
  }
  throw io::CheckpointError("unknown safetensors dtype");
}

std::string shape_of(const torch::Tensor& t) {
  return io::shape_to_string(std::vector<int64_t>(t.sizes().begin(), t.sizes().end()));
}

void check_ref(const io::TensorRef& ref) {
  if (!ref.file || !ref.info) throw io::CheckpointError("empty tensor reference");
}

// A tensor viewing the mapped bytes; the deleter keeps the mapping alive.
torch::Tensor map_view(const io::TensorRef& ref) {
  auto file = ref.file;
  void* p = const_cast<uint8_t*>(ref.file->data(*ref.info));
  return torch::from_blob(
      p, ref.info->shape, [file](void*) mutable { file.reset(); },
      torch::TensorOptions().dtype(torch_dtype(ref.info->dtype)));
}

bool aligned(const io::TensorRef& ref) {
  const auto addr = reinterpret_cast<uintptr_t>(ref.file->data(*ref.info));
  return addr % io::dtype_size(ref.info->dtype) == 0;
}

// Bytes copied into fresh (aligned) host memory.
torch::Tensor host_copy(const io::TensorRef& ref) {
  auto t =
      torch::empty(ref.info->shape, torch::TensorOptions().dtype(torch_dtype(ref.info->dtype)));
  std::memcpy(t.data_ptr(), ref.file->data(*ref.info), ref.info->end - ref.info->begin);
  return t;
}

}  // namespace

torch::Tensor to_tensor_raw(const io::TensorRef& ref) {
  check_ref(ref);
  if (ref.info->begin == ref.info->end)
    return torch::empty(ref.info->shape,
                        torch::TensorOptions().dtype(torch_dtype(ref.info->dtype)));
  return aligned(ref) ? map_view(ref) : host_copy(ref);
}

torch::Tensor to_tensor(const io::TensorRef& ref, torch::Dtype dtype, torch::Device device) {
  check_ref(ref);
  const torch::Dtype stored = torch_dtype(ref.info->dtype);
  torch::Tensor raw = to_tensor_raw(ref);
  if (device.is_cpu()) {
    // Same dtype: the mapped view itself (zero-copy). Otherwise one converted copy.
    return stored == dtype ? raw : raw.to(dtype);
  }
  // Accelerator: copy the stored bytes straight from the mapping to the device, convert there.
  // No full host copy of the tensor is made.
  torch::Tensor dev = raw.to(device, /*non_blocking=*/false, /*copy=*/true);
  return stored == dtype ? dev : dev.to(dtype);
}

LoadReport load_module(torch::nn::Module& module, const io::TensorStore& store,
                       const std::string& component, torch::Dtype dtype, torch::Device device,
                       const std::vector<std::string>& ignore_unexpected) {
  LoadReport report;
  std::vector<std::string> mismatches;
  std::set<std::string> used;
  struct Target {
    torch::Tensor tensor;
    const io::TensorRef* ref;
  };
  std::vector<std::pair<std::string, Target>> targets;

  std::vector<torch::Tensor> computed_buffers;
  auto visit = [&](const std::string& name, torch::Tensor& t, bool required) {
    const io::TensorRef* ref = store.find(name);
    if (!ref) {
      if (required)
        report.missing.push_back(name);
      else
        computed_buffers.push_back(t);
      return;
    }
    used.insert(name);
    if (std::vector<int64_t>(t.sizes().begin(), t.sizes().end()) != ref->info->shape) {
      mismatches.push_back(name + " (expected " + shape_of(t) + ", found " +
                           io::shape_to_string(ref->info->shape) + ")");
      return;
    }
    targets.push_back({name, Target{t, ref}});
  };
  for (auto& item : module.named_parameters(/*recurse=*/true))
    visit(item.key(), item.value(), true);
  // Buffers are loaded when the checkpoint has them; buffers it lacks are computed by the module.
  for (auto& item : module.named_buffers(/*recurse=*/true)) visit(item.key(), item.value(), false);

  std::vector<std::string> unexpected;
  for (const auto& name : store.names()) {
    if (used.count(name)) continue;
    bool ignored = false;
    for (const auto& p : ignore_unexpected)
      if (name.rfind(p, 0) == 0) ignored = true;
    (ignored ? report.unexpected : unexpected).push_back(name);
  }

  if (!report.missing.empty() || !unexpected.empty() || !mismatches.empty()) {
    std::ostringstream msg;
    msg << component << " (" << store.source() << "): checkpoint does not match the model";
    auto list = [&](const char* what, const std::vector<std::string>& v) {
      if (v.empty()) return;
      msg << "\n  " << v.size() << " " << what << ":";
      for (const auto& n : v) msg << "\n    " << n;
    };
    list("missing tensors", report.missing);
    list("unexpected tensors", unexpected);
    list("shape mismatches", mismatches);
    throw io::CheckpointError(msg.str());
  }

  torch::NoGradGuard no_grad;
  for (auto& [name, target] : targets) {
    const torch::Dtype want =
        torch::isFloatingType(target.tensor.scalar_type()) ? dtype : target.tensor.scalar_type();
    try {
      target.tensor.set_data(to_tensor(*target.ref, want, device));
    } catch (const c10::Error& e) {
      throw io::CheckpointError(component + " (" + store.source() + "): cannot load tensor '" +
                                name + "': " + e.what_without_backtrace());
    }
  }
  for (auto& b : computed_buffers)
    if (b.device() != device) b.set_data(b.to(device));
  return report;
}

}  // namespace qwen::models
