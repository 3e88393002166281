// Pipeline names (the protocol's and the CLI's): torch-free, see api/CMakeLists.txt.
#include "pipelines/engine.h"

namespace qwen {

const char* to_string(PipelineKind k) {
  switch (k) {
    case PipelineKind::Generate:
      return "generate";
    case PipelineKind::Img2Img:
      return "img2img";
    case PipelineKind::Inpaint:
      return "inpaint";
    case PipelineKind::Edit:
      return "edit";
    case PipelineKind::EditPlus:
      return "edit-plus";
    case PipelineKind::EditInpaint:
      return "edit-inpaint";
    case PipelineKind::Decompose:
      return "decompose";
  }
  return "unknown";
}

std::optional<PipelineKind> pipeline_from_string(const std::string& s) {
  for (auto k : {PipelineKind::Generate, PipelineKind::Img2Img, PipelineKind::Inpaint,
                 PipelineKind::Edit, PipelineKind::EditPlus, PipelineKind::EditInpaint,
                 PipelineKind::Decompose})
    if (s == to_string(k)) return k;
  return std::nullopt;
}

PipelineKind edit_pipeline_for(PipelineKind model_default, size_t images) {
  return images > 1 || model_default == PipelineKind::EditPlus ? PipelineKind::EditPlus
                                                               : PipelineKind::Edit;
}

}  // namespace qwen
