#include "models/offload.h"

#include <c10/core/DeviceGuard.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <chrono>

#include "models/linear.h"

namespace qwen::models {

namespace {

using Take = std::function<bool(const std::string&)>;

// Every Linear of `module` with its name prefix ("attn.to_q."), for the quantised weights.
std::vector<std::pair<std::string, LinearImpl*>> linears(torch::nn::Module& module) {
  std::vector<std::pair<std::string, LinearImpl*>> out;
  for (const auto& item : module.named_modules("", /*include_self=*/true))
    if (auto* l = dynamic_cast<LinearImpl*>(item.value().get()))
      out.emplace_back(item.key().empty() ? std::string() : item.key() + ".", l);
  return out;
}

// Named tensors (parameters, then buffers) of `module` that `take` accepts, skipping the
// placeholder `weight` of quantised Linears (their bytes live in the QuantizedWeight).
std::vector<std::pair<std::string, torch::Tensor>> tensors_of(torch::nn::Module& module,
                                                              const Take& take) {
  std::vector<std::string> placeholders;
  for (const auto& [prefix, l] : linears(module))
    if (l->quantized()) placeholders.push_back(prefix + "weight");
  std::vector<std::pair<std::string, torch::Tensor>> out;
  auto add = [&](const std::string& name, const torch::Tensor& t) {
    if (!t.defined() || (take && !take(name))) return;
    for (const auto& p : placeholders)
      if (p == name) return;
    out.emplace_back(name, t);
  };
  for (const auto& item : module.named_parameters(/*recurse=*/true)) add(item.key(), item.value());
  for (const auto& item : module.named_buffers(/*recurse=*/true)) add(item.key(), item.value());
  return out;
}

torch::Tensor host_copy(const torch::Tensor& t, bool pin) {
  // A second handle on the same memory: the module's handle is re-pointed by set_data, this one
  // keeps the host tensor.
  if (t.is_cpu() && !pin) return t.detach();
  auto host = torch::empty(t.sizes(), t.options().device(torch::kCPU).pinned_memory(pin));
  host.copy_(t);
  return host;
}

// A copy of `q` with its storage in host memory.
QuantizedWeight host_quantized(const QuantizedWeight& q) {
  return q.device().is_cpu() ? q : q.to(torch::kCPU);
}

}  // namespace

HostWeights::HostWeights(torch::nn::Module& module, torch::Device device, bool pin,
                         const Take& take)
    : device_(device) {
  torch::NoGradGuard no_grad;
  const bool pinned = pin && !device.is_cpu();
  for (auto& [name, t] : tensors_of(module, take)) {
    Entry e;
    e.param = t;
    e.host = host_copy(t, pinned);
    if (e.host.data_ptr() != t.data_ptr()) e.param.set_data(e.host);
    bytes_ += e.host.numel() * e.host.element_size();
    entries_.push_back(std::move(e));
  }
  for (const auto& [prefix, l] : linears(module)) {
    const QuantizedWeight* q = l->quantized();
    if (!q || (take && !take(prefix + "weight"))) continue;
    QEntry e;
    e.linear = l;
    e.host = host_quantized(*q);
    l->set_quantized(e.host);
    bytes_ += e.host.storage_bytes();
    quantized_.push_back(std::move(e));
  }
}

void HostWeights::upload(std::optional<c10::Stream> stream) {
  if (on_device_) return;
  torch::NoGradGuard no_grad;
  const bool async = !device_.is_cpu();
  c10::OptionalStreamGuard on_stream(async ? stream : std::nullopt);
  for (auto& e : entries_) {
    // On the CPU a real copy, so that the machinery runs in tests (same values).
    e.dev = async ? e.host.to(device_, /*non_blocking=*/true) : e.host.clone();
    e.param.set_data(e.dev);
  }
  for (auto& q : quantized_) {
    q.dev = q.host.to(device_, /*non_blocking=*/async);
    q.linear->set_quantized(q.dev);
  }
  if (async) {
    ready_.emplace(device_.type());
    const auto* impl = c10::impl::getDeviceGuardImpl(device_.type());
    ready_->record(stream ? *stream : impl->getStream(device_));
  }
  on_device_ = true;
}

void HostWeights::wait() {
  if (!ready_) return;
  const auto* impl = c10::impl::getDeviceGuardImpl(device_.type());
  ready_->block(impl->getStream(device_));
  ready_.reset();
}

void HostWeights::release() {
  if (!on_device_) return;
  torch::NoGradGuard no_grad;
  std::optional<c10::Stream> current;
  if (!device_.is_cpu())
    current = c10::impl::getDeviceGuardImpl(device_.type())->getStream(device_);
  for (auto& e : entries_) {
    // Allocated on the copy stream, used on the compute stream: the allocator must not hand the
    // memory out again before the compute stream is past its last use.
    if (current) e.dev.record_stream(*current);
    e.param.set_data(e.host);
    e.dev = torch::Tensor();
  }
  for (auto& q : quantized_) {
    if (current)
      for (const torch::Tensor* t : {&q.dev.storage(), &q.dev.scale(), &q.dev.input_scale()})
        if (t->defined()) t->record_stream(*current);
    q.linear->set_quantized(q.host);
    q.dev = QuantizedWeight();
  }
  ready_.reset();
  on_device_ = false;
}

void move_tensors(torch::nn::Module& module, torch::Device device, const Take& take) {
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : tensors_of(module, take))
    if (t.device() != device) t.set_data(t.to(device));
  for (const auto& [prefix, l] : linears(module)) {
    const QuantizedWeight* q = l->quantized();
    if (q && (!take || take(prefix + "weight")) && q->device() != device)
      l->set_quantized(q->to(device));
  }
}

// ---- the transformer ---------------------------------------------------------------------------

namespace {
bool is_modulation(const std::string& name) {
  return name.rfind("img_mod.", 0) == 0 || name.rfind("txt_mod.", 0) == 0;
}
}  // namespace

TransformerPlacement::TransformerPlacement(QwenImageTransformer2DModelImpl& model,
                                           torch::Device device, bool stream,
                                           int64_t resident_blocks, bool pin)
    : device_(device) {
  const auto& blocks = *model.transformer_blocks;
  const int64_t layers = static_cast<int64_t>(blocks.size());
  resident_blocks = stream ? std::clamp<int64_t>(resident_blocks, 0, layers) : layers;
  // Host first (what goes there leaves the device), then everything else to the device.
  for (int64_t i = 0; i < layers; ++i) {
    auto& block = *blocks[i];
    mods_.emplace_back(block, device, pin, is_modulation);
    if (i >= resident_blocks)
      blocks_.emplace_back(block, device, pin,
                           [](const std::string& n) { return !is_modulation(n); });
    else
      blocks_.emplace_back();
  }
  move_tensors(model, device, [&](const std::string& name) {
    // "transformer_blocks.N.rest"
    const std::string p = "transformer_blocks.";
    if (name.rfind(p, 0) != 0) return true;
    const size_t dot = name.find('.', p.size());
    const int64_t b = std::stoll(name.substr(p.size(), dot - p.size()));
    const std::string rest = name.substr(dot + 1);
    return !is_modulation(rest) && b < resident_blocks;
  });
  if (!device.is_cpu())
    side_ = c10::impl::getDeviceGuardImpl(device.type())
                ->getStreamFromGlobalPool(device, /*isHighPriority=*/false);
}

int64_t TransformerPlacement::streamed_blocks() const {
  int64_t n = 0;
  for (const auto& b : blocks_) n += b.tensors() > 0;
  return n;
}

int64_t TransformerPlacement::host_bytes() const {
  int64_t n = 0;
  for (const auto& b : blocks_) n += b.bytes();
  for (const auto& m : mods_) n += m.bytes();
  return n;
}

void TransformerPlacement::prefetch(std::vector<HostWeights>& set, size_t index, int64_t& counter) {
  if (index >= set.size() || set[index].tensors() == 0 || set[index].on_device()) return;
  set[index].upload(side_);
  counter += set[index].bytes();
}

int64_t TransformerPlacement::blocks_on_device() const {
  int64_t n = 0;
  for (const auto& b : blocks_) n += b.tensors() > 0 && b.on_device();
  return n;
}

size_t TransformerPlacement::first_streamed() const {
  for (size_t i = 0; i < blocks_.size(); ++i)
    if (blocks_[i].tensors() > 0) return i;
  return blocks_.size();
}

void TransformerPlacement::prefetch_block(size_t index) {
  if (index >= blocks_.size() || blocks_[index].tensors() == 0 || blocks_[index].on_device())
    return;
  prefetch(blocks_, index, stats_.streamed_bytes);
  ++stats_.prefetched_blocks;
}

void TransformerPlacement::begin_passes(int64_t passes) {
  passes_left_ = passes;
  if (passes > 0) prefetch_block(first_streamed());  // overlaps the job's set-up
}

void TransformerPlacement::end_passes() {
  passes_left_ = 0;
  // A copy made for a pass that did not run (the job was cancelled or failed in between).
  const size_t first = first_streamed();
  if (first < blocks_.size()) blocks_[first].release();
}

void TransformerPlacement::before_block(size_t index) {
  if (index >= blocks_.size() || blocks_[index].tensors() == 0) return;
  if (!blocks_[index].on_device()) {
    // Not prefetched (the first streamed block of a pass outside begin_passes()): the copy is
    // waited for whole.
    prefetch(blocks_, index, stats_.streamed_bytes);
    ++stats_.unprefetched_blocks;
  }
  const auto start = std::chrono::steady_clock::now();
  blocks_[index].wait();
  stats_.wait_seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // The next block's copy runs on the side stream while this block computes.
  prefetch_block(index + 1);
}

void TransformerPlacement::after_block(size_t index) {
  if (index < blocks_.size() && blocks_[index].tensors() > 0) blocks_[index].release();
  // The end of a pass: the next pass's first streamed block is copied while the pipeline runs
  // the scheduler step / the other CFG branch's set-up (wait()ed on the compute stream by its
  // before_block, so the copy is complete before the block reads it).
  if (index + 1 == blocks_.size() && passes_left_ > 0 && --passes_left_ > 0)
    prefetch_block(first_streamed());
}

std::vector<TimestepModulation> TransformerPlacement::precompute_modulation(
    QwenImageTransformer2DModelImpl& model, const std::vector<torch::Tensor>& timesteps,
    torch::Dtype dtype, const torch::Tensor& additional_t_cond) {
  try {
    return model.compute_modulations(
        timesteps, dtype,
        [&](size_t b, bool before) {
          if (!before) {
            mods_[b].release();
            return;
          }
          prefetch(mods_, b, stats_.modulation_bytes);
          mods_[b].wait();
          prefetch(mods_, b + 1, stats_.modulation_bytes);
        },
        additional_t_cond);
  } catch (...) {
    release_all();
    throw;
  }
}

void TransformerPlacement::release_all() {
  passes_left_ = 0;
  for (auto& b : blocks_) b.release();
  for (auto& m : mods_) m.release();
}

}  // namespace qwen::models
