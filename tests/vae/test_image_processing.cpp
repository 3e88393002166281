#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/fixtures.h"
#include "image/png.h"
#include "pipelines/image_processing.h"

using namespace qwen;
using namespace qwen::pipelines;
using qwen::test::AllClose;
using qwen::test::fixture_path;
using qwen::test::load_tensors;

TEST(ImageProcessing, PreprocessMatchesVaeImageProcessor) {
  auto t = load_tensors(fixture_path("cases/vae/tensors.safetensors"));
  const ImageU8 img = read_png(fixture_path("cases/vae/image.png"));
  const torch::Tensor x = preprocess_image(img, 96, 64);
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{1, 3, 64, 96}));
  EXPECT_TRUE(torch::equal(x, t["image"].select(2, 0)));
  // Sizes are floored to multiples of 16 and the image LANCZOS-resized.
  const torch::Tensor y = preprocess_image(img, 100, 40);
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{1, 3, 32, 96}));
  EXPECT_GE(y.min().item<float>(), -1.0f);
  EXPECT_LE(y.max().item<float>(), 1.0f);
  EXPECT_THROW(preprocess_image(img, 10, 64), ImageError);
  EXPECT_EQ(vae_input_size(1000, 777), (Size{992, 768}));
}

// vae_decoded -> float image -> PNG, exactly as the reference post-processes.
TEST(ImageProcessing, PostprocessMatchesPipelineOutputs) {
  for (const char* c : {"pipeline_t2i_cfg1", "pipeline_t2i_cfg4", "pipeline_inpaint",
                        "pipeline_edit", "pipeline_edit_plus"}) {
    SCOPED_TRACE(c);
    const std::string dir = fixture_path(std::string("cases/") + c);
    auto t = load_tensors(dir + "/tensors.safetensors");
    const torch::Tensor dec = t["vae_decoded"].select(2, 0);
    const torch::Tensor img01 = denormalize_image(dec);
    // `image` is the first batch entry, HWC.
    EXPECT_TRUE(AllClose(img01[0].permute({1, 2, 0}),
                         t["image"].dim() == 4 ? t["image"][0] : t["image"], 0.0));
    const std::vector<ImageU8> out = postprocess(dec);
    ASSERT_EQ(out.size(), size_t(dec.size(0)));
    const ImageU8 ref = read_png(dir + "/output.png");
    EXPECT_EQ(out[0].width, ref.width);
    EXPECT_EQ(out[0].height, ref.height);
    EXPECT_EQ(out[0].pixels, ref.pixels);
  }
}

TEST(ImageProcessing, RoundsHalfToEvenAndBf16DenormaliseStaysBf16) {
  const torch::Tensor x =
      torch::tensor({0.5f / 255.f, 1.5f / 255.f, 2.5f / 255.f}).view({1, 3, 1, 1});
  const auto img = to_images(x);
  const std::vector<uint8_t> expected{uint8_t(std::nearbyint((0.5f / 255.f) * 255.f)),
                                      uint8_t(std::nearbyint((1.5f / 255.f) * 255.f)),
                                      uint8_t(std::nearbyint((2.5f / 255.f) * 255.f))};
  EXPECT_EQ(img[0].pixels, expected);
  const torch::Tensor b = denormalize_image(torch::full({1, 3, 2, 2}, 0.3f, torch::kBFloat16));
  EXPECT_EQ(b.scalar_type(), torch::kBFloat16);
  EXPECT_THROW(to_images(torch::zeros({3, 4, 4})), std::invalid_argument);
}

// Inpaint mask: LANCZOS resize, gray, binarise; nearest-downsampled and packed it is the
// pipeline's mask_latents.
TEST(ImageProcessing, MaskMatchesInpaintMaskLatents) {
  auto t = load_tensors(fixture_path("cases/pipeline_inpaint/tensors.safetensors"));
  const ImageU8 mask = read_png(fixture_path("cases/pipeline_inpaint/mask.png"));
  const torch::Tensor m = preprocess_mask(mask, 96, 64);
  EXPECT_EQ(m.sizes(), (std::vector<int64_t>{1, 1, 64, 96}));
  EXPECT_TRUE(((m == 0) | (m == 1)).all().item<bool>());
  namespace F = torch::nn::functional;
  const torch::Tensor small = F::interpolate(
      m, F::InterpolateFuncOptions().size(std::vector<int64_t>{8, 12}).mode(torch::kNearest));
  const torch::Tensor z = small.repeat({1, 16, 1, 1});
  const torch::Tensor packed =
      z.view({1, 16, 4, 2, 6, 2}).permute({0, 2, 4, 1, 3, 5}).reshape({1, 24, 64});
  EXPECT_TRUE(torch::equal(packed, t["mask_latents"]));
  // An RGB mask gives the same result as its gray version.
  ImageU8 rgb(mask.width, mask.height, 3);
  for (size_t i = 0; i < mask.pixels.size(); ++i)
    rgb.pixels[i * 3] = rgb.pixels[i * 3 + 1] = rgb.pixels[i * 3 + 2] = mask.pixels[i];
  EXPECT_TRUE(torch::equal(preprocess_mask(rgb, 96, 64), m));
}
