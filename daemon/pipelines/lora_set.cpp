#include "pipelines/lora_set.h"

#include <algorithm>
#include <filesystem>

#include "pipelines/engine_impl.h"

namespace fs = std::filesystem;

namespace qwen::pipelines {

models::LightningInfo LoraSet::prepare(const std::vector<RunParams::Lora>& loras,
                                       torch::nn::Module& transformer, const Apply& apply,
                                       const Log& log) {
  std::vector<std::pair<std::string, double>> wanted;
  for (const auto& l : loras) wanted.emplace_back(l.path, l.strength);
  std::vector<models::LoraSpec> set;
  models::LightningInfo lightning;
  for (const auto& [path, strength] : wanted) {
    std::error_code ec;
    const auto mtime = fs::last_write_time(path, ec);
    if (ec) throw EngineError("LoRA file " + path + " cannot be read: " + ec.message());
    const int64_t stamp = mtime.time_since_epoch().count();
    auto it = cache_.find(path);
    if (it == cache_.end() || it->second.mtime != stamp) {
      auto file = with_context("LoRA", [&] {
        return std::make_shared<const models::LoraFile>(
            models::read_lora(path, models::linear_module_names(transformer),
                              models::linear_module_shapes(transformer)));
      });
      log("LoRA " + path + ": " + models::to_string(file->style) + ", " +
          std::to_string(file->modules.size()) + " modules, rank " +
          std::to_string(file->max_rank()));
      it = cache_.insert_or_assign(path, Cached{file, stamp}).first;
      applied_.clear();  // a changed file: re-apply
    }
    set.push_back({it->second.file, strength});
    if (const auto li = models::lightning_info(*it->second.file); li.lightning) {
      lightning.steps = lightning.lightning ? std::min(lightning.steps, li.steps) : li.steps;
      lightning.lightning = true;
    }
  }
  if (wanted != applied_) {
    applied_.clear();
    try {
      apply(set);
    } catch (const std::exception& e) {
      models::clear_loras(transformer);
      throw EngineError(message_of(e));
    }
    applied_ = wanted;
    applied_lightning_ = lightning;
  }
  return applied_lightning_;
}

}  // namespace qwen::pipelines
