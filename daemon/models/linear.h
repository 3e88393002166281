// y = x W^T + b under the checkpoint's names (`weight` [out, in], `bias` [out]), shared by the
// transformer, the text encoder and the vision tower.
//
// Unlike torch::nn::Linear the parameters are created uninitialized (torch::empty in the default
// dtype): no random initialisation runs and no page of memory is touched, because the checkpoint
// loader replaces every parameter (models/weights.h). Building the 20.4B transformer this way
// costs nothing, where torch::nn::Linear would fill 82 GB of float32 with random numbers before
// the first weight is read. Code that wants random weights (benchmarks) fills them explicitly.
#pragma once

#include <torch/torch.h>

namespace qwen::models {

class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in, int64_t out, bool bias = true);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight, bias;
};
TORCH_MODULE(Linear);

}  // namespace qwen::models
