// tokenizer_corpus: Qwen2Tokenizer.encode (no specials added) on 320 strings, exact ids.
#include <gtest/gtest.h>

#include "tokenizer/unicode.h"
#include "tokenizer_test_util.h"

namespace qwen::tokenizer::test {
namespace {

struct Corpus {
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> expected;
};

const Corpus& corpus() {
  static const Corpus c = [] {
    Corpus r;
    const auto inputs = read_json_file(fixture("cases/tokenizer_corpus/inputs.json"));
    const auto expected = read_json_file(fixture("cases/tokenizer_corpus/expected.json"));
    r.texts = inputs.at("texts").get<std::vector<std::string>>();
    r.expected = expected.at("input_ids").get<std::vector<std::vector<int32_t>>>();
    return r;
  }();
  return c;
}

TEST(TokenizerCorpus, FixtureHas320Strings) {
  EXPECT_EQ(corpus().texts.size(), 320u);
  EXPECT_EQ(corpus().expected.size(), corpus().texts.size());
}

TEST(TokenizerCorpus, EveryStringMatchesTheReferenceExactly) {
  const auto& tok = tiny_tokenizer();
  const auto& c = corpus();
  size_t failures = 0;
  for (size_t i = 0; i < c.texts.size(); ++i) {
    const auto ids = tok.encode(c.texts[i]);
    if (ids != c.expected[i]) {
      ++failures;
      ADD_FAILURE() << "corpus string #" << i << " \"" << c.texts[i] << "\"\n  got      "
                    << ids_to_string(ids) << "\n  expected " << ids_to_string(c.expected[i]);
    }
  }
  EXPECT_EQ(failures, 0u);
}

TEST(TokenizerCorpus, ColdAndWarmCacheGiveTheSameIds) {
  const auto& tok = tiny_tokenizer();
  const auto& c = corpus();
  tok.clear_cache();
  for (size_t i = 0; i < c.texts.size(); ++i) {
    ASSERT_EQ(tok.encode(c.texts[i]), c.expected[i]) << "cold cache, string #" << i;
  }
  for (size_t i = 0; i < c.texts.size(); ++i) {
    ASSERT_EQ(tok.encode(c.texts[i]), c.expected[i]) << "warm cache, string #" << i;
  }
}

TEST(TokenizerCorpus, DecodeOfTheExpectedIdsIsTheNfcText) {
  const auto& tok = tiny_tokenizer();
  const auto& c = corpus();
  for (size_t i = 0; i < c.texts.size(); ++i) {
    EXPECT_EQ(tok.decode(c.expected[i]), nfc(c.texts[i])) << "corpus string #" << i;
  }
}

TEST(TokenizerCorpus, BatchOfTheWholeCorpusMatchesRowByRow) {
  const auto& tok = tiny_tokenizer();
  const auto& c = corpus();
  const auto b = tok.encode_batch(c.texts, std::nullopt, /*pad=*/false);
  ASSERT_EQ(b.ids.size(), c.texts.size());
  for (size_t i = 0; i < c.texts.size(); ++i) {
    EXPECT_EQ(b.ids[i], c.expected[i]) << "row " << i;
    EXPECT_EQ(b.attention_mask[i], std::vector<int32_t>(c.expected[i].size(), 1)) << "row " << i;
  }
}

}  // namespace
}  // namespace qwen::tokenizer::test
