// tokenizer_templates: the Qwen-Image prompt templates, the 34/64-token prefixes and the padded
// batch call `tokenizer(texts, max_length=1058, padding=True, truncation=True)`.
#include <gtest/gtest.h>

#include "tokenizer_test_util.h"

namespace qwen::tokenizer::test {
namespace {

const nlohmann::json& inputs() {
  static const auto j = read_json_file(fixture("cases/tokenizer_templates/inputs.json"));
  return j;
}

// Text of a template before its "{}" placeholder.
std::string prefix_of(const std::string& tmpl) { return tmpl.substr(0, tmpl.find("{}")); }

TEST(TokenizerTemplates, EveryCaseMatchesTheReference) {
  const auto& tok = tiny_tokenizer();
  const auto& cases = inputs().at("cases");
  ASSERT_EQ(cases.size(), 12u);
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const auto expected = c.at("input_ids").get<std::vector<int32_t>>();
    const auto ids = tok.encode(c.at("text").get<std::string>());
    EXPECT_EQ(ids, expected) << "case " << i << " (" << c.at("kind") << ", prompt "
                             << c.at("prompt") << ")\n  got      " << ids_to_string(ids)
                             << "\n  expected " << ids_to_string(expected);
    const auto prefix = c.at("template_prefix_ids").get<std::vector<int32_t>>();
    const size_t drop = c.at("drop_idx").get<size_t>();
    ASSERT_EQ(prefix.size(), drop);
    ASSERT_GE(ids.size(), drop);
    EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + static_cast<long>(drop)), prefix)
        << "case " << i;
  }
}

TEST(TokenizerTemplates, T2IPrefixIs34TokensAndEditPrefixIs64) {
  const auto& tok = tiny_tokenizer();
  const auto t2i = tok.encode(prefix_of(inputs().at("t2i_template").get<std::string>()));
  const auto edit = tok.encode(prefix_of(inputs().at("edit_template").get<std::string>()));
  EXPECT_EQ(t2i.size(), 34u);
  EXPECT_EQ(edit.size(), 64u);
  for (const auto& c : inputs().at("cases")) {
    const auto expected = c.at("template_prefix_ids").get<std::vector<int32_t>>();
    EXPECT_EQ(c.at("kind") == "t2i" ? t2i : edit, expected) << c.at("kind");
  }
}

TEST(TokenizerTemplates, PaddedBatchMatchesBatchSafetensors) {
  const auto& tok = tiny_tokenizer();
  const auto texts = inputs().at("batch_texts").get<std::vector<std::string>>();
  ASSERT_EQ(inputs().at("pad_token_id").get<int32_t>(), tok.pad_token_id());
  ASSERT_EQ(inputs().at("padding_side").get<std::string>(), "right");
  const auto t = read_i64_safetensors(fixture("cases/tokenizer_templates/batch.safetensors"));
  const auto& ids = t.at("input_ids");
  const auto& mask = t.at("attention_mask");
  ASSERT_EQ(ids.shape.size(), 2u);
  ASSERT_EQ(ids.shape, mask.shape);
  const auto b = tok.encode_batch(texts, 1058, /*pad=*/true);
  ASSERT_EQ(b.ids.size(), static_cast<size_t>(ids.shape[0]));
  const auto cols = static_cast<size_t>(ids.shape[1]);
  for (size_t r = 0; r < b.ids.size(); ++r) {
    ASSERT_EQ(b.ids[r].size(), cols) << "row " << r;
    ASSERT_EQ(b.attention_mask[r].size(), cols) << "row " << r;
    for (size_t k = 0; k < cols; ++k) {
      EXPECT_EQ(b.ids[r][k], ids.values[r * cols + k]) << "input_ids[" << r << "][" << k << "]";
      EXPECT_EQ(b.attention_mask[r][k], mask.values[r * cols + k])
          << "attention_mask[" << r << "][" << k << "]";
    }
  }
}

TEST(TokenizerTemplates, TruncationCutsTheChatSuffixOnTheRight) {
  const auto& tok = tiny_tokenizer();
  const auto texts = inputs().at("batch_texts").get<std::vector<std::string>>();
  const auto full = tok.encode(texts[0]);
  const auto b = tok.encode_batch(texts, 40, /*pad=*/true);
  for (size_t r = 0; r < texts.size(); ++r) {
    ASSERT_EQ(b.ids[r].size(), 40u);
    EXPECT_EQ(b.attention_mask[r], std::vector<int32_t>(40, 1));
  }
  EXPECT_EQ(b.ids[0], std::vector<int32_t>(full.begin(), full.begin() + 40));
}

}  // namespace
}  // namespace qwen::tokenizer::test
