// The Qwen2-VL image processor (image/vision_processor.h) vs transformers on fresh random images
// every run (gen_random.py part vision_processor: 12 images, noise or smooth, modes RGB / RGBA /
// L / LA, sides 20-400 px, some already multiples of 28, each in its own processor call): the
// engine's default torchvision backend (torch's uint8 antialiased bicubic through
// pipelines/vision_resize.h, the fused float32 normalisation) against transformers' default
// Qwen2VLImageProcessor, and the pil backend against Qwen2VLImageProcessorPil (with the live
// Pillow's resize pass order). pixel_values and image_grid_thw must be bit-identical.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <iostream>
#include <string>

#include "common/fixtures.h"
#include "image/png.h"
#include "image/vision_processor.h"
#include "pipelines/vision_resize.h"
#include "reference_case.h"

namespace {

TEST(ReferenceDifferential, VisionProcessorMatchesTransformers) {
  torch::set_num_threads(1);
  QWEN_REFERENCE_CASE(ref, "vision_processor");
  const auto& part = ref.json()["parts"]["vision_processor"];
  auto t = ref.tensors("vision_processor");
  // The fixture edit model's processor/, which gen_random.py loads.
  const auto config = qwen::VisionProcessorConfig::from_json_file(
      qwen::test::tiny_edit_model_dir() + "/processor/preprocessor_config.json");
  const std::string pillow = ref.json()["versions"]["pillow"].get<std::string>();
  const bool pillow13 = std::stoi(pillow.substr(0, pillow.find('.'))) >= 13;
  int i = 0;
  for (const auto& im : part["images"]) {
    const std::string where =
        "seed " + std::to_string(ref.seed()) + ", image " + std::to_string(i) + " " + im.dump();
    const qwen::ImageU8 image = qwen::read_png(ref.dir() + "/" + im["file"].get<std::string>());
    for (const std::string backend : {"default", "pil"}) {
      auto cfg = config;
      cfg.backend = backend == "pil" ? qwen::VisionBackend::Pil : qwen::VisionBackend::Torchvision;
      cfg.pillow_order = pillow13 ? qwen::PillowOrder::Pillow13 : qwen::PillowOrder::Pillow12;
      const qwen::VisionPatches p =
          qwen::preprocess_vision({image}, cfg, qwen::pipelines::torchvision_resizer());
      const auto& expected = t.at(backend + "_pixel_values_" + std::to_string(i));
      const auto& grid = t.at(backend + "_image_grid_thw_" + std::to_string(i));
      ASSERT_EQ(grid.size(0), 1) << where;
      ASSERT_EQ(p.grid_thw.size(), 1u) << where;
      for (int k = 0; k < 3; ++k)
        EXPECT_EQ(p.grid_thw[0][size_t(k)], grid[0][k].item<int64_t>()) << backend << ", " << where;
      ASSERT_EQ(expected.sizes(), (std::vector<int64_t>{p.rows, p.row_width}))
          << backend << ", " << where;
      auto actual = torch::from_blob(const_cast<float*>(p.pixel_values.data()),
                                     {p.rows, p.row_width}, torch::kFloat32);
      const double diff = (actual - expected).abs().max().item<double>();
      const int64_t differ = actual.ne(expected).sum().item<int64_t>();
      std::cout << "[reference] vision_processor " << backend << " image " << i << " "
                << im["mode"].get<std::string>() << " " << im["size"].dump() << " -> "
                << p.resized[0].width << "x" << p.resized[0].height << ": max abs " << diff << ", "
                << differ << " values differ" << std::endl;
      EXPECT_EQ(differ, 0) << backend << ": max abs " << diff << ", " << where;
    }
    ++i;
  }
  EXPECT_EQ(i, 12);
}

}  // namespace
