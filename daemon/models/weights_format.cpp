// Component weights in any stored format -> module parameters and quantised Linear weights.
#include <chrono>
#include <map>
#include <set>
#include <sstream>

#include "models/linear.h"
#include "models/quant.h"
#include "models/quantize.h"
#include "models/weights.h"

namespace qwen::models {

LoadReport load_module(torch::nn::Module& module, const io::ComponentWeights& weights,
                       const std::string& component, torch::Dtype dtype, torch::Device device,
                       const std::vector<std::string>& ignore_unexpected,
                       io::QuantizeMode quantize) {
  const io::FileFormat& format = weights.format;
  LoadReport report;
  std::vector<std::string> mismatches;
  std::set<std::string> used;
  struct Target {
    std::string name;
    torch::Tensor tensor;
    const io::TensorFormat* format;
  };
  std::vector<Target> targets;
  std::vector<torch::Tensor> computed_buffers;

  // The Linears, by their weight's checkpoint key.
  std::map<std::string, LinearImpl*> linears;
  for (const auto& item : module.named_modules(/*name_prefix=*/"", /*include_self=*/true))
    if (auto* l = dynamic_cast<LinearImpl*>(item.value().get()))
      linears[item.key().empty() ? "weight" : item.key() + ".weight"] = l;

  auto visit = [&](const std::string& name, torch::Tensor& t, bool required) {
    const io::TensorFormat* f = format.find(name);
    if (!f) {
      if (required)
        report.missing.push_back(name);
      else
        computed_buffers.push_back(t);
      return;
    }
    used.insert(name);
    const std::vector<int64_t> want(t.sizes().begin(), t.sizes().end());
    if (want != f->shape) {
      mismatches.push_back(name + " (expected " + io::shape_to_string(want) + ", found " +
                           io::shape_to_string(f->shape) + ")");
      return;
    }
    targets.push_back({name, t, f});
  };
  for (auto& item : module.named_parameters(/*recurse=*/true))
    visit(item.key(), item.value(), true);
  for (auto& item : module.named_buffers(/*recurse=*/true)) visit(item.key(), item.value(), false);

  std::vector<std::string> unexpected;
  for (const auto& [name, f] : format.tensors) {
    if (used.count(name)) continue;
    bool ignored = false;
    for (const auto& p : ignore_unexpected)
      if (name.rfind(p, 0) == 0) ignored = true;
    (ignored ? report.unexpected : unexpected).push_back(name);
  }
  if (!report.missing.empty() || !unexpected.empty() || !mismatches.empty()) {
    std::ostringstream msg;
    msg << component << " (" << weights.source << "): checkpoint does not match the model";
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

  // Quantise-on-load (models/quantize.h): plain floating-point weights of Linears that the rule
  // picks; quantised on the host below, never staged in the compute dtype.
  auto quantized_on_load = [&](const std::string& name, const io::TensorFormat& f) {
    return quantize == io::QuantizeMode::Fp8 && !f.quantized() && linears.count(name) &&
           io::quantize_on_load_selects(name, f.shape) &&
           (f.ref.info->dtype == io::DType::F32 || f.ref.info->dtype == io::DType::F16 ||
            f.ref.info->dtype == io::DType::BF16 || f.ref.info->dtype == io::DType::F64);
  };

  torch::NoGradGuard no_grad;
  const auto t0 = std::chrono::steady_clock::now();
  // A placement's load (HostLoad, models/weights.h): the plain tensors now, each where it lives
  // (host memory or the placement's device); the rest below as on the CPU.
  std::set<std::string> placed_names;
  if (HostLoad::current() && device.is_cpu()) {
    std::vector<PlacedTarget> placed;
    for (auto& [name, tensor, f] : targets) {
      if (f->quantized() || quantized_on_load(name, *f)) continue;
      placed.push_back(
          {name, &tensor, &f->ref,
           torch::isFloatingType(tensor.scalar_type()) ? dtype : tensor.scalar_type()});
      placed_names.insert(name);
    }
    load_placed(placed, component, weights.source, report);
  }
  // Plain tensors bound for an accelerator: all at once through the staged copies (load_staged),
  // exactly the TensorStore path.
  std::vector<StagedTensor> staged;
  std::vector<torch::Tensor*> staged_targets;
  for (auto& [name, tensor, f] : targets) {
    report.bytes += static_cast<int64_t>(f->stored_bytes());
    if (!device.is_cpu() && !f->quantized() && !quantized_on_load(name, *f)) {
      staged.push_back(
          {&f->ref, torch::isFloatingType(tensor.scalar_type()) ? dtype : tensor.scalar_type()});
      staged_targets.push_back(&tensor);
      report.staged += static_cast<int64_t>(f->stored_bytes());
    }
  }
  if (!staged.empty()) {
    std::vector<torch::Tensor> loaded;
    try {
      loaded = load_staged(staged, device);
    } catch (const c10::Error& e) {
      throw io::CheckpointError(component + " (" + weights.source +
                                "): cannot load the tensors onto " + device.str() + ": " +
                                e.what_without_backtrace());
    }
    for (size_t i = 0; i < loaded.size(); ++i) staged_targets[i]->set_data(loaded[i]);
  }
  for (auto& [name, tensor, f] : targets) {
    const torch::Dtype want =
        torch::isFloatingType(tensor.scalar_type()) ? dtype : tensor.scalar_type();
    try {
      if (quantized_on_load(name, *f)) {
        QuantizedWeight q = quantize_fp8(to_tensor(f->ref, torch::kFloat32));  // on the host
        linears.at(name)->set_quantized(device.is_cpu() ? std::move(q) : q.to(device));
        continue;
      }
      if (!f->quantized()) {
        if (device.is_cpu() && !placed_names.count(name))
          tensor.set_data(to_tensor(f->ref, want, device));  // zero-copy
        continue;
      }
      QuantizedWeight q = QuantizedWeight::from_format(*f);
      const auto lin = linears.find(name);
      if (lin != linears.end() && f->shape.size() == 2) {
        lin->second->set_quantized(device.is_cpu() ? std::move(q) : q.to(device));
      } else {
        // Small or non-matmul tensors: dequantised once, in float32 (exact), then converted.
        torch::Tensor w = q.dequantize(torch::kFloat32);
        if (w.is_alias_of(q.storage())) w = w.clone();  // never a view of the read-only mapping
        if (!device.is_cpu()) w = w.to(device);
        tensor.set_data(w.scalar_type() == want ? w : w.to(want));
      }
    } catch (const c10::Error& e) {
      throw io::CheckpointError(component + " (" + weights.source + "): cannot load tensor '" +
                                name + "' (" + f->storage() + "): " + e.what_without_backtrace());
    }
  }
  for (auto& b : computed_buffers)
    if (b.device() != device) b.set_data(b.to(device));
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  LoadMeter::add(report);
  return report;
}

}  // namespace qwen::models
