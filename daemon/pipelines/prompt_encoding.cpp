#include "pipelines/prompt_encoding.h"

#include <stdexcept>
#include <string>

#include "pipelines/vision_resize.h"

namespace qwen::pipelines {
namespace {

const char* const kT2ITemplatePrefix =
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, "
    "quantity, text, spatial relationships of the objects and background:<|im_end|>\n"
    "<|im_start|>user\n";
const char* const kEditTemplatePrefix =
    "<|im_start|>system\nDescribe the key features of the input image (color, shape, size, "
    "texture, objects, background), then explain how the user's text instruction should alter or "
    "modify the image. Generate a new image that meets the user's requirements while maintaining "
    "consistency with the original input where appropriate.<|im_end|>\n<|im_start|>user\n";
const char* const kTemplateSuffix = "<|im_end|>\n<|im_start|>assistant\n";
const char* const kImageBlock = "<|vision_start|><|image_pad|><|vision_end|>";

torch::Tensor ids_tensor(const std::vector<std::vector<int32_t>>& rows) {
  const int64_t B = static_cast<int64_t>(rows.size());
  const int64_t L = B ? static_cast<int64_t>(rows[0].size()) : 0;
  auto t = torch::empty({B, L}, torch::kInt64);
  auto a = t.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    if (static_cast<int64_t>(rows[b].size()) != L)
      throw std::logic_error("tokenizer returned rows of different lengths despite padding");
    for (int64_t l = 0; l < L; ++l) a[b][l] = rows[b][l];
  }
  return t;
}

void check_images_per_prompt(int64_t n) {
  if (n < 1)
    throw std::invalid_argument("num_images_per_prompt must be >= 1, got " + std::to_string(n));
}

}  // namespace

std::string t2i_prompt_text(const std::string& prompt) {
  return std::string(kT2ITemplatePrefix) + prompt + kTemplateSuffix;
}

std::string edit_prompt_text(const std::string& prompt) {
  return std::string(kEditTemplatePrefix) + kImageBlock + prompt + kTemplateSuffix;
}

std::string edit_plus_prompt_text(const std::string& prompt, size_t n_images) {
  std::string images;
  for (size_t i = 0; i < n_images; ++i)
    images += "Picture " + std::to_string(i + 1) + ": " + kImageBlock;
  return std::string(kEditTemplatePrefix) + images + prompt + kTemplateSuffix;
}

PromptEmbeds extract_prompt_embeds(const torch::Tensor& hidden, const torch::Tensor& attention_mask,
                                   int64_t drop_idx) {
  if (!hidden.defined() || hidden.dim() != 3)
    throw std::invalid_argument("hidden states must be [batch, length, hidden]");
  if (!attention_mask.defined() || attention_mask.dim() != 2 ||
      attention_mask.size(0) != hidden.size(0) || attention_mask.size(1) != hidden.size(1))
    throw std::invalid_argument("attention_mask must be [batch, length] like the hidden states");
  if (drop_idx < 0) throw std::invalid_argument("drop_idx must be >= 0");
  const int64_t B = hidden.size(0), H = hidden.size(2);
  auto valid = attention_mask.to(hidden.device()).to(torch::kBool);
  std::vector<torch::Tensor> rows;
  int64_t S = 0;
  for (int64_t b = 0; b < B; ++b) {
    auto r = hidden[b].index({valid[b]});  // compacted valid rows, in order
    const int64_t n = r.size(0);
    r = r.narrow(0, std::min(drop_idx, n), n - std::min(drop_idx, n));
    S = std::max(S, r.size(0));
    rows.push_back(r);
  }
  if (S == 0)
    throw std::invalid_argument("the prompt holds no tokens after the " + std::to_string(drop_idx) +
                                "-token template prefix");
  PromptEmbeds out;
  out.embeds = torch::zeros({B, S, H}, hidden.options());
  out.mask =
      torch::zeros({B, S}, torch::TensorOptions().dtype(torch::kInt64).device(hidden.device()));
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = rows[b].size(0);
    if (n == 0) continue;
    out.embeds[b].narrow(0, 0, n).copy_(rows[b]);
    out.mask[b].narrow(0, 0, n).fill_(1);
  }
  return out;
}

PromptEmbeds finalize_prompt_embeds(PromptEmbeds pe, std::optional<int64_t> max_sequence_length,
                                    int64_t num_images_per_prompt) {
  check_images_per_prompt(num_images_per_prompt);
  if (max_sequence_length) {
    if (*max_sequence_length < 1) throw std::invalid_argument("max_sequence_length must be >= 1");
    const int64_t s = std::min(*max_sequence_length, pe.embeds.size(1));
    pe.embeds = pe.embeds.narrow(1, 0, s);
    if (pe.mask.defined()) pe.mask = pe.mask.narrow(1, 0, s);
  }
  if (num_images_per_prompt > 1) {
    pe.embeds = pe.embeds.repeat_interleave(num_images_per_prompt, 0);
    if (pe.mask.defined()) pe.mask = pe.mask.repeat_interleave(num_images_per_prompt, 0);
  }
  pe.embeds = pe.embeds.contiguous();
  if (pe.mask.defined()) {
    pe.mask = pe.mask.contiguous();
    if (pe.mask.all().item<bool>()) pe.mask = torch::Tensor();
  }
  return pe;
}

std::vector<int32_t> expand_image_pads(const std::vector<int32_t>& ids,
                                       const std::vector<int64_t>& tokens_per_image,
                                       int32_t image_pad_id) {
  std::vector<int32_t> out;
  size_t k = 0;
  size_t pads = 0;
  for (int32_t id : ids)
    if (id == image_pad_id) ++pads;
  if (pads != tokens_per_image.size())
    throw std::invalid_argument(
        "the prompt holds " + std::to_string(pads) + " <|image_pad|> tokens but " +
        std::to_string(tokens_per_image.size()) +
        " images were given (a prompt must not contain the text <|image_pad|> itself)");
  for (int32_t id : ids) {
    if (id != image_pad_id) {
      out.push_back(id);
      continue;
    }
    out.insert(out.end(), static_cast<size_t>(tokens_per_image[k++]), image_pad_id);
  }
  return out;
}

PromptEmbeds encode_prompt_t2i(models::qwenvl::TextEncoder& encoder,
                               const tokenizer::Qwen2Tokenizer& tokenizer,
                               const std::vector<std::string>& prompts, int64_t max_sequence_length,
                               int64_t num_images_per_prompt) {
  if (prompts.empty()) throw std::invalid_argument("no prompt given");
  if (max_sequence_length < 1 || max_sequence_length > kTokenizerMaxLength)
    throw std::invalid_argument("max_sequence_length must be in [1, " +
                                std::to_string(kTokenizerMaxLength) + "], got " +
                                std::to_string(max_sequence_length));
  check_images_per_prompt(num_images_per_prompt);
  std::vector<std::string> texts;
  for (const auto& p : prompts) texts.push_back(t2i_prompt_text(p));
  auto batch = tokenizer.encode_batch(texts, kTokenizerMaxLength + kT2IDropIdx, /*pad=*/true);
  const auto dev = encoder->device();
  auto ids = ids_tensor(batch.ids).to(dev);
  auto mask = ids_tensor(batch.attention_mask).to(dev);
  torch::NoGradGuard no_grad;
  auto out = encoder->forward(ids, mask);
  auto pe = extract_prompt_embeds(out.last_hidden_state, mask, kT2IDropIdx);
  return finalize_prompt_embeds(std::move(pe), max_sequence_length, num_images_per_prompt);
}

PromptEmbeds encode_prompt_edit(models::qwenvl::TextEncoder& encoder,
                                const tokenizer::Qwen2Tokenizer& tokenizer,
                                const std::string& prompt, const torch::Tensor& pixel_values,
                                const torch::Tensor& image_grid_thw, EditTemplate kind,
                                int64_t num_images_per_prompt) {
  check_images_per_prompt(num_images_per_prompt);
  if (!image_grid_thw.defined() || image_grid_thw.dim() != 2 || image_grid_thw.size(1) != 3)
    throw std::invalid_argument("image_grid_thw must be [n_images, 3]");
  const int64_t n_images = image_grid_thw.size(0);
  if (kind == EditTemplate::Edit && n_images != 1)
    throw std::invalid_argument("the Edit template takes exactly one image, got " +
                                std::to_string(n_images) + " (use Edit-Plus for several)");
  if (n_images < 1) throw std::invalid_argument("editing needs at least one image");
  const std::string text = kind == EditTemplate::Edit
                               ? edit_prompt_text(prompt)
                               : edit_plus_prompt_text(prompt, static_cast<size_t>(n_images));
  auto grid = image_grid_thw.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t unit = encoder->config().vision.merge_unit();
  std::vector<int64_t> per_image;
  for (int64_t i = 0; i < n_images; ++i) {
    const int64_t patches = grid[i].prod().item<int64_t>();
    if (patches <= 0 || patches % unit != 0)
      throw std::invalid_argument("image " + std::to_string(i) + ": invalid grid");
    per_image.push_back(patches / unit);
  }
  auto ids = expand_image_pads(tokenizer.encode(text), per_image);
  const auto dev = encoder->device();
  auto ids_t = ids_tensor({ids}).to(dev);
  auto mask = torch::ones_like(ids_t);
  torch::NoGradGuard no_grad;
  auto out = encoder->forward(ids_t, mask, pixel_values, image_grid_thw);
  auto pe = extract_prompt_embeds(out.last_hidden_state, mask, kEditDropIdx);
  return finalize_prompt_embeds(std::move(pe), std::nullopt, num_images_per_prompt);
}

std::pair<torch::Tensor, torch::Tensor> vision_inputs(const std::vector<ImageU8>& images,
                                                      const VisionProcessorConfig& processor) {
  if (images.empty()) throw std::invalid_argument("editing needs at least one image");
  // The Torchvision backend resizes with torch's uint8 kernel (pipelines/vision_resize.h).
  VisionPatches p = preprocess_vision(images, processor, torchvision_resizer());
  auto pv = torch::from_blob(p.pixel_values.data(), {p.rows, p.row_width}, torch::kFloat32).clone();
  auto grid = torch::empty({static_cast<int64_t>(p.grid_thw.size()), 3}, torch::kInt64);
  for (size_t i = 0; i < p.grid_thw.size(); ++i)
    for (int j = 0; j < 3; ++j) grid[static_cast<int64_t>(i)][j] = p.grid_thw[i][j];
  return {pv, grid};
}

PromptEmbeds encode_prompt_edit(models::qwenvl::TextEncoder& encoder,
                                const tokenizer::Qwen2Tokenizer& tokenizer,
                                const std::string& prompt,
                                const std::vector<ImageU8>& condition_images,
                                const VisionProcessorConfig& processor, EditTemplate kind,
                                int64_t num_images_per_prompt) {
  auto [pv, grid] = vision_inputs(condition_images, processor);
  return encode_prompt_edit(encoder, tokenizer, prompt, pv, grid, kind, num_images_per_prompt);
}

}  // namespace qwen::pipelines
