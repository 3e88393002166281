#include "models/linear.h"

namespace qwen::models {

LinearImpl::LinearImpl(int64_t in, int64_t out, bool has_bias) {
  weight = register_parameter("weight", torch::empty({out, in}), /*requires_grad=*/false);
  if (has_bias) bias = register_parameter("bias", torch::empty({out}), /*requires_grad=*/false);
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) { return at::linear(x, weight, bias); }

}  // namespace qwen::models
