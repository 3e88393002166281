// Dequantisers for the stored weight formats of io/tensor_format.h: GGUF blocks and (scaled) fp8.
// Vectorised torch ops, so they run where the bytes are (CPU or CUDA) with no per-element loop.
//
// Exactness: in float32 the results equal gguf-py 0.19.0 `gguf.quants.dequantize` bit for bit
// (the same float32 operations in the same order: e.g. K-quants `(d * sc) * q - dmin * m`), and
// ComfyUI's fp8 rule `float(w) * scale`. Other dtypes are that float32 result rounded once.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "io/gguf.h"

namespace qwen::models {

// `blocks`: the tensor's raw GGUF bytes, a uint8 tensor (any shape, contiguous, on CPU or CUDA) of
// exactly numel(shape) / block_size * type_size bytes. `shape`: the logical torch shape (last
// dimension = a ggml row; its size a multiple of the block size, for the product of all
// dimensions to be a whole number of blocks is enough). Returns a new tensor of `shape` in `dtype`
// on the blocks' device (F32 in float32: a view of the bytes when they are 4-byte aligned).
// Throws io::CheckpointError for a type not in io::ggml_type_supported() or a size mismatch.
torch::Tensor dequantize_ggml(const torch::Tensor& blocks, io::GgmlType type,
                              const std::vector<int64_t>& shape,
                              torch::Dtype dtype = torch::kFloat32);

// fp8 (float8_e4m3fn / float8_e5m2) weight -> float(w) * scale, computed in float32 and returned
// in `dtype`. `scale`: undefined (plain fp8, scale 1) or a 1-element floating tensor (any device;
// it is moved to w's device). comfy/ops.py scaled_fp8_ops / TensorCoreFP8Layout.dequantize.
torch::Tensor dequantize_fp8(const torch::Tensor& w, const torch::Tensor& scale = {},
                             torch::Dtype dtype = torch::kFloat32);

}  // namespace qwen::models
