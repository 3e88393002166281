#include "models/offload.h"

#include <c10/core/DeviceGuard.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <chrono>

#include "models/block_stream.h"
#include "models/device_memory.h"
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

// Whether `t` may serve as the host copy as it is: in host memory, page-locked when `pin`.
bool adoptable(const torch::Tensor& t, bool pin) { return t.is_cpu() && (!pin || t.is_pinned()); }

int64_t aligned_bytes(const torch::Tensor& t) {
  return t.defined() ? (t.numel() * static_cast<int64_t>(t.element_size()) + 63) / 64 * 64 : 0;
}

// A copy of `t` in `buffer` (uint8, host) at `offset`, which advances by its aligned bytes.
torch::Tensor copy_into(const torch::Tensor& t, const torch::Tensor& buffer, int64_t& offset) {
  const int64_t n = t.numel() * static_cast<int64_t>(t.element_size());
  torch::Tensor host = buffer.narrow(0, offset, n).view(t.scalar_type()).view(t.sizes());
  host.copy_(t);
  offset += aligned_bytes(t);
  return host;
}

}  // namespace

HostWeights::HostWeights(torch::nn::Module& module, torch::Device device, bool pin,
                         const Take& take)
    : device_(device) {
  torch::NoGradGuard no_grad;
  const bool pinned = pin && pins_host_memory(device);
  const auto named = tensors_of(module, take);
  std::vector<LinearImpl*> quantized;
  for (const auto& [prefix, l] : linears(module))
    if (l->quantized() && (!take || take(prefix + "weight"))) quantized.push_back(l);
  // What is not in host memory of the right kind yet is copied into one exact-size buffer
  // (page-locked for an accelerator); the rest is adopted as it is (a HostLoad's tensors, or on
  // the CPU the loaded tensors themselves).
  int64_t need = 0;
  for (const auto& [name, t] : named)
    if (!adoptable(t, pinned)) need += aligned_bytes(t);
  for (LinearImpl* l : quantized) {
    const QuantizedWeight& q = *l->quantized();
    for (const torch::Tensor* t : {&q.storage(), &q.scale(), &q.input_scale()})
      if (t->defined() && !adoptable(*t, pinned)) need += aligned_bytes(*t);
  }
  torch::Tensor buffer;
  if (need > 0)
    buffer = pinned ? host_buffer(need, device)
                    : torch::empty({need}, torch::TensorOptions().dtype(torch::kUInt8));
  int64_t offset = 0;
  auto host_of = [&](const torch::Tensor& t) {
    // Adopted: a second handle on the same memory (the module's handle is re-pointed by
    // set_data, this one keeps the host tensor).
    if (!t.defined()) return t;
    if (adoptable(t, pinned)) return t.detach();
    copied_bytes_ += t.numel() * static_cast<int64_t>(t.element_size());
    return copy_into(t, buffer, offset);
  };
  for (auto& [name, t] : named) {
    Entry e;
    e.param = t;
    e.host = host_of(t);
    if (e.host.data_ptr() != t.data_ptr()) e.param.set_data(e.host);
    bytes_ += e.host.numel() * e.host.element_size();
    entries_.push_back(std::move(e));
  }
  for (LinearImpl* l : quantized) {
    const QuantizedWeight& q = *l->quantized();
    QEntry e;
    e.linear = l;
    switch (q.kind()) {
      case QuantizedWeight::Kind::Dense:
        e.host = QuantizedWeight::dense(host_of(q.storage()));
        break;
      case QuantizedWeight::Kind::Fp8:
        e.host = QuantizedWeight::fp8(host_of(q.storage()), host_of(q.scale()),
                                      host_of(q.input_scale()));
        break;
      case QuantizedWeight::Kind::Ggml:
        e.host = QuantizedWeight::ggml(host_of(q.storage()), q.ggml_type(), q.shape());
        break;
    }
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

bool TransformerPlacement::host_tensor(const std::string& name, bool stream,
                                       int64_t resident_blocks) {
  // "transformer_blocks.N.rest"
  const std::string p = "transformer_blocks.";
  if (name.rfind(p, 0) != 0) return false;
  const size_t dot = name.find('.', p.size());
  if (dot == std::string::npos) return false;
  if (is_modulation(name.substr(dot + 1))) return true;
  return stream && BlockStreamer::streamed_name(name, "transformer_blocks", resident_blocks);
}

TransformerPlacement::TransformerPlacement(QwenImageTransformer2DModelImpl& model,
                                           torch::Device device, bool stream,
                                           int64_t resident_blocks, bool pin)
    : device_(device) {
  const auto& blocks = *model.transformer_blocks;
  const int64_t layers = static_cast<int64_t>(blocks.size());
  resident_blocks = stream ? std::clamp<int64_t>(resident_blocks, 0, layers) : layers;
  // Host first (what goes there leaves the device), then everything else to the device.
  for (int64_t i = 0; i < layers; ++i) mods_.emplace_back(*blocks[i], device, pin, is_modulation);
  blocks_ = std::make_unique<BlockStreamer>(model.transformer_blocks, device, resident_blocks, pin,
                                            [](const std::string& n) { return !is_modulation(n); });
  move_tensors(model, device, [&](const std::string& name) {
    return !host_tensor(name, stream, resident_blocks);
  });
  if (!device.is_cpu())
    side_ = c10::impl::getDeviceGuardImpl(device.type())
                ->getStreamFromGlobalPool(device, /*isHighPriority=*/false);
}

TransformerPlacement::~TransformerPlacement() = default;

PlacementStats TransformerPlacement::stats() const {
  PlacementStats s = blocks_->stats();
  s.modulation_bytes = modulation_bytes_;
  return s;
}

int64_t TransformerPlacement::streamed_blocks() const { return blocks_->streamed_blocks(); }

int64_t TransformerPlacement::host_bytes() const {
  int64_t n = blocks_->host_bytes();
  for (const auto& m : mods_) n += m.bytes();
  return n;
}

int64_t TransformerPlacement::copied_host_bytes() const {
  int64_t n = blocks_->copied_host_bytes();
  for (const auto& m : mods_) n += m.copied_bytes();
  return n;
}

int64_t TransformerPlacement::blocks_on_device() const { return blocks_->blocks_on_device(); }

void TransformerPlacement::prefetch_mod(size_t index) {
  if (index >= mods_.size() || mods_[index].tensors() == 0 || mods_[index].on_device()) return;
  mods_[index].upload(side_);
  modulation_bytes_ += mods_[index].bytes();
}

void TransformerPlacement::begin_passes(int64_t passes) { blocks_->begin_passes(passes); }
void TransformerPlacement::end_passes() { blocks_->end_passes(); }
void TransformerPlacement::before_block(size_t index) { blocks_->before_block(index); }
void TransformerPlacement::after_block(size_t index) { blocks_->after_block(index); }

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
          prefetch_mod(b);
          mods_[b].wait();
          prefetch_mod(b + 1);
        },
        additional_t_cond);
  } catch (...) {
    release_all();
    throw;
  }
}

void TransformerPlacement::release_all() {
  blocks_->release_all();
  for (auto& m : mods_) m.release();
}

}  // namespace qwen::models
