// Loading: tokenizer.json (built here from the fixture files), folder layouts, a synthetic
// vocabulary for the merge loop, and clear errors on missing or malformed files.
#include <gtest/gtest.h>

#include <filesystem>

#include "tokenizer/byte_level.h"
#include "tokenizer_test_util.h"

namespace qwen::tokenizer::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Ids = std::vector<int32_t>;

const char* kPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The added tokens of the tiny model's tokenizer_config.json in tokenizer.json form.
json added_tokens_list() {
  const auto cfg = read_json_file(tiny_tokenizer_dir() + "/tokenizer_config.json");
  json list = json::array();
  for (auto it = cfg.at("added_tokens_decoder").begin(); it != cfg.at("added_tokens_decoder").end();
       ++it) {
    json t = it.value();
    t["id"] = std::stoi(it.key());
    list.push_back(t);
  }
  return list;
}

json qwen_tokenizer_json(bool merges_as_pairs) {
  json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = added_tokens_list();
  j["normalizer"] = {{"type", "NFC"}};
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", json::array({{{"type", "Split"},
                                                        {"pattern", {{"Regex", kPattern}}},
                                                        {"behavior", "Isolated"},
                                                        {"invert", false}},
                                                       {{"type", "ByteLevel"},
                                                        {"add_prefix_space", false},
                                                        {"trim_offsets", true},
                                                        {"use_regex", false}}})}};
  // As transformers' converter writes them (Qwen2TokenizerFast.save_pretrained); the prefix-space
  // flags of the post-processor and decoder do not change the ids.
  j["post_processor"] = {{"type", "ByteLevel"},
                         {"add_prefix_space", true},
                         {"trim_offsets", false},
                         {"use_regex", true}};
  j["decoder"] = {{"type", "ByteLevel"},
                  {"add_prefix_space", true},
                  {"trim_offsets", true},
                  {"use_regex", true}};
  json merges = json::array();
  const std::string text = read_file(tiny_tokenizer_dir() + "/merges.txt");
  size_t pos = text.find('\n') + 1;  // skip "#version: 0.2"
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) continue;
    const size_t sp = line.find(' ');
    if (merges_as_pairs) {
      merges.push_back(json::array({line.substr(0, sp), line.substr(sp + 1)}));
    } else {
      merges.push_back(line);
    }
  }
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", ""},
                {"end_of_word_suffix", ""},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", read_json_file(tiny_tokenizer_dir() + "/vocab.json")},
                {"merges", merges}};
  return j;
}

void expect_corpus(const Qwen2Tokenizer& tok) {
  const auto texts = read_json_file(fixture("cases/tokenizer_corpus/inputs.json"))
                         .at("texts")
                         .get<std::vector<std::string>>();
  const auto ids = read_json_file(fixture("cases/tokenizer_corpus/expected.json"))
                       .at("input_ids")
                       .get<std::vector<Ids>>();
  size_t bad = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    if (tok.encode(texts[i]) != ids[i]) {
      ++bad;
      ADD_FAILURE() << "corpus string #" << i << " differs";
    }
  }
  EXPECT_EQ(bad, 0u);
}

TEST(TokenizerJson, MergesAsStringsReproduceTheCorpus) {
  const std::string dir = temp_dir("tj_strings");
  write_file(dir + "/tokenizer.json", qwen_tokenizer_json(false).dump());
  const auto tok = Qwen2Tokenizer::load_tokenizer_json(dir + "/tokenizer.json");
  EXPECT_EQ(tok.vocab_size(), 151665u);
  EXPECT_EQ(tok.pad_token_id(), 151643);  // <|endoftext|> by default
  expect_corpus(tok);
}

TEST(TokenizerJson, FolderWithOnlyTokenizerJsonAndConfig) {
  // The layout of the edit repos' processor/ folder: merges stored as pairs.
  const std::string dir = temp_dir("tj_pairs");
  write_file(dir + "/tokenizer.json", qwen_tokenizer_json(true).dump());
  fs::copy_file(tiny_tokenizer_dir() + "/tokenizer_config.json", dir + "/tokenizer_config.json");
  const auto tok = Qwen2Tokenizer::load(dir);
  EXPECT_NE(tok.source().find("tokenizer.json"), std::string::npos) << tok.source();
  EXPECT_EQ(tok.eos_token_id(), 151645);
  EXPECT_EQ(tok.num_merges(), 151387u);
  expect_corpus(tok);
}

// ---------------------------------------------------------------- synthetic vocabularies

// A folder with the 256 byte symbols (ids 0..255 in byte order) plus one token per merge.
std::string synthetic_folder(const std::string& name,
                             const std::vector<std::pair<std::string, std::string>>& merges,
                             const json& config = json()) {
  const std::string dir = temp_dir(name);
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[bytes_to_symbols(std::string(1, static_cast<char>(b)))] = b;
  std::string m = "#version: 0.2\n";
  int next = 256;
  for (const auto& [l, r] : merges) {
    if (!vocab.contains(l + r)) vocab[l + r] = next++;
    m += l + " " + r + "\n";
  }
  write_file(dir + "/vocab.json", vocab.dump());
  write_file(dir + "/merges.txt", m);
  if (!config.is_null()) write_file(dir + "/tokenizer_config.json", config.dump());
  return dir;
}

std::vector<std::string> tokens(const Qwen2Tokenizer& tok, const std::string& text) {
  std::vector<std::string> out;
  for (int32_t id : tok.encode(text)) out.push_back(tok.id_to_token(id));
  return out;
}

using Strs = std::vector<std::string>;

TEST(TokenizerBpe, LowestRankFirstAndLeftToRightWithinARank) {
  const auto tok = Qwen2Tokenizer::load(
      synthetic_folder("bpe1", {{"a", "a"}, {"aa", "aa"}, {"b", "c"}, {"a", "b"}, {"aaaa", "a"}}));
  EXPECT_EQ(tokens(tok, "aaa"), (Strs{"aa", "a"}));  // not a|aa
  EXPECT_EQ(tokens(tok, "aaaa"), (Strs{"aaaa"}));
  EXPECT_EQ(tokens(tok, "aaaaa"), (Strs{"aaaaa"}));  // aa,aa,a -> aaaa,a -> aaaaa
  EXPECT_EQ(tokens(tok, "aaaaaa"), (Strs{"aaaa", "aa"}));
  EXPECT_EQ(tokens(tok, "abc"), (Strs{"a", "bc"}));  // b c (rank 2) before a b (rank 3)
  EXPECT_EQ(tokens(tok, "ab"), (Strs{"ab"}));
  EXPECT_EQ(tokens(tok, "x"), (Strs{"x"}));
  // Pre-tokens are merged independently: the space belongs to the next word.
  EXPECT_EQ(tokens(tok, "aa aa"), (Strs{"aa", "\xC4\xA0", "aa"}));
}

TEST(TokenizerBpe, LaterDuplicateMergeKeepsTheLastRank) {
  // Python dict semantics of the reference: ("b","c") ends up with rank 2, after ("a","b").
  const auto tok =
      Qwen2Tokenizer::load(synthetic_folder("bpe_dup", {{"b", "c"}, {"a", "b"}, {"b", "c"}}));
  EXPECT_EQ(tokens(tok, "abc"), (Strs{"ab", "c"}));
}

TEST(TokenizerAddedTokens, LstripAndRstripEatNeighbouringWhitespace) {
  json cfg;
  cfg["added_tokens_decoder"] = {
      {"300", {{"content", "<X>"}, {"lstrip", true}, {"rstrip", true}, {"special", true}}},
      {"301", {{"content", "<Y>"}, {"special", false}}},
      {"302", {{"content", "<Y>>"}, {"special", false}}}};
  cfg["pad_token"] = "<Y>>";
  const auto tok = Qwen2Tokenizer::load(synthetic_folder("strip", {}, cfg));
  EXPECT_EQ(tokens(tok, "a \t<X>\n b"), (Strs{"a", "<X>", "b"}));
  EXPECT_EQ(tokens(tok, "a <Y> b"), (Strs{"a", "\xC4\xA0", "<Y>", "\xC4\xA0", "b"}));
  EXPECT_EQ(tokens(tok, "<Y>>"), (Strs{"<Y>>"}));  // the longest token wins
  EXPECT_EQ(tok.pad_token_id(), 302);
  // <X> is special; <Y> is not; the pad token <Y>> counts as special.
  EXPECT_EQ(tok.decode(tok.encode("a<X>b<Y><Y>>"), true), "ab<Y>");
}

// ---------------------------------------------------------------- errors

template <class F>
void expect_error(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning \"" << needle << "\"";
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message \"" << e.what() << "\" lacks \"" << needle << "\"";
  }
}

TEST(TokenizerErrors, MissingFolderAndFiles) {
  expect_error([] { Qwen2Tokenizer::load("/nonexistent/qwen/tokenizer"); }, "does not exist");
  const std::string empty = temp_dir("empty");
  expect_error([&] { Qwen2Tokenizer::load(empty); }, "no tokenizer files");
  const std::string only_vocab = temp_dir("only_vocab");
  write_file(only_vocab + "/vocab.json", "{}");
  expect_error([&] { Qwen2Tokenizer::load(only_vocab); }, "no merges.txt");
  expect_error([&] { Qwen2Tokenizer::load_tokenizer_json(empty + "/tokenizer.json"); },
               "cannot read");
}

TEST(TokenizerErrors, MalformedVocabAndMerges) {
  const std::string dir = synthetic_folder("bad_json", {{"a", "b"}});
  write_file(dir + "/vocab.json", "{\"a\": 1,");
  expect_error([&] { Qwen2Tokenizer::load(dir); }, "vocab.json is not valid JSON");
  write_file(dir + "/vocab.json", "[1, 2]");
  expect_error([&] { Qwen2Tokenizer::load(dir); }, "must be a JSON object");
  write_file(dir + "/vocab.json", "{\"a\": \"one\"}");
  expect_error([&] { Qwen2Tokenizer::load(dir); }, "must be an integer");
  write_file(dir + "/vocab.json", "{\"a\": 0}");
  expect_error([&] { Qwen2Tokenizer::load(dir); }, "lacks the byte symbol");

  const std::string d2 = synthetic_folder("bad_merges", {{"a", "b"}});
  write_file(d2 + "/merges.txt", "#version: 0.2\na b\na b c\n");
  expect_error([&] { Qwen2Tokenizer::load(d2); }, "merges.txt line 3");
  write_file(d2 + "/merges.txt", "#version: 0.2\nb a\n");
  expect_error([&] { Qwen2Tokenizer::load(d2); }, "'ba', which is not in the vocabulary");
  write_file(d2 + "/merges.txt", "#version: 0.2\nab zz\n");
  expect_error([&] { Qwen2Tokenizer::load(d2); }, "uses a token that is not in the vocabulary");
}

TEST(TokenizerErrors, ConflictingAddedTokens) {
  json cfg;
  cfg["added_tokens_decoder"] = {{"300", {{"content", "<X>"}}}};
  const std::string dir = synthetic_folder("conflict", {}, cfg);
  write_file(dir + "/added_tokens.json", R"({"<X>": 301})");
  expect_error([&] { Qwen2Tokenizer::load(dir); }, "another file gives it id 300");
  write_file(dir + "/added_tokens.json", R"({"<Z>": 300})");
  expect_error([&] { Qwen2Tokenizer::load(dir); }, "id 300 is given to both");
  write_file(dir + "/added_tokens.json", R"({"<Z>": 97})");  // id of "a"
  expect_error([&] { Qwen2Tokenizer::load(dir); }, "which the vocabulary gives to \"a\"");
  write_file(dir + "/added_tokens.json", "{}");
  cfg["added_tokens_decoder"]["300"]["single_word"] = true;
  write_file(dir + "/tokenizer_config.json", cfg.dump());
  expect_error([&] { Qwen2Tokenizer::load(dir); }, "single_word");
  cfg["added_tokens_decoder"]["300"]["single_word"] = false;
  cfg["pad_token"] = "<nope>";
  write_file(dir + "/tokenizer_config.json", cfg.dump());
  expect_error([&] { Qwen2Tokenizer::load(dir); }, "pad token \"<nope>\"");
}

TEST(TokenizerErrors, NoPadTokenOnlyMattersWhenPadding) {
  const auto tok = Qwen2Tokenizer::load(synthetic_folder("nopad", {}));
  expect_error([&] { tok.pad_token_id(); }, "no pad token");
  EXPECT_EQ(tok.encode_batch({"ab", "cd"}).ids[1], (Ids{99, 100}));
  expect_error([&] { tok.encode_batch({"ab", "c"}); }, "no pad token");
}

TEST(TokenizerErrors, UnsupportedTokenizerJson) {
  const std::string dir = temp_dir("tj_bad");
  const std::string path = dir + "/tokenizer.json";
  json j = qwen_tokenizer_json(false);
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\s+";
  write_file(path, j.dump());
  expect_error([&] { Qwen2Tokenizer::load_tokenizer_json(path); }, "not the Qwen2 pattern");
  j = qwen_tokenizer_json(false);
  j["pre_tokenizer"]["pretokenizers"][1]["use_regex"] = true;
  write_file(path, j.dump());
  expect_error([&] { Qwen2Tokenizer::load_tokenizer_json(path); }, "use_regex=false");
  j = qwen_tokenizer_json(false);
  j["normalizer"] = {{"type", "NFKC"}};
  write_file(path, j.dump());
  expect_error([&] { Qwen2Tokenizer::load_tokenizer_json(path); }, "normalizer \"NFKC\"");
  j["normalizer"] = nullptr;
  j["model"]["type"] = "WordPiece";
  write_file(path, j.dump());
  expect_error([&] { Qwen2Tokenizer::load_tokenizer_json(path); }, "model type \"WordPiece\"");
  j["model"]["type"] = "BPE";
  j["model"]["merges"][5] = 17;
  write_file(path, j.dump());
  expect_error([&] { Qwen2Tokenizer::load_tokenizer_json(path); }, "model.merges[5]");
  write_file(path, "not json");
  expect_error([&] { Qwen2Tokenizer::load_tokenizer_json(path); }, "not valid JSON");
}

TEST(TokenizerFolders, ResolveModelFolders) {
  const std::string t2i = fixture("models/qwen-image-tiny");
  EXPECT_EQ(Qwen2Tokenizer::resolve_folder(t2i), t2i + "/tokenizer");
  EXPECT_EQ(Qwen2Tokenizer::resolve_folder(t2i + "/tokenizer"), t2i + "/tokenizer");
  const std::string edit = fixture("models/qwen-image-edit-2509-tiny");
  EXPECT_EQ(Qwen2Tokenizer::resolve_folder(edit), edit + "/tokenizer");
  expect_error([&] { Qwen2Tokenizer::resolve_folder(t2i + "/vae"); }, "no tokenizer in");
  expect_error([] { Qwen2Tokenizer::resolve_folder("/nonexistent"); }, "does not exist");
  // The edit model's processor/ folder loads to the same tokenizer.
  const auto proc = Qwen2Tokenizer::load(edit + "/processor");
  EXPECT_EQ(proc.encode("Picture 1: <|vision_start|><|image_pad|><|vision_end|>"),
            tiny_tokenizer().encode("Picture 1: <|vision_start|><|image_pad|><|vision_end|>"));
}

}  // namespace
}  // namespace qwen::tokenizer::test
