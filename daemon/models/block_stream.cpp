#include "models/block_stream.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <algorithm>
#include <chrono>
#include <string>

namespace qwen::models {

BlockStreamer::BlockStreamer(torch::nn::Module& model, torch::nn::ModuleList& blocks,
                             torch::Device device, int64_t resident_blocks, bool pin) {
  auto& list = *blocks;
  const int64_t layers = static_cast<int64_t>(list.size());
  resident_blocks = std::clamp<int64_t>(resident_blocks, 0, layers);
  // Host first (what goes there leaves the device), then everything else to the device
  // (TransformerPlacement's order).
  for (int64_t i = 0; i < layers; ++i) {
    if (i >= resident_blocks)
      blocks_.emplace_back(*list[i], device, pin);
    else
      blocks_.emplace_back();
  }
  // The streamed blocks' names in the model ("transformer_blocks.7."): their tensors (parameters,
  // buffers, quantised Linear weights) stay where HostWeights put them.
  std::vector<std::string> streamed;
  for (const auto& item : model.named_modules("", /*include_self=*/false))
    for (int64_t i = resident_blocks; i < layers; ++i)
      if (item.value().get() == list[i].get()) streamed.push_back(item.key() + ".");
  move_tensors(model, device, [&](const std::string& name) {
    return std::none_of(streamed.begin(), streamed.end(),
                        [&](const std::string& p) { return name.rfind(p, 0) == 0; });
  });
  if (!device.is_cpu())
    side_ = c10::impl::getDeviceGuardImpl(device.type())
                ->getStreamFromGlobalPool(device, /*isHighPriority=*/false);
}

int64_t BlockStreamer::streamed_blocks() const {
  int64_t n = 0;
  for (const auto& b : blocks_) n += b.tensors() > 0;
  return n;
}

int64_t BlockStreamer::host_bytes() const {
  int64_t n = 0;
  for (const auto& b : blocks_) n += b.bytes();
  return n;
}

void BlockStreamer::prefetch(size_t index) {
  if (index >= blocks_.size() || blocks_[index].tensors() == 0 || blocks_[index].on_device())
    return;
  blocks_[index].upload(side_);
  stats_.streamed_bytes += blocks_[index].bytes();
}

void BlockStreamer::before_block(size_t index) {
  if (index >= blocks_.size() || blocks_[index].tensors() == 0) return;
  prefetch(index);  // not prefetched (the first streamed block of a pass)
  const auto start = std::chrono::steady_clock::now();
  blocks_[index].wait();
  stats_.wait_seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // The next block's copy runs on the side stream while this block computes.
  prefetch(index + 1);
}

void BlockStreamer::after_block(size_t index) {
  if (index < blocks_.size() && blocks_[index].tensors() > 0) blocks_[index].release();
}

void BlockStreamer::release_all() {
  for (auto& b : blocks_) b.release();
}

}  // namespace qwen::models
