// How much device memory the process can still use, for decisions such as tiling the VAE.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>

namespace qwen::models {

// On CUDA: the driver's free memory plus what torch's caching allocator holds without using it
// (reserved minus allocated), i.e. what one more allocation could get. nullopt on other devices,
// in builds against a libtorch without CUDA, or when the driver cannot be asked.
std::optional<int64_t> device_available_bytes(const torch::Device& device);

// Host memory that weights are copied to `device` from (memory modes, issue #13): page-locked
// when `device` is an accelerator (asynchronous copies on a side stream need it), plain host
// memory on the CPU, where it stands in (the same code runs in tests). Exactly `bytes` (torch's
// pinned caching allocator rounds every block up to a power of two: up to twice the weights).
bool pins_host_memory(const torch::Device& device);
torch::Tensor host_buffer(int64_t bytes, const torch::Device& device);  // uint8 [bytes]

}  // namespace qwen::models
