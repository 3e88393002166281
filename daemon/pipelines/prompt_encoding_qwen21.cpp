#include "pipelines/prompt_encoding_qwen21.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>

#include "image/vision_processor_json.h"
#include "pipelines/prompt_encoding.h"

namespace qwen::pipelines::qwen21 {
namespace {

const char* const kImageBlock = "<|vision_start|><|image_pad|><|vision_end|>";

}  // namespace

std::string prompt_text(const std::string& prompt, size_t n_images) {
  // prompt_template_t2i / prompt_template_ti2i with the image blocks joined by a space.
  std::string images;
  for (size_t i = 0; i < n_images; ++i)
    images += (i ? " <image" : "<image") + std::to_string(i + 1) + ">" + kImageBlock;
  return std::string("<|im_start|>system\n") + kSystemPrompt + "<|im_end|>\n<|im_start|>user\n" +
         images + (prompt.empty() ? std::string(" ") : prompt) +
         "<|im_end|>\n<|im_start|>assistant\n";
}

ImageU8 paste_on_white(const ImageU8& image) {
  if (image.channels != 4 && image.channels != 2) return image;
  const int color = image.channels - 1;
  ImageU8 out(image.width, image.height, 3);
  const size_t n = size_t(image.width) * size_t(image.height);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = image.pixels.data() + i * image.channels;
    const unsigned a = p[color];
    for (int c = 0; c < 3; ++c) {
      const unsigned v = p[color == 3 ? c : 0];
      // Paste.c BLEND(mask, in1, in2) = DIV255(in1 * (255 - mask) + in2 * mask).
      const unsigned t = 255u * (255u - a) + v * a + 128u;
      out.pixels[i * 3 + c] = static_cast<uint8_t>(((t >> 8) + t) >> 8);
    }
  }
  return out;
}

std::pair<torch::Tensor, torch::Tensor> vision_inputs(const std::vector<ImageU8>& images,
                                                      const VisionProcessorConfig& processor) {
  std::vector<ImageU8> flat;
  flat.reserve(images.size());
  for (const auto& im : images) flat.push_back(paste_on_white(im));
  return pipelines::vision_inputs(flat, processor);
}

VisionProcessorConfig default_processor_config() {
  VisionProcessorConfig c;
  c.min_pixels = 65536;
  c.max_pixels = 16777216;
  c.patch_size = 16;
  c.temporal_patch_size = 2;
  c.merge_size = 2;
  c.image_mean = {0.5f, 0.5f, 0.5f};
  c.image_std = {0.5f, 0.5f, 0.5f};
  return c;
}

VisionProcessorConfig processor_config(const std::string& processor_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path dir(processor_dir);
  const fs::path pre = dir / "preprocessor_config.json";
  if (fs::is_regular_file(pre, ec)) return VisionProcessorConfig::from_json_file(pre.string());
  const fs::path proc = dir / "processor_config.json";
  if (!fs::is_regular_file(proc, ec))
    throw ImageError(processor_dir +
                     ": no preprocessor_config.json or processor_config.json (the image processor "
                     "settings of the model's processor/ folder)");
  std::ifstream f(proc);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    throw ImageError(proc.string() + ": malformed JSON: " + e.what());
  }
  auto it = j.is_object() ? j.find("image_processor") : j.end();
  if (!j.is_object() || it == j.end() || !it->is_object())
    throw ImageError(proc.string() + ": no \"image_processor\" object");
  return vision_processor_config_from_json_text(it->dump(), proc.string() + " (image_processor)");
}

TokenBatch tokenize(const tokenizer::Qwen2Tokenizer& tokenizer,
                    const std::vector<std::string>& prompts,
                    const std::vector<int64_t>& tokens_per_image) {
  if (prompts.empty()) throw std::invalid_argument("no prompt given");
  std::vector<std::vector<int32_t>> rows;
  size_t L = 0;
  for (const auto& p : prompts) {
    auto ids = tokenizer.encode(prompt_text(p, tokens_per_image.size()));
    ids = expand_image_pads(ids, tokens_per_image);
    L = std::max(L, ids.size());
    rows.push_back(std::move(ids));
  }
  const int64_t B = static_cast<int64_t>(rows.size());
  const int32_t pad = tokenizer.pad_token_id();
  TokenBatch t;
  t.input_ids = torch::full({B, static_cast<int64_t>(L)}, pad, torch::kInt64);
  t.attention_mask = torch::zeros({B, static_cast<int64_t>(L)}, torch::kInt64);
  auto ids = t.input_ids.accessor<int64_t, 2>();
  auto m = t.attention_mask.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const size_t off = L - rows[b].size();  // left padding, as the pipeline asks the processor
    for (size_t l = 0; l < rows[b].size(); ++l) {
      ids[b][off + l] = rows[b][l];
      m[b][off + l] = 1;
    }
  }
  return t;
}

PromptEncoding encode_prompt(models::qwen3vl::TextEncoder& encoder,
                             const tokenizer::Qwen2Tokenizer& tokenizer,
                             const std::vector<std::string>& prompts,
                             const std::vector<ImageU8>& images,
                             const VisionProcessorConfig& processor,
                             int64_t num_images_per_prompt) {
  if (images.empty())
    return encode_prompt(encoder, tokenizer, prompts, torch::Tensor(), torch::Tensor(),
                         num_images_per_prompt);
  auto [pv, grid] = vision_inputs(images, processor);
  return encode_prompt(encoder, tokenizer, prompts, pv, grid, num_images_per_prompt);
}

PromptEncoding encode_prompt(models::qwen3vl::TextEncoder& encoder,
                             const tokenizer::Qwen2Tokenizer& tokenizer,
                             const std::vector<std::string>& prompts,
                             const torch::Tensor& pixel_values, const torch::Tensor& image_grid_thw,
                             int64_t num_images_per_prompt) {
  if (!pixel_values.defined())
    return encode_prompt(encoder, tokenizer, prompts, models::qwen3vl::VisionFeatures{},
                         torch::Tensor(), num_images_per_prompt);
  return encode_prompt(encoder, tokenizer, prompts,
                       encoder->encode_images(pixel_values, image_grid_thw), image_grid_thw,
                       num_images_per_prompt);
}

PromptEncoding encode_prompt(models::qwen3vl::TextEncoder& encoder,
                             const tokenizer::Qwen2Tokenizer& tokenizer,
                             const std::vector<std::string>& prompts,
                             const models::qwen3vl::VisionFeatures& images,
                             const torch::Tensor& image_grid_thw, int64_t num_images_per_prompt) {
  if (prompts.empty()) throw std::invalid_argument("no prompt given");
  std::vector<int64_t> per_image;
  torch::Tensor grid;
  models::qwen3vl::VisionFeatures feats;
  const int64_t B = static_cast<int64_t>(prompts.size());
  if (images.embeds.defined()) {
    if (!image_grid_thw.defined() || image_grid_thw.dim() != 2 || image_grid_thw.size(1) != 3)
      throw std::invalid_argument("image_grid_thw must be [n_images, 3]");
    auto g = image_grid_thw.to(torch::kCPU, torch::kInt64).contiguous();
    const int64_t unit = encoder->config().vision.merge_unit();
    for (int64_t i = 0; i < g.size(0); ++i) {
      const int64_t patches = g[i].prod().item<int64_t>();
      if (patches <= 0 || patches % unit != 0)
        throw std::invalid_argument("reference image " + std::to_string(i) + ": invalid grid");
      per_image.push_back(patches / unit);
    }
    // The processor gets one set of images per prompt, in placeholder order; the tower's output
    // for the set is computed once and repeated (the same rows, up to float rounding).
    grid = g.repeat({B, 1});
    feats = models::qwen3vl::repeat_features(images, B);
  }
  auto batch = tokenize(tokenizer, prompts, per_image);
  const auto dev = encoder->device();
  auto ids = batch.input_ids.to(dev);
  auto mask = batch.attention_mask.to(dev);
  torch::NoGradGuard no_grad;
  auto out = encoder->forward(ids, mask, feats, grid);
  PromptEmbeds pe = extract_prompt_embeds(out.hidden, mask, kDropIdx);
  PromptEncoding r;
  // image_pad_mask: the same compaction of (ids == <|image_pad|>), zero-padded.
  const int64_t image_pad = encoder->config().image_token_id;
  auto pads = (ids == image_pad).to(torch::kFloat32).unsqueeze(-1);
  r.image_pad_mask =
      extract_prompt_embeds(pads, mask, kDropIdx).embeds.squeeze(-1).to(torch::kBool);
  pe = finalize_prompt_embeds(std::move(pe), std::nullopt, num_images_per_prompt);
  r.embeds = pe.embeds;
  r.mask = pe.mask;
  return r;
}

}  // namespace qwen::pipelines::qwen21
