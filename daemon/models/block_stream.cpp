#include "models/block_stream.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <algorithm>
#include <chrono>
#include <string>

namespace qwen::models {

namespace {

std::optional<c10::Stream> side_stream(const torch::Device& device) {
  if (device.is_cpu()) return std::nullopt;
  return c10::impl::getDeviceGuardImpl(device.type())
      ->getStreamFromGlobalPool(device, /*isHighPriority=*/false);
}

}  // namespace

bool BlockStreamer::streamed_name(const std::string& name, const std::string& blocks_name,
                                  int64_t resident_blocks) {
  const std::string p = blocks_name + ".";
  if (name.rfind(p, 0) != 0) return false;
  const size_t dot = name.find('.', p.size());
  if (dot == std::string::npos || dot == p.size()) return false;
  int64_t index = 0;
  for (size_t i = p.size(); i < dot; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    index = index * 10 + (name[i] - '0');
  }
  return index >= resident_blocks;
}

BlockStreamer::BlockStreamer(torch::nn::ModuleList& blocks, torch::Device device,
                             int64_t resident_blocks, bool pin, const Take& take)
    : side_(side_stream(device)) {
  auto& list = *blocks;
  const int64_t layers = static_cast<int64_t>(list.size());
  resident_blocks = std::clamp<int64_t>(resident_blocks, 0, layers);
  for (int64_t i = 0; i < layers; ++i) {
    if (i >= resident_blocks)
      blocks_.emplace_back(*list[i], device, pin, take);
    else
      blocks_.emplace_back();
  }
}

BlockStreamer::BlockStreamer(torch::nn::Module& model, torch::nn::ModuleList& blocks,
                             torch::Device device, int64_t resident_blocks, bool pin)
    : BlockStreamer(blocks, device, resident_blocks, pin, {}) {
  // Host first (what goes there leaves the device), then everything else to the device
  // (TransformerPlacement's order). The streamed blocks' names in the model
  // ("transformer_blocks.7."): their tensors (parameters, buffers, quantised Linear weights) stay
  // where HostWeights put them.
  auto& list = *blocks;
  std::vector<std::string> streamed;
  for (const auto& item : model.named_modules("", /*include_self=*/false))
    for (size_t i = 0; i < list.size(); ++i)
      if (blocks_[i].tensors() > 0 && item.value().get() == list[i].get())
        streamed.push_back(item.key() + ".");
  move_tensors(model, device, [&](const std::string& name) {
    return std::none_of(streamed.begin(), streamed.end(),
                        [&](const std::string& p) { return name.rfind(p, 0) == 0; });
  });
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

int64_t BlockStreamer::copied_host_bytes() const {
  int64_t n = 0;
  for (const auto& b : blocks_) n += b.copied_bytes();
  return n;
}

int64_t BlockStreamer::blocks_on_device() const {
  int64_t n = 0;
  for (const auto& b : blocks_) n += b.tensors() > 0 && b.on_device();
  return n;
}

size_t BlockStreamer::first_streamed() const {
  for (size_t i = 0; i < blocks_.size(); ++i)
    if (blocks_[i].tensors() > 0) return i;
  return blocks_.size();
}

// Starts block `index`'s copy on the side stream (nothing when resident or already there);
// `ahead`: ahead of its use (counted as prefetched), else the block waits for it whole.
void BlockStreamer::prefetch(size_t index, bool ahead) {
  if (index >= blocks_.size() || blocks_[index].tensors() == 0 || blocks_[index].on_device())
    return;
  blocks_[index].upload(side_);
  stats_.streamed_bytes += blocks_[index].bytes();
  ++(ahead ? stats_.prefetched_blocks : stats_.unprefetched_blocks);
}

void BlockStreamer::begin_passes(int64_t passes) {
  passes_left_ = passes;
  if (passes > 0) prefetch(first_streamed(), true);  // overlaps the job's set-up
}

void BlockStreamer::end_passes() {
  passes_left_ = 0;
  // A copy made for a pass that did not run (the job was cancelled or failed in between).
  const size_t first = first_streamed();
  if (first < blocks_.size()) blocks_[first].release();
}

void BlockStreamer::before_block(size_t index) {
  if (index >= blocks_.size() || blocks_[index].tensors() == 0) return;
  // Not prefetched (the first streamed block of a forward outside begin_passes()): the copy is
  // waited for whole.
  prefetch(index, false);
  const auto start = std::chrono::steady_clock::now();
  blocks_[index].wait();
  stats_.wait_seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // The next block's copy runs on the side stream while this block computes.
  prefetch(index + 1, true);
}

void BlockStreamer::after_block(size_t index) {
  if (index < blocks_.size() && blocks_[index].tensors() > 0) blocks_[index].release();
  // The end of a pass: the next pass's first streamed block is copied while the pipeline runs
  // the scheduler step / the other CFG branch's set-up (wait()ed on the compute stream by its
  // before_block, so the copy is complete before the block reads it).
  if (index + 1 == blocks_.size() && passes_left_ > 0 && --passes_left_ > 0)
    prefetch(first_streamed(), true);
}

void BlockStreamer::release_all() {
  passes_left_ = 0;
  for (auto& b : blocks_) b.release();
}

}  // namespace qwen::models
