#include "models/device_memory.h"

#include <algorithm>

// QWEN_WITH_C10_CUDA: set by daemon/models/CMakeLists.txt when libtorch comes with c10_cuda (a
// CUDA build); a CPU-only libtorch compiles the fallback.
#if defined(QWEN_WITH_C10_CUDA) && __has_include(<c10/cuda/CUDACachingAllocator.h>) && \
    __has_include(<cuda_runtime_api.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>
#define QWEN_DEVICE_MEMORY_CUDA 1
#endif

namespace qwen::models {

std::optional<int64_t> device_available_bytes(const torch::Device& device) {
  if (!device.is_cuda()) return std::nullopt;
#ifdef QWEN_DEVICE_MEMORY_CUDA
  const c10::DeviceIndex index = device.has_index() ? device.index() : c10::cuda::current_device();
  c10::DeviceGuard guard(torch::Device(torch::kCUDA, index));
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky-free error state of the runtime API
    return std::nullopt;
  }
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
  const int64_t cached = stats.reserved_bytes[0].current - stats.allocated_bytes[0].current;
  return static_cast<int64_t>(free) + std::max<int64_t>(0, cached);
#else
  return std::nullopt;
#endif
}

}  // namespace qwen::models
