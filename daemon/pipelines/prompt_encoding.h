// The pipelines' prompt encoding (diffusers QwenImage*Pipeline._get_qwen_prompt_embeds /
// encode_prompt): chat templates, tokenization, the Qwen2.5-VL text encoder, compaction of the
// valid rows, dropping the template prefix (34 / 64 rows), zero re-padding and the mask.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "image/image.h"
#include "image/vision_processor.h"
#include "models/text_encoder.h"
#include "qwen_image/limits.h"
#include "tokenizer/qwen2_tokenizer.h"

namespace qwen::pipelines {

inline constexpr int64_t kT2IDropIdx = 34;   // T2I family template prefix (tokens)
inline constexpr int64_t kEditDropIdx = 64;  // Edit family template prefix (tokens)
// The daemon checks the same bound at submission (qwen_image/limits.h, one set of limits).
inline constexpr int64_t kTokenizerMaxLength = ipc::kMaxSequenceLength;
inline constexpr int32_t kImagePadId = 151655;

// Template texts around a user prompt.
std::string t2i_prompt_text(const std::string& prompt);
// Edit: `<|vision_start|><|image_pad|><|vision_end|>` + prompt in the user turn.
std::string edit_prompt_text(const std::string& prompt);
// Edit-Plus: "Picture 1: <|vision_start|><|image_pad|><|vision_end|>Picture 2: ..." + prompt.
std::string edit_plus_prompt_text(const std::string& prompt, size_t n_images);

struct PromptEmbeds {
  torch::Tensor embeds;  // [B, S, hidden], text-encoder dtype and device
  torch::Tensor mask;    // int64 [B, S] (1 = token); undefined = all valid (reference: None)
};

// _get_qwen_prompt_embeds after the encoder: the valid rows of `hidden` [B, L, H] (attention_mask
// [B, L] == 1), minus the first `drop_idx`, stacked and zero-padded to the longest. The mask is
// always returned here. Throws std::invalid_argument when a sequence has <= drop_idx valid rows.
PromptEmbeds extract_prompt_embeds(const torch::Tensor& hidden, const torch::Tensor& attention_mask,
                                   int64_t drop_idx);

// encode_prompt after _get_qwen_prompt_embeds: optional slice to `max_sequence_length` (T2I only),
// repeat each prompt num_images_per_prompt times (b0, b0, b1, b1, ...), mask -> undefined when all
// ones.
PromptEmbeds finalize_prompt_embeds(PromptEmbeds pe, std::optional<int64_t> max_sequence_length,
                                    int64_t num_images_per_prompt);

// Replaces the k-th <|image_pad|> id by tokens_per_image[k] copies (what the processor does to the
// text). Throws std::invalid_argument when the counts of pads and images differ.
std::vector<int32_t> expand_image_pads(const std::vector<int32_t>& ids,
                                       const std::vector<int64_t>& tokens_per_image,
                                       int32_t image_pad_id = kImagePadId);

// T2I family: tokenizer(template(prompts), max_length 1024 + 34, padding, truncation) -> encoder
// -> extract (drop 34) -> finalize(max_sequence_length in [1, 1024], num_images_per_prompt).
PromptEmbeds encode_prompt_t2i(models::qwenvl::TextEncoder& encoder,
                               const tokenizer::Qwen2Tokenizer& tokenizer,
                               const std::vector<std::string>& prompts,
                               int64_t max_sequence_length = 512,
                               int64_t num_images_per_prompt = 1);

enum class EditTemplate { Edit, EditPlus };

// Edit family, one prompt with its condition images given as processor inputs: pixel_values
// [N, 1176] and image_grid_thw [n_images, 3]. Edit takes exactly one image, Edit-Plus one or more.
// Drops 64 rows; no max_sequence_length slicing (as the reference).
PromptEmbeds encode_prompt_edit(models::qwenvl::TextEncoder& encoder,
                                const tokenizer::Qwen2Tokenizer& tokenizer,
                                const std::string& prompt, const torch::Tensor& pixel_values,
                                const torch::Tensor& image_grid_thw, EditTemplate kind,
                                int64_t num_images_per_prompt = 1);

// Same from the condition images (already resized by the pipeline: ~1 MP for Edit, 384^2 area for
// Edit-Plus), run through the Qwen2-VL image processor first.
PromptEmbeds encode_prompt_edit(models::qwenvl::TextEncoder& encoder,
                                const tokenizer::Qwen2Tokenizer& tokenizer,
                                const std::string& prompt,
                                const std::vector<ImageU8>& condition_images,
                                const VisionProcessorConfig& processor, EditTemplate kind,
                                int64_t num_images_per_prompt = 1);

// The processor step alone: pixel_values float32 [N, 1176] and image_grid_thw int64 [n, 3].
std::pair<torch::Tensor, torch::Tensor> vision_inputs(const std::vector<ImageU8>& images,
                                                      const VisionProcessorConfig& processor);

}  // namespace qwen::pipelines
