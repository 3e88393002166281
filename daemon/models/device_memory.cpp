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
  // Torch's CUDA state first: getDeviceStats below checks that the caching allocator was set up
  // (torch.cuda.memory_stats initialises CUDA the same way); the planner can ask before any CUDA
  // tensor exists.
  at::globalContext().lazyInitDevice(c10::DeviceType::CUDA);
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

bool pins_host_memory(const torch::Device& device) { return !device.is_cpu(); }

torch::Tensor host_buffer(int64_t bytes, const torch::Device& device) {
  bytes = std::max<int64_t>(bytes, 0);
  const auto u8 = torch::TensorOptions().dtype(torch::kUInt8);
  if (!pins_host_memory(device)) return torch::empty({bytes}, u8);
#ifdef QWEN_DEVICE_MEMORY_CUDA
  if (device.is_cuda() && bytes > 0) {
    // cudaHostAlloc of the exact size (torch's pinned allocator would round it up to a power of
    // two); torch sees it as pinned (is_pinned() asks the driver) only once torch's CUDA state is
    // initialised ("if the device is not initialized, no pointer can be pinned", ATen/Context.h),
    // and a load that puts every tensor on the host (Qwen-Image-2.1's swap) makes no CUDA tensor
    // first: without this, HostWeights would copy the whole buffer into a second pinned one. The
    // guard keeps the allocation's context on the model's device, not on GPU 0.
    at::globalContext().lazyInitDevice(c10::DeviceType::CUDA);
    c10::DeviceGuard guard(device);
    void* p = nullptr;
    const cudaError_t err = cudaHostAlloc(&p, static_cast<size_t>(bytes), cudaHostAllocDefault);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      TORCH_CHECK_WITH(OutOfMemoryError, false, "cannot allocate ", bytes / double(1 << 30),
                       " GiB of page-locked host memory: ", cudaGetErrorString(err),
                       " (free host memory, or choose a memory mode that keeps less on the host)");
    }
    return torch::from_blob(
        p, {bytes}, [](void* q) { cudaFreeHost(q); }, u8);
  }
#endif
  return torch::empty({bytes}, u8.pinned_memory(true));
}

}  // namespace qwen::models
