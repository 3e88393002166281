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

}  // namespace qwen::models
