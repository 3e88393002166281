// What a served model can do (issue #16, server/model_caps.h): from the engine's ModelInfo, before
// loading from model_type / model_index.json, and the pipeline check with its messages.
#include <gtest/gtest.h>

#include "server/model_caps.h"

using namespace qwen;
using namespace qwen::server;

namespace {
const std::string kModels = std::string(QWEN_FIXTURES) + "/models/";
}

TEST(ModelCaps, FromTheLoadedEngine) {
  ModelInfo layered;
  layered.pipeline_class = "QwenImageLayeredPipeline";
  layered.can_decompose = true;
  layered.default_pipeline = PipelineKind::Decompose;
  auto c = caps_of(layered);
  EXPECT_TRUE(c.known && c.can_decompose && c.rgba);
  EXPECT_FALSE(c.can_generate || c.can_edit || c.loras);
  EXPECT_EQ(c.family, "QwenImageLayeredPipeline");

  ModelInfo plus;
  plus.model_type = "qwen-image-edit-2511";
  plus.can_edit = true;
  plus.default_pipeline = PipelineKind::EditPlus;
  c = caps_of(plus);
  EXPECT_TRUE(c.known && c.can_edit && c.can_generate && c.loras);
  EXPECT_FALSE(c.can_decompose || c.rgba);
  EXPECT_EQ(c.max_references, 3);
  EXPECT_EQ(c.family, "qwen-image-edit-2511");

  ModelInfo t2i;
  c = caps_of(t2i);
  EXPECT_TRUE(c.can_generate);
  EXPECT_FALSE(c.can_edit);
  EXPECT_EQ(c.max_references, 0);

  ModelInfo q21;
  q21.family = "qwen-image-2.1";
  q21.can_edit = true;
  c = caps_of(q21);
  EXPECT_TRUE(c.rgba && c.can_edit);
  EXPECT_TRUE(c.loras);  // issue #14's mechanism serves 2.1 too
  EXPECT_EQ(c.max_references, 10);
}

TEST(ModelCaps, BeforeLoadingFromTheFolderOrModelType) {
  auto c = caps_before_load(ModelSpec{"l", kModels + "qwen-image-layered-tiny", {}, {}, {}, {}});
  EXPECT_TRUE(c.known && c.can_decompose);
  EXPECT_FALSE(c.can_generate);
  c = caps_before_load(ModelSpec{"e", kModels + "qwen-image-edit-2509-tiny", {}, {}, {}, {}});
  EXPECT_TRUE(c.known && c.can_edit);
  EXPECT_EQ(c.max_references, 3);
  c = caps_before_load(ModelSpec{"g", kModels + "qwen-image-tiny", {}, {}, {}, {}});
  EXPECT_TRUE(c.known && c.can_generate);
  EXPECT_FALSE(c.can_edit || c.can_decompose);
  c = caps_before_load(ModelSpec{"t", "", "/x.safetensors", {}, {}, "qwen-image-layered"});
  EXPECT_TRUE(c.known && c.can_decompose);
  c = caps_before_load(ModelSpec{"n", "/nonexistent", {}, {}, {}, {}});
  EXPECT_FALSE(c.known);
}

TEST(ModelCaps, PipelineCheckNamesTheModel) {
  ipc::ModelCaps t2i;
  t2i.known = t2i.can_generate = true;
  t2i.family = "qwen-image";
  const std::string e = check_pipeline(t2i, "decompose", "Qwen-Image");
  EXPECT_NE(e.find("model 'Qwen-Image' (qwen-image) cannot decompose"), std::string::npos) << e;
  EXPECT_EQ(check_pipeline(t2i, "generate", "Qwen-Image"), "");
  ipc::ModelCaps layered;
  layered.known = layered.can_decompose = true;
  layered.family = "qwen-image-layered";
  EXPECT_EQ(check_pipeline(layered, "decompose", "L"), "");
  EXPECT_NE(check_pipeline(layered, "edit-auto", "L").find("only decomposes"), std::string::npos);
  EXPECT_EQ(check_pipeline(ipc::ModelCaps{}, "decompose", "lazy"),
            "");  // unknown: the engine decides
}
