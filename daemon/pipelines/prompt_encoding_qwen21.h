// Prompt encoding of Qwen-Image-2.1 (diffusers QwenImage21Pipeline.encode_prompt /
// _get_qwen_prompt_embeds): the raw template string with its system prompt (reference images as
// `<imageN><|vision_start|><|image_pad|><|vision_end|>` blocks before the prompt), left padding in
// the Qwen3-VL text encoder, the last decoder layer's output before the final norm, then the
// Qwen-Image rule shared with the 20B family (pipelines/prompt_encoding.h): valid rows compacted,
// the 14 system-prompt tokens dropped, zero re-padding on the right, mask None when all ones.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "image/image.h"
#include "image/vision_processor.h"
#include "models/qwen3vl_text_encoder.h"
#include "tokenizer/qwen2_tokenizer.h"

namespace qwen::pipelines::qwen21 {

// Tokens of `<|im_start|>system\nComprehend and analyze the provided prompt.<|im_end|>\n`, dropped
// from the front of every prompt's hidden states (the pipeline's _drop_idx).
inline constexpr int64_t kDropIdx = 14;
inline constexpr const char* kSystemPrompt = "Comprehend and analyze the provided prompt.";

// The template text around `prompt` (an empty prompt becomes " ") with `n_images` reference image
// blocks: "<image1><|vision_start|><|image_pad|><|vision_end|> <image2>..." before the prompt
// (`<imageN>` is plain text).
std::string prompt_text(const std::string& prompt, size_t n_images = 0);

// Image.new("RGB", size, white).paste(img, mask=img.getchannel("A")) in PIL's 8-bit arithmetic:
// c' = DIV255(255 * (255 - a) + c * a). RGBA (and gray + alpha) images only; others are returned
// unchanged (the pipeline composites only RGBA inputs).
ImageU8 paste_on_white(const ImageU8& image);

// The processor's vision inputs of the reference images (already resized by the pipeline):
// paste_on_white, then the Qwen2-VL image processor of `processor` (smart_resize, rescale +
// normalize, temporal duplication, merge-block row order): pixel_values float32 [N, C*2*p*p],
// image_grid_thw int64 [n, 3].
std::pair<torch::Tensor, torch::Tensor> vision_inputs(const std::vector<ImageU8>& images,
                                                      const VisionProcessorConfig& processor);

// The image processor settings of Qwen3-VL-8B's preprocessor_config.json (patch 16, merge 2,
// mean / std 0.5, 65536..16777216 pixels), for a model given without its processor folder.
VisionProcessorConfig default_processor_config();

// The image processor settings of a 2.1 model's processor/ folder: preprocessor_config.json, else
// the "image_processor" object of transformers 5's processor_config.json. Throws ImageError naming
// the folder when it has neither, or the file and the value when one is invalid.
VisionProcessorConfig processor_config(const std::string& processor_dir);

struct TokenBatch {
  torch::Tensor input_ids;       // int64 [B, L], left-padded with the tokenizer's pad token
  torch::Tensor attention_mask;  // int64 [B, L], 0 on the left padding
};

// The processor's text side: prompt_text(prompt, n images) per prompt, each <|image_pad|>
// expanded to tokens_per_image[k] copies, rows left-padded to the longest.
TokenBatch tokenize(const tokenizer::Qwen2Tokenizer& tokenizer,
                    const std::vector<std::string>& prompts,
                    const std::vector<int64_t>& tokens_per_image = {});

struct PromptEncoding {
  torch::Tensor embeds;          // [B * num_images_per_prompt, S, hidden] (encoder dtype, device)
  torch::Tensor mask;            // int64 [B * num_images_per_prompt, S]; undefined when all ones
  torch::Tensor image_pad_mask;  // bool [B, S]: <|image_pad|> rows (not repeated, as the reference)
};

// encode_prompt for a batch of prompts, each with every reference image (already resized by the
// pipeline; RGBA or RGB; none for text to image). Throws std::invalid_argument on an empty batch,
// or images without the vision tower.
PromptEncoding encode_prompt(models::qwen3vl::TextEncoder& encoder,
                             const tokenizer::Qwen2Tokenizer& tokenizer,
                             const std::vector<std::string>& prompts,
                             const std::vector<ImageU8>& images,
                             const VisionProcessorConfig& processor,
                             int64_t num_images_per_prompt = 1);

// The same from the processor's vision inputs of ONE set of reference images (pixel_values /
// image_grid_thw as vision_inputs returns them; undefined for text to image); each prompt gets
// all of them.
PromptEncoding encode_prompt(models::qwen3vl::TextEncoder& encoder,
                             const tokenizer::Qwen2Tokenizer& tokenizer,
                             const std::vector<std::string>& prompts,
                             const torch::Tensor& pixel_values, const torch::Tensor& image_grid_thw,
                             int64_t num_images_per_prompt = 1);

// The same from the vision tower's output for ONE set of reference images
// (TextEncoder::encode_images over vision_inputs), e.g. computed once for a prompt and its negative
// prompt; undefined features for text to image.
PromptEncoding encode_prompt(models::qwen3vl::TextEncoder& encoder,
                             const tokenizer::Qwen2Tokenizer& tokenizer,
                             const std::vector<std::string>& prompts,
                             const models::qwen3vl::VisionFeatures& images,
                             const torch::Tensor& image_grid_thw,
                             int64_t num_images_per_prompt = 1);

}  // namespace qwen::pipelines::qwen21
