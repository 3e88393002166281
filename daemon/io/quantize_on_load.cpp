#include "io/quantize_on_load.h"

#include <stdexcept>

namespace qwen::io {

QuantizeMode parse_quantize_mode(const std::string& name) {
  if (name.empty() || name == "none") return QuantizeMode::None;
  if (name == "fp8") return QuantizeMode::Fp8;
  throw std::invalid_argument("unknown quantize value '" + name +
                              "' (expected none or fp8: fp8 quantises the transformer's block "
                              "weights to float8 e4m3fn as they are loaded)");
}

const char* to_string(QuantizeMode mode) { return mode == QuantizeMode::Fp8 ? "fp8" : "none"; }

bool quantize_on_load_selects(const std::string& key, const std::vector<int64_t>& shape) {
  static const std::string kBlocks = "transformer_blocks.", kWeight = ".weight";
  return shape.size() == 2 && key.rfind(kBlocks, 0) == 0 && key.size() > kWeight.size() &&
         key.compare(key.size() - kWeight.size(), kWeight.size(), kWeight) == 0;
}

}  // namespace qwen::io
