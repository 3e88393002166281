// Checkpoint tensors -> torch tensors / module parameters.
#include "models/weights.h"

#include <ATen/Parallel.h>
#include <c10/core/Event.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <optional>
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

// memcpy in parallel pieces (torch's intra-op threads): the page faults of a cold mapping and the
// copy itself spread over the cores.
void parallel_copy(uint8_t* dst, const uint8_t* src, int64_t n) {
  constexpr int64_t kPiece = int64_t(4) << 20;
  const int64_t pieces = (n + kPiece - 1) / kPiece;
  at::parallel_for(0, pieces, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t off = i * kPiece;
      std::memcpy(dst + off, src + off, static_cast<size_t>(std::min(kPiece, n - off)));
    }
  });
}

thread_local LoadMeter* t_meter = nullptr;
thread_local const HostLoad* t_host_load = nullptr;

// File order: the mapping is read front to back, each file once.
std::vector<size_t> file_order(const std::vector<StagedTensor>& items) {
  std::vector<size_t> order(items.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const auto &ra = *items[a].ref, &rb = *items[b].ref;
    if (ra.file != rb.file) return std::less<>()(ra.file.get(), rb.file.get());
    return ra.info->begin < rb.info->begin;
  });
  return order;
}

// Lets the process's pages of the mapping under [p, p + n) go (the whole pages inside it):
// after a tensor's bytes were copied into host memory, the process does not also hold the file's
// pages, so its peak stays one copy of the weights. The mapping is private and these bytes were
// only read: a later read faults them in again from the page cache / the file, unchanged.
void release_mapped(const uint8_t* p, int64_t n) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const uintptr_t e = (reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(n)) / page * page;
  if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

LoadMeter::LoadMeter() : outer_(t_meter) { t_meter = this; }
LoadMeter::~LoadMeter() { t_meter = outer_; }

void LoadMeter::add(const LoadReport& r) {
  for (LoadMeter* m = t_meter; m; m = m->outer_) {
    m->bytes_ += r.bytes;
    m->staged_ += r.staged;
    m->host_ += r.host;
    m->seconds_ += r.seconds;
  }
}

std::string LoadMeter::summary(const torch::Device& device) const {
  char buf[160];
  if (staged_ > 0)
    std::snprintf(buf, sizeof buf,
                  "%.2f GB in %.2f s (%.2f GB/s, pinned double-buffered copies to %s)",
                  bytes_ / 1e9, seconds_, gb_per_s(), device.str().c_str());
  else
    std::snprintf(buf, sizeof buf, "%.2f GB in %.2f s (%.2f GB/s, %s)", bytes_ / 1e9, seconds_,
                  gb_per_s(), device.is_cpu() ? "mapped from the files" : "copies");
  std::string out = buf;
  if (host_ > 0) {
    std::snprintf(buf, sizeof buf, "; %.2f GB of it into %s host memory", host_ / 1e9,
                  pins_host_memory(device) ? "page-locked" : "plain");
    out += buf;
  }
  return out;
}

std::vector<torch::Tensor> load_staged(const std::vector<StagedTensor>& items, torch::Device device,
                                       const StagingOptions& options) {
  for (const auto& it : items) check_ref(*it.ref);
  std::vector<torch::Tensor> out(items.size());
  const std::vector<size_t> order = file_order(items);
  const bool async = !device.is_cpu();
  const int64_t cap = std::max<int64_t>(1, options.buffer_bytes);
  std::array<torch::Tensor, 2> staging;
  for (auto& b : staging)
    b = torch::empty(
        {cap}, torch::TensorOptions().dtype(torch::kUInt8).pinned_memory(async && options.pinned));

  // Streams and events through c10's device-generic interface (no CUDA headers: the same code
  // compiles against a CPU-only libtorch). `side` carries every copy and conversion; `done[k]`
  // marks the last copy out of staging buffer k, which the host waits for before refilling it.
  c10::OptionalDeviceGuard device_guard;
  std::optional<c10::Stream> main, side;
  std::array<std::optional<c10::Event>, 2> done;
  std::array<bool, 2> pending{false, false};
  if (async) {
    const auto* impl = c10::impl::getDeviceGuardImpl(device.type());
    if (!device.has_index()) device = torch::Device(device.type(), impl->getDevice().index());
    device_guard.reset_device(device);
    main = impl->getStream(device);
    side = impl->getStreamFromGlobalPool(device, /*isHighPriority=*/false);
    // Destinations come from the caller's stream: the side stream starts after its queued work.
    c10::Event ready(device.type());
    ready.record(*main);
    ready.block(*side);
    for (auto& e : done) e.emplace(device.type());
  }
  auto read_ahead = [&](size_t k) {
    if (k < order.size()) items[order[k]].ref->file->will_need(*items[order[k]].ref->info);
  };
  // On an error, the copies already queued must finish before the buffers and tensors go away.
  auto drain = [&] {
    if (!async) return;
    c10::Event drained(device.type());
    drained.record(*side);
    drained.synchronize();
  };
  read_ahead(0);
  int slot = 0;
  try {
    for (size_t k = 0; k < order.size(); ++k) {
      read_ahead(k + 1);
      const StagedTensor& it = items[order[k]];
      const io::TensorInfo& info = *it.ref->info;
      const torch::Dtype stored = torch_dtype(info.dtype);
      const auto opts = torch::TensorOptions().device(device);
      torch::Tensor dst = torch::empty(info.shape, opts.dtype(it.dtype));
      torch::Tensor raw = stored == it.dtype ? dst : torch::empty(info.shape, opts.dtype(stored));
      const int64_t n = static_cast<int64_t>(info.end - info.begin);
      c10::OptionalStreamGuard on_side(side);
      if (n > 0) {
        const torch::Tensor bytes = raw.view({-1}).view(torch::kUInt8);
        const uint8_t* src = it.ref->file->data(info);
        for (int64_t off = 0; off < n; off += cap) {
          const int64_t len = std::min(cap, n - off);
          if (pending[slot]) done[slot]->synchronize();
          parallel_copy(staging[slot].data_ptr<uint8_t>(), src + off, len);
          bytes.narrow(0, off, len).copy_(staging[slot].narrow(0, 0, len), /*non_blocking=*/async);
          if (async) {
            done[slot]->record(*side);
            pending[slot] = true;
          }
          slot ^= 1;
        }
      }
      if (!raw.is_same(dst)) {
        dst.copy_(raw);  // on the device, after the bytes (same stream)
        // raw's memory goes back to the allocator only once the side stream is past this point.
        if (async) raw.record_stream(*side);
      }
      out[order[k]] = dst;
    }
  } catch (...) {
    drain();
    throw;
  }
  if (async) {
    c10::Event finished(device.type());
    finished.record(*side);
    finished.block(*main);
    finished.synchronize();
  }
  return out;
}

std::vector<torch::Tensor> load_to_host(const std::vector<StagedTensor>& items,
                                        const torch::Device& device) {
  for (const auto& it : items) check_ref(*it.ref);
  // One buffer for all of them, each tensor at a 64-byte aligned offset.
  constexpr int64_t kAlign = 64;
  std::vector<int64_t> offset(items.size());
  int64_t total = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    offset[i] = total;
    int64_t numel = 1;
    for (const int64_t d : items[i].ref->info->shape) numel *= d;
    total += (numel * static_cast<int64_t>(c10::elementSize(items[i].dtype)) + kAlign - 1) /
             kAlign * kAlign;
  }
  const torch::Tensor buffer = host_buffer(total, device);
  std::vector<torch::Tensor> out(items.size());
  const std::vector<size_t> order = file_order(items);
  auto read_ahead = [&](size_t k) {
    if (k < order.size()) items[order[k]].ref->file->will_need(*items[order[k]].ref->info);
  };
  read_ahead(0);
  for (size_t k = 0; k < order.size(); ++k) {
    read_ahead(k + 1);
    const size_t i = order[k];
    const io::TensorRef& ref = *items[i].ref;
    const io::TensorInfo& info = *ref.info;
    int64_t numel = 1;
    for (const int64_t d : info.shape) numel *= d;
    const int64_t n = numel * static_cast<int64_t>(c10::elementSize(items[i].dtype));
    torch::Tensor dst =
        buffer.narrow(0, offset[i], n).view(items[i].dtype).view(info.shape);  // shares `buffer`
    if (info.end > info.begin) {
      if (torch_dtype(info.dtype) == items[i].dtype)
        parallel_copy(static_cast<uint8_t*>(dst.data_ptr()), ref.file->data(info),
                      static_cast<int64_t>(info.end - info.begin));
      else  // converted on the way (torch's parallel copy kernel), from the mapping itself
        dst.copy_(aligned(ref) ? map_view(ref) : host_copy(ref));
      release_mapped(ref.file->data(info), static_cast<int64_t>(info.end - info.begin));
    }
    out[i] = dst;
  }
  return out;
}

HostLoad::HostLoad(torch::Device device, std::function<bool(const std::string&)> host)
    : device_(device), host_(std::move(host)), outer_(t_host_load) {
  t_host_load = this;
}
HostLoad::~HostLoad() { t_host_load = outer_; }
const HostLoad* HostLoad::current() { return t_host_load; }

void load_placed(const std::vector<PlacedTarget>& targets, const std::string& component,
                 const std::string& source, LoadReport& report) {
  const HostLoad* scope = HostLoad::current();
  const torch::Device device = scope->device();
  std::vector<StagedTensor> host_items, device_items;
  std::vector<torch::Tensor*> host_targets, device_targets;
  for (const auto& t : targets) {
    const int64_t n = static_cast<int64_t>(t.ref->info->end - t.ref->info->begin);
    if (scope->host(t.name)) {
      host_items.push_back({t.ref, t.dtype});
      host_targets.push_back(t.tensor);
      report.host += n;
    } else if (!device.is_cpu()) {
      device_items.push_back({t.ref, t.dtype});
      device_targets.push_back(t.tensor);
      report.staged += n;
    } else {
      t.tensor->set_data(to_tensor(*t.ref, t.dtype, device));  // the mapping itself when it can
    }
  }
  try {
    if (!host_items.empty()) {
      const auto host = load_to_host(host_items, device);
      for (size_t i = 0; i < host.size(); ++i) host_targets[i]->set_data(host[i]);
    }
    if (!device_items.empty()) {
      const auto dev = load_staged(device_items, device);
      for (size_t i = 0; i < dev.size(); ++i) device_targets[i]->set_data(dev[i]);
    }
  } catch (const c10::Error& e) {
    throw io::CheckpointError(component + " (" + source + "): cannot load the tensors for " +
                              device.str() + ": " + e.what_without_backtrace());
  }
}

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
  const auto t0 = std::chrono::steady_clock::now();
  auto want_of = [&](const torch::Tensor& t) {
    return torch::isFloatingType(t.scalar_type()) ? dtype : t.scalar_type();
  };
  for (auto& [name, target] : targets)
    report.bytes += static_cast<int64_t>(target.ref->info->end - target.ref->info->begin);
  if (HostLoad::current() && device.is_cpu()) {
    // A placement's load (HostLoad): host tensors into host memory, the rest onto the device.
    std::vector<PlacedTarget> placed;
    for (auto& [name, target] : targets)
      placed.push_back({name, &target.tensor, target.ref, want_of(target.tensor)});
    load_placed(placed, component, store.source(), report);
  } else if (!device.is_cpu()) {
    std::vector<StagedTensor> items;
    for (auto& [name, target] : targets) items.push_back({target.ref, want_of(target.tensor)});
    std::vector<torch::Tensor> loaded;
    try {
      loaded = load_staged(items, device);
    } catch (const c10::Error& e) {
      throw io::CheckpointError(component + " (" + store.source() +
                                "): cannot load the tensors onto " + device.str() + ": " +
                                e.what_without_backtrace());
    }
    for (size_t i = 0; i < targets.size(); ++i) targets[i].second.tensor.set_data(loaded[i]);
    report.staged = report.bytes;
  } else {
    for (auto& [name, target] : targets) {
      try {
        target.tensor.set_data(to_tensor(*target.ref, want_of(target.tensor), device));
      } catch (const c10::Error& e) {
        throw io::CheckpointError(component + " (" + store.source() + "): cannot load tensor '" +
                                  name + "': " + e.what_without_backtrace());
      }
    }
  }
  for (auto& b : computed_buffers)
    if (b.device() != device) b.set_data(b.to(device));
  report.seconds = seconds_since(t0);
  LoadMeter::add(report);
  return report;
}

}  // namespace qwen::models
