// The test vectors of spec text-encoder-and-vae.md §1.6, the split regex, added tokens, decoding
// and bad input.
#include <gtest/gtest.h>

#include <thread>

#include "tokenizer/pretokenizer.h"
#include "tokenizer/unicode.h"
#include "tokenizer_test_util.h"

namespace qwen::tokenizer::test {
namespace {

using Ids = std::vector<int32_t>;
using Words = std::vector<std::string_view>;

Words split(std::string_view s) {
  Words w;
  pretokenize(s, w);
  return w;
}

TEST(TokenizerSpec, Section16Vectors) {
  const auto& tok = tiny_tokenizer();
  EXPECT_EQ(tok.encode("A cat holding a sign that says hello world"),
            (Ids{32, 8251, 9963, 264, 1841, 429, 2727, 23811, 1879}));
  EXPECT_EQ(tok.encode("Picture 1: <|vision_start|><|image_pad|><|vision_end|>"),
            (Ids{24669, 220, 16, 25, 220, 151652, 151655, 151653}));
  EXPECT_EQ(tok.encode("123 dogs"), (Ids{16, 17, 18, 12590}));
  EXPECT_EQ(tok.encode("Hello   world  "), (Ids{9707, 256, 1879, 256}));
  EXPECT_EQ(tok.encode(" "), (Ids{220}));
  EXPECT_EQ(tok.encode("Hello world"), (Ids{9707, 1879}));
  EXPECT_EQ(tok.encode(" Hello world"), (Ids{21927, 1879}));
  EXPECT_EQ(tok.encode("<|im_end|>\n<|im_start|>assistant\n"),
            (Ids{151645, 198, 151644, 77091, 198}));
  EXPECT_EQ(tok.encode(""), Ids{});
}

TEST(TokenizerSpec, Section16PrefixesAre34And64Ids) {
  const auto& tok = tiny_tokenizer();
  const Ids t2i{151644, 8948, 198, 74785, 279, 2168,   553, 44193,  279, 1894,  11,    6083,
                11,     1379, 11,  10434, 11,  12194,  11,  1467,   11,  27979, 11871, 315,
                279,    6171, 323, 4004,  25,  151645, 198, 151644, 872, 198};
  ASSERT_EQ(t2i.size(), 34u);
  EXPECT_EQ(tok.encode("<|im_start|>system\nDescribe the image by detailing the color, shape, "
                       "size, texture, quantity, text, spatial relationships of the objects and "
                       "background:<|im_end|>\n<|im_start|>user\n"),
            t2i);
  const Ids edit{151644, 8948, 198,  74785, 279,    1376, 4419,   315,   279,  1946, 2168,
                 320,    3423, 11,   6083,  11,     1379, 11,     10434, 11,   6171, 11,
                 4004,   701,  1221, 10339, 1246,   279,  1196,   594,   1467, 7600, 1265,
                 11596,  476,  5602, 279,   2168,   13,   19813,  264,   501,  2168, 429,
                 20027,  279,  1196, 594,   8502,   1393, 20337,  28137, 448,  279,  4024,
                 1946,   1380, 8311, 13,    151645, 198,  151644, 872,   198};
  ASSERT_EQ(edit.size(), 64u);
  EXPECT_EQ(tok.encode("<|im_start|>system\nDescribe the key features of the input image (color, "
                       "shape, size, texture, objects, background), then explain how the user's "
                       "text instruction should alter or modify the image. Generate a new image "
                       "that meets the user's requirements while maintaining consistency with "
                       "the original input where appropriate.<|im_end|>\n<|im_start|>user\n"),
            edit);
}

TEST(TokenizerSpec, PromptStartingWithNewlineMergesWithTheTemplateNewline) {
  // Replicated, not fixed: "user\n" + "\nhello" gives ĊĊ (271), so the prefix is 33 ids.
  const auto& tok = tiny_tokenizer();
  const std::string prefix =
      "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, "
      "quantity, text, spatial relationships of the objects and background:<|im_end|>\n"
      "<|im_start|>user\n";
  const auto ids = tok.encode(prefix + "\nhello<|im_end|>\n<|im_start|>assistant\n");
  const auto p = tok.encode(prefix);
  ASSERT_GE(ids.size(), 35u);
  EXPECT_EQ(Ids(ids.begin(), ids.begin() + 33), Ids(p.begin(), p.begin() + 33));
  EXPECT_EQ(Ids(ids.begin() + 31, ids.begin() + 35), (Ids{151644, 872, 271, 14990}));
  EXPECT_EQ(tok.encode("\nhello"), (Ids{198, 14990}));
}

TEST(TokenizerSplit, WhitespaceRunGivesItsLastSpaceToTheNextWord) {
  EXPECT_EQ(split("Hello   world  "), (Words{"Hello", "  ", " world", "  "}));
  EXPECT_EQ(split("x  \t y"), (Words{"x", "  \t", " y"}));
  EXPECT_EQ(split("a b"), (Words{"a", " b"}));
  EXPECT_EQ(split("a \t"), (Words{"a", " \t"}));
  EXPECT_EQ(split("   "), (Words{"   "}));
  EXPECT_EQ(split("a \u3000b"), (Words{"a", " ", "\u3000b"}));  // U+3000 is \s, then A2
}

TEST(TokenizerSplit, NewlinesEndAtTheLastNewlineOfTheRun) {
  EXPECT_EQ(split("a\n\n b"), (Words{"a", "\n\n", " b"}));
  EXPECT_EQ(split("x \t\ny"), (Words{"x", " \t\n", "y"}));
  EXPECT_EQ(split(" \n \n "), (Words{" \n \n", " "}));
  EXPECT_EQ(split("a\r\n"), (Words{"a", "\r\n"}));
  EXPECT_EQ(split("!!!\n\n???"), (Words{"!!!\n\n", "???"}));
  EXPECT_EQ(split("\nhello"), (Words{"\n", "hello"}));
}

TEST(TokenizerSplit, LettersNumbersPunctuation) {
  EXPECT_EQ(split("123"), (Words{"1", "2", "3"}));
  EXPECT_EQ(split("v2.5"), (Words{"v", "2", ".", "5"}));
  EXPECT_EQ(split(" ?!"), (Words{" ?!"}));
  EXPECT_EQ(split("\xC2\xA0x"), (Words{"\xC2\xA0x"}));  // NBSP + letter (A2)
  EXPECT_EQ(split("\tfoo"), (Words{"\tfoo"}));
  EXPECT_EQ(split("\nfoo"), (Words{"\n", "foo"}));  // \n is excluded from A2's prefix
  EXPECT_EQ(split("\xE4\xB8\x80\xE4\xBA\x8C!"), (Words{"\xE4\xB8\x80\xE4\xBA\x8C", "!"}));
  EXPECT_EQ(split("\xD9\xA3\xD9\xA4"), (Words{"\xD9\xA3", "\xD9\xA4"}));  // Arabic-Indic digits
}

TEST(TokenizerSplit, ContractionsAreCaseInsensitive) {
  EXPECT_EQ(split("don't"), (Words{"don", "'t"}));
  EXPECT_EQ(split("DON'T"), (Words{"DON", "'T"}));
  EXPECT_EQ(split("we'LL"), (Words{"we", "'LL"}));
  EXPECT_EQ(split("'sa"), (Words{"'s", "a"}));
  EXPECT_EQ(split("'\xC5\xBF"
                  "a"),
            (Words{"'\xC5\xBF", "a"}));  // U+017F long s folds to s
  EXPECT_EQ(split("'x"), (Words{"'x"}));
  EXPECT_EQ(split("''"), (Words{"''"}));
}

TEST(TokenizerSpec, ContractionWithLongSMatchesTheReference) {
  // transformers 4.57.3, slow and fast: "'ſa" -> ["'", "Å¿", "a"] (pre-token "'ſ" then "a").
  EXPECT_EQ(tiny_tokenizer().encode("'\xC5\xBF"
                                    "a"),
            (Ids{6, 144815, 64}));
  EXPECT_EQ(tiny_tokenizer().encode("'Sa"), (Ids{13272, 64}));
}

TEST(TokenizerSpec, NfcIsAppliedBeforeAddedTokensLikeTheSlowReference) {
  const auto& tok = tiny_tokenizer();
  // e + combining acute -> é
  EXPECT_EQ(tok.encode("Cafe\xCC\x81"), tok.encode("Caf\xC3\xA9"));
  // '>' + U+0338 composes to U+226F, so the slow Qwen2Tokenizer no longer sees <|im_end|>.
  EXPECT_EQ(tok.encode("<|im_end|>\xCC\xB8"), (Ids{27, 91, 318, 6213, 91, 58994, 107}));
}

TEST(TokenizerUnicode, NfcComposesReordersAndKeepsCompatibilityCharacters) {
  EXPECT_EQ(nfc("\xEF\xAC\x81"), "\xEF\xAC\x81");  // U+FB01 ligature: NFC keeps it
  EXPECT_EQ(nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");  // L V T jamo -> U+AC01
  EXPECT_EQ(nfc("\xEA\xB0\x80\xE1\x86\xA8"), "\xEA\xB0\x81");              // LV + T -> LVT
  EXPECT_EQ(nfc("\xE2\x84\xAB"), "\xC3\x85");                              // U+212B -> U+00C5
  EXPECT_EQ(nfc("a\xCC\x81\xCC\x96"), "\xC3\xA1\xCC\x96");     // reorder by class, then compose
  EXPECT_EQ(nfc("\xE3\x81\x8B\xE3\x82\x99"), "\xE3\x81\x8C");  // か + voiced mark -> が
  EXPECT_EQ(nfc("\xEF\xBC\x8C\xE3\x80\x82"), "\xEF\xBC\x8C\xE3\x80\x82");  // fullwidth punctuation
  EXPECT_EQ(nfc("plain ASCII"), "plain ASCII");
}

TEST(TokenizerSpec, AddedTokensAreCaseSensitiveAndNeedTheWholeString) {
  const auto& tok = tiny_tokenizer();
  EXPECT_EQ(tok.encode("<|im_start|><|im_end|>"), (Ids{151644, 151645}));
  EXPECT_EQ(tok.encode("<tool_call>x</tool_call>")[0], 151657);
  const auto upper = tok.encode("<|IM_START|>");
  EXPECT_EQ(std::count(upper.begin(), upper.end(), 151644), 0);
  const auto partial = tok.encode("<|im_start|user");
  EXPECT_EQ(std::count(partial.begin(), partial.end(), 151644), 0);
  // No whitespace is eaten around them.
  EXPECT_EQ(tok.encode(" <|im_end|> "), (Ids{220, 151645, 220}));
}

TEST(TokenizerSpec, InvalidUtf8IsAnErrorWithTheByteOffset) {
  const auto& tok = tiny_tokenizer();
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"\xFF", "offset 0"},
      {"ab\xC3", "offset 2"},            // truncated
      {"ok \xC0\xAF", "offset 3"},       // overlong
      {"x\xED\xA0\x80", "offset 1"},     // surrogate
      {"\xF4\x90\x80\x80", "offset 0"},  // above U+10FFFF
      {"abc\x80", "offset 3"},           // stray continuation byte
  };
  for (const auto& [text, where] : bad) {
    try {
      tok.encode(text);
      ADD_FAILURE() << "no error for invalid UTF-8 (expected " << where << ")";
    } catch (const TokenizerError& e) {
      EXPECT_NE(std::string(e.what()).find("invalid UTF-8"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(where), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(tok.encode_batch({"fine", "\xFF"}), TokenizerError);
}

TEST(TokenizerSpec, EmbeddedNulAndControlCharactersAreTokens) {
  const auto& tok = tiny_tokenizer();
  const std::string nul("a\0b", 3);
  const auto ids = tok.encode(nul);
  EXPECT_EQ(tok.decode(ids), nul);
  EXPECT_EQ(tok.encode(std::string(1, '\0')), (Ids{188}));  // byte 0 = id 188 (spec §1.3)
}

TEST(TokenizerDecode, ConcatenatesAndReplacesBrokenUtf8) {
  const auto& tok = tiny_tokenizer();
  EXPECT_EQ(tok.decode({}), "");
  EXPECT_EQ(tok.decode({9707, 1879}), "Hello world");
  EXPECT_EQ(tok.decode({151644, 9707, 151645, 151657}), "<|im_start|>Hello<|im_end|><tool_call>");
  // Special tokens are dropped on request; <tool_call> is not special.
  EXPECT_EQ(tok.decode({151644, 9707, 151645, 151657}, true), "Hello<tool_call>");
  // A lone lead byte and a truncated sequence each become one U+FFFD (Python errors="replace").
  const int32_t e4 = *tok.token_to_id("\xC3\xA4");  // symbol of byte 0xE4
  const int32_t b8 = *tok.token_to_id("\xC2\xB8");  // symbol of byte 0xB8
  EXPECT_EQ(tok.decode({e4}), "\xEF\xBF\xBD");
  EXPECT_EQ(tok.decode({e4, b8}), "\xEF\xBF\xBD");
  EXPECT_EQ(tok.decode({e4, b8, 9707}), "\xEF\xBF\xBDHello");
  EXPECT_EQ(tok.decode({e4, 151645, b8}), "\xEF\xBF\xBD<|im_end|>\xEF\xBF\xBD");
}

TEST(TokenizerDecode, UnknownIdsAreErrors) {
  const auto& tok = tiny_tokenizer();
  EXPECT_THROW(tok.decode({9707, 999999}), TokenizerError);
  EXPECT_THROW(tok.decode({-1}), TokenizerError);
  EXPECT_THROW(tok.id_to_token(151665), TokenizerError);
}

TEST(TokenizerVocab, SizesAndLookups) {
  const auto& tok = tiny_tokenizer();
  EXPECT_EQ(tok.vocab_size(), 151665u);
  EXPECT_EQ(tok.num_merges(), 151387u);
  EXPECT_EQ(tok.added_tokens().size(), 22u);
  EXPECT_EQ(tok.pad_token_id(), 151643);
  EXPECT_EQ(tok.eos_token_id(), 151645);
  EXPECT_EQ(tok.id_to_token(0), "!");
  EXPECT_EQ(tok.id_to_token(188), "\xC4\x80");  // Ā = byte 0
  EXPECT_EQ(tok.id_to_token(220), "\xC4\xA0");  // Ġ = space
  EXPECT_EQ(tok.id_to_token(151655), "<|image_pad|>");
  EXPECT_EQ(tok.token_to_id("<|vision_start|>"), 151652);
  EXPECT_EQ(tok.token_to_id("no such token"), std::nullopt);
  for (const auto& a : tok.added_tokens()) {
    EXPECT_EQ(a.special, a.id <= 151656) << a.content;
  }
}

TEST(TokenizerBatch, PaddingTruncationAndMasks) {
  const auto& tok = tiny_tokenizer();
  const std::vector<std::string> texts = {"Hello world", "123 dogs", ""};
  const auto b = tok.encode_batch(texts);
  ASSERT_EQ(b.ids.size(), 3u);
  EXPECT_EQ(b.ids[0], (Ids{9707, 1879, 151643, 151643}));
  EXPECT_EQ(b.attention_mask[0], (Ids{1, 1, 0, 0}));
  EXPECT_EQ(b.ids[1], (Ids{16, 17, 18, 12590}));
  EXPECT_EQ(b.attention_mask[1], (Ids{1, 1, 1, 1}));
  EXPECT_EQ(b.ids[2], (Ids(4, 151643)));
  EXPECT_EQ(b.attention_mask[2], (Ids(4, 0)));
  EXPECT_EQ(b.max_row_length(), 4u);

  const auto t = tok.encode_batch(texts, 3, true);
  EXPECT_EQ(t.ids[0], (Ids{9707, 1879, 151643}));
  EXPECT_EQ(t.ids[1], (Ids{16, 17, 18}));
  EXPECT_EQ(t.attention_mask[1], (Ids{1, 1, 1}));

  const auto u = tok.encode_batch(texts, std::nullopt, false);
  EXPECT_EQ(u.ids[0], (Ids{9707, 1879}));
  EXPECT_EQ(u.ids[2], Ids{});
  EXPECT_TRUE(tok.encode_batch({}).ids.empty());
}

TEST(TokenizerThreads, ConcurrentEncodingGivesTheSameIds) {
  const auto& tok = tiny_tokenizer();
  const auto inputs = read_json_file(fixture("cases/tokenizer_corpus/inputs.json"));
  const auto expected = read_json_file(fixture("cases/tokenizer_corpus/expected.json"));
  const auto texts = inputs.at("texts").get<std::vector<std::string>>();
  const auto ids = expected.at("input_ids").get<std::vector<Ids>>();
  tok.clear_cache();
  std::vector<int> bad(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep) {
        for (size_t i = 0; i < texts.size(); ++i) {
          const size_t k = (i * 7 + static_cast<size_t>(t) * 31) % texts.size();
          if (tok.encode(texts[k]) != ids[k]) ++bad[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad, std::vector<int>(4, 0));
}

}  // namespace
}  // namespace qwen::tokenizer::test
