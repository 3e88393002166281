#include "tokenizer/tokenizer_files.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace qwen::tokenizer {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The Qwen2 split pattern as tokenizer.json stores it (spec §1.2 step 3).
constexpr const char* kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw TokenizerError("cannot read tokenizer file " + path.string() + ": " +
                         std::strerror(errno));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw TokenizerError("error while reading tokenizer file " + path.string());
  return ss.str();
}

json read_json(const fs::path& path) {
  const std::string text = read_file(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw TokenizerError(path.string() + " is not valid JSON: " + e.what());
  }
}

int32_t to_id(const json& v, const std::string& where) {
  if (!v.is_number_integer()) {
    throw TokenizerError(where + ": the id must be an integer, got " + v.dump());
  }
  const int64_t id = v.get<int64_t>();
  if (id < 0 || id > std::numeric_limits<int32_t>::max()) {
    throw TokenizerError(where + ": id " + std::to_string(id) + " is out of range");
  }
  return static_cast<int32_t>(id);
}

void read_vocab_object(const json& v, const std::string& where,
                       std::unordered_map<std::string, int32_t>& vocab) {
  if (!v.is_object()) throw TokenizerError(where + " must be a JSON object {token: id}");
  vocab.reserve(v.size());
  for (auto it = v.begin(); it != v.end(); ++it) {
    vocab[it.key()] = to_id(it.value(), where + " entry \"" + it.key() + "\"");
  }
  if (vocab.empty()) throw TokenizerError(where + " is empty");
}

// vocab.json {token: id} read with a SAX handler straight into the map (no JSON DOM: the real file
// has 151,643 entries).
class VocabSax {
 public:
  VocabSax(std::unordered_map<std::string, int32_t>& vocab, std::string where)
      : vocab_(vocab), where_(std::move(where)) {}
  bool null() { return value("null"); }
  bool boolean(bool) { return value("a boolean"); }
  bool number_integer(json::number_integer_t v) { return id(v); }
  bool number_unsigned(json::number_unsigned_t v) {
    return id(v > static_cast<json::number_unsigned_t>(std::numeric_limits<int64_t>::max())
                  ? -1
                  : static_cast<int64_t>(v));
  }
  bool number_float(json::number_float_t, const std::string&) { return value("a float"); }
  bool string(std::string&) { return value("a string"); }
  bool binary(json::binary_t&) { return value("binary data"); }
  bool start_object(std::size_t) {
    if (depth_++ != 0) return value("an object");
    return true;
  }
  bool end_object() {
    --depth_;
    return true;
  }
  bool start_array(std::size_t) {
    return depth_ == 0 ? fail("must be a JSON object {token: id}") : value("an array");
  }
  bool end_array() { return true; }
  bool key(std::string& k) {
    key_ = std::move(k);
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    error_ = where_ + " is not valid JSON: " + e.what();
    return false;
  }
  const std::string& error() const { return error_; }

 private:
  bool fail(const std::string& msg) {
    error_ = where_ + " " + msg;
    return false;
  }
  bool value(const char* what) {
    if (depth_ == 0) return fail("must be a JSON object {token: id}");
    return fail("entry \"" + key_ + "\": the id must be an integer, got " + what);
  }
  bool id(int64_t v) {
    if (depth_ == 0) return fail("must be a JSON object {token: id}");
    if (v < 0 || v > std::numeric_limits<int32_t>::max()) {
      return fail("entry \"" + key_ + "\": id " + std::to_string(v) + " is out of range");
    }
    vocab_[key_] = static_cast<int32_t>(v);
    return true;
  }
  std::unordered_map<std::string, int32_t>& vocab_;
  std::string where_;
  std::string key_;
  std::string error_;
  int depth_ = 0;
};

void read_vocab_json(const fs::path& path, std::unordered_map<std::string, int32_t>& vocab) {
  const std::string text = read_file(path);
  vocab.reserve(text.size() / 12);
  VocabSax sax(vocab, path.string());
  if (!json::sax_parse(text, &sax) || !sax.error().empty()) {
    throw TokenizerError(sax.error().empty() ? path.string() + " is not valid JSON" : sax.error());
  }
  if (vocab.empty()) throw TokenizerError(path.string() + " is empty");
}

// Splits a merge line "left right" (ASCII spaces/tabs; byte-level tokens never contain them).
bool split_merge(std::string_view line, Merge& m) {
  auto is_ws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  size_t a = 0;
  while (a < line.size() && is_ws(line[a])) ++a;
  size_t b = a;
  while (b < line.size() && !is_ws(line[b])) ++b;
  size_t c = b;
  while (c < line.size() && is_ws(line[c])) ++c;
  size_t d = c;
  while (d < line.size() && !is_ws(line[d])) ++d;
  size_t e = d;
  while (e < line.size() && is_ws(line[e])) ++e;
  if (b == a || d == c || e != line.size()) return false;
  m.left.assign(line.substr(a, b - a));
  m.right.assign(line.substr(c, d - c));
  return true;
}

std::vector<Merge> read_merges_txt(const fs::path& path) {
  const std::string text = read_file(path);
  std::vector<Merge> merges;
  merges.reserve(160000);
  size_t pos = 0;
  size_t line_no = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line_no == 1 && line.starts_with("#version:")) continue;
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    Merge m;
    if (!split_merge(line, m)) {
      throw TokenizerError(path.string() + " line " + std::to_string(line_no) +
                           ": expected two tokens separated by one space, got \"" +
                           std::string(line.substr(0, 80)) + "\"");
    }
    merges.push_back(std::move(m));
  }
  return merges;
}

// `pad_token` / `eos_token` of a config: a string, {"content": ...} or null.
std::string token_content(const json& cfg, const char* key, const std::string& where) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  throw TokenizerError(where + ": \"" + key + "\" must be a string or {\"content\": ...}");
}

bool get_bool(const json& o, const char* key, const std::string& where) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return false;
  if (!it->is_boolean()) throw TokenizerError(where + ": \"" + key + "\" must be true or false");
  return it->get<bool>();
}

// Collects added tokens from several files; the same content must always have the same id.
class AddedTokens {
 public:
  void add(const AddedToken& t, bool single_word, const std::string& where) {
    if (t.content.empty()) throw TokenizerError(where + ": an added token has empty content");
    if (single_word) {
      throw TokenizerError(where + ": added token \"" + t.content +
                           "\" has single_word=true, which this tokenizer does not implement");
    }
    auto it = by_content_.find(t.content);
    if (it != by_content_.end()) {
      AddedToken& old = tokens_[it->second];
      if (old.id != t.id) {
        throw TokenizerError(where + ": added token \"" + t.content + "\" has id " +
                             std::to_string(t.id) + " but another file gives it id " +
                             std::to_string(old.id));
      }
      old.special = old.special || t.special;
      return;
    }
    auto id_it = by_id_.find(t.id);
    if (id_it != by_id_.end()) {
      throw TokenizerError(where + ": id " + std::to_string(t.id) + " is given to both \"" +
                           tokens_[id_it->second].content + "\" and \"" + t.content + "\"");
    }
    by_content_[t.content] = tokens_.size();
    by_id_[t.id] = tokens_.size();
    tokens_.push_back(t);
  }
  void mark_special(const std::string& content) {
    auto it = by_content_.find(content);
    if (it != by_content_.end()) tokens_[it->second].special = true;
  }
  bool has(const std::string& content) const { return by_content_.count(content) != 0; }
  std::vector<AddedToken> sorted() const {
    std::vector<AddedToken> out = tokens_;
    std::sort(out.begin(), out.end(),
              [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; });
    return out;
  }

 private:
  std::vector<AddedToken> tokens_;
  std::map<std::string, size_t> by_content_;
  std::map<int32_t, size_t> by_id_;
};

void read_added_tokens_decoder(const json& cfg, const std::string& where, AddedTokens& added) {
  auto it = cfg.find("added_tokens_decoder");
  if (it == cfg.end() || it->is_null()) return;
  if (!it->is_object()) throw TokenizerError(where + ": added_tokens_decoder must be an object");
  for (auto e = it->begin(); e != it->end(); ++e) {
    const std::string w = where + " added_tokens_decoder[\"" + e.key() + "\"]";
    int64_t id = -1;
    try {
      size_t used = 0;
      id = std::stoll(e.key(), &used);
      if (used != e.key().size()) id = -1;
    } catch (const std::exception&) {
      id = -1;
    }
    if (id < 0 || id > std::numeric_limits<int32_t>::max()) {
      throw TokenizerError(w + ": the key must be a non-negative integer id");
    }
    const json& v = e.value();
    if (!v.is_object() || !v.contains("content") || !v["content"].is_string()) {
      throw TokenizerError(w + ": expected an object with a string \"content\"");
    }
    AddedToken t;
    t.id = static_cast<int32_t>(id);
    t.content = v["content"].get<std::string>();
    t.special = get_bool(v, "special", w);
    t.lstrip = get_bool(v, "lstrip", w);
    t.rstrip = get_bool(v, "rstrip", w);
    added.add(t, get_bool(v, "single_word", w), w);
  }
}

void read_added_tokens_list(const json& list, const std::string& where, AddedTokens& added) {
  if (list.is_null()) return;
  if (!list.is_array()) throw TokenizerError(where + ": added_tokens must be an array");
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string w = where + " added_tokens[" + std::to_string(i) + "]";
    const json& v = list[i];
    if (!v.is_object() || !v.contains("content") || !v["content"].is_string() ||
        !v.contains("id")) {
      throw TokenizerError(w + ": expected {\"id\": ..., \"content\": \"...\", ...}");
    }
    AddedToken t;
    t.id = to_id(v["id"], w);
    t.content = v["content"].get<std::string>();
    t.special = get_bool(v, "special", w);
    t.lstrip = get_bool(v, "lstrip", w);
    t.rstrip = get_bool(v, "rstrip", w);
    added.add(t, get_bool(v, "single_word", w), w);
  }
}

// Special-token contents named by a tokenizer_config.json / special_tokens_map.json.
std::vector<std::string> special_contents(const json& cfg, const std::string& where) {
  std::vector<std::string> out;
  for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
    std::string c = token_content(cfg, key, where);
    if (!c.empty()) out.push_back(std::move(c));
  }
  auto it = cfg.find("additional_special_tokens");
  if (it != cfg.end() && it->is_array()) {
    for (const json& v : *it) {
      if (v.is_string()) out.push_back(v.get<std::string>());
      if (v.is_object() && v.contains("content") && v["content"].is_string()) {
        out.push_back(v["content"].get<std::string>());
      }
    }
  }
  return out;
}

void check_tokenizer_json_pipeline(const json& j, const std::string& where) {
  auto type_of = [](const json& o) -> std::string {
    return o.is_object() && o.contains("type") && o["type"].is_string()
               ? o["type"].get<std::string>()
               : std::string();
  };
  // Normalizer: NFC (or nothing, or a Sequence of those).
  std::function<void(const json&)> check_norm = [&](const json& n) {
    if (n.is_null()) return;
    const std::string t = type_of(n);
    if (t == "NFC") return;
    if (t == "Sequence" && n.contains("normalizers") && n["normalizers"].is_array()) {
      for (const json& s : n["normalizers"]) check_norm(s);
      return;
    }
    throw TokenizerError(where + ": normalizer \"" + (t.empty() ? n.dump() : t) +
                         "\" is not supported (the Qwen2 tokenizer uses NFC)");
  };
  check_norm(j.value("normalizer", json()));
  // Pre-tokenizer: the Qwen2 Split regex and/or ByteLevel without its own regex.
  std::function<void(const json&)> check_pre = [&](const json& p) {
    if (p.is_null()) return;
    const std::string t = type_of(p);
    if (t == "Sequence" && p.contains("pretokenizers") && p["pretokenizers"].is_array()) {
      for (const json& s : p["pretokenizers"]) check_pre(s);
      return;
    }
    if (t == "Split") {
      const json& pat = p.value("pattern", json());
      if (pat.is_object() && pat.contains("Regex") && pat["Regex"] == kQwen2Pattern) return;
      throw TokenizerError(where + ": the Split pre-tokenizer pattern " + pat.dump() +
                           " is not the Qwen2 pattern this tokenizer implements");
    }
    if (t == "ByteLevel") {
      if (get_bool(p, "add_prefix_space", where)) {
        throw TokenizerError(where + ": ByteLevel add_prefix_space=true is not supported");
      }
      // HF's default use_regex=true would add the GPT-2 split on top of the Qwen2 one.
      if (!p.contains("use_regex") || get_bool(p, "use_regex", where)) {
        throw TokenizerError(where +
                             ": the ByteLevel pre-tokenizer must have use_regex=false (the GPT-2 "
                             "split is not the Qwen2 one)");
      }
      return;
    }
    throw TokenizerError(where + ": pre-tokenizer \"" + (t.empty() ? p.dump() : t) +
                         "\" is not supported (expected the Qwen2 Split + ByteLevel)");
  };
  check_pre(j.value("pre_tokenizer", json()));
  const json& post = j.value("post_processor", json());
  // transformers 5 saves a TemplateProcessing that adds nothing (single = [Sequence A], no special
  // tokens): the same as none.
  const bool no_op_template =
      type_of(post) == "TemplateProcessing" && post.value("single", json()).is_array() &&
      post["single"].size() == 1 && post["single"][0].contains("Sequence") &&
      post.value("special_tokens", json::object()).empty();
  if (!post.is_null() && type_of(post) != "ByteLevel" && !no_op_template) {
    throw TokenizerError(where + ": post_processor \"" + type_of(post) +
                         "\" is not supported (the Qwen2 tokenizer adds no tokens)");
  }
}

}  // namespace

TokenizerSpec read_tokenizer_json(const std::string& path_str) {
  const fs::path path(path_str);
  const std::string where = path.string();
  const json j = read_json(path);
  if (!j.is_object()) throw TokenizerError(where + " must be a JSON object");
  check_tokenizer_json_pipeline(j, where);
  if (!j.contains("model") || !j["model"].is_object()) {
    throw TokenizerError(where + ": no \"model\" object");
  }
  const json& model = j["model"];
  const std::string type = model.value("type", std::string("BPE"));
  if (type != "BPE") {
    throw TokenizerError(where + ": model type \"" + type + "\" is not supported (expected BPE)");
  }
  if (get_bool(model, "byte_fallback", where) || get_bool(model, "ignore_merges", where)) {
    throw TokenizerError(where + ": byte_fallback / ignore_merges are not supported");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(key);
    if (it != model.end() && !it->is_null() &&
        !(it->is_string() && it->get<std::string>().empty())) {
      throw TokenizerError(where + ": model." + key + " is not supported");
    }
  }
  TokenizerSpec spec;
  read_vocab_object(model.value("vocab", json()), where + " model.vocab", spec.vocab);
  const json& merges = model.value("merges", json::array());
  if (!merges.is_array()) throw TokenizerError(where + ": model.merges must be an array");
  spec.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    Merge mg;
    bool ok = false;
    if (m.is_string()) {
      ok = split_merge(m.get<std::string>(), mg);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      mg.left = m[0].get<std::string>();
      mg.right = m[1].get<std::string>();
      ok = !mg.left.empty() && !mg.right.empty();
    }
    if (!ok) {
      throw TokenizerError(where + ": model.merges[" + std::to_string(i) +
                           "] must be \"left right\" or [\"left\", \"right\"], got " + m.dump());
    }
    spec.merges.push_back(std::move(mg));
  }
  AddedTokens added;
  read_added_tokens_list(j.value("added_tokens", json()), where, added);
  spec.added = added.sorted();
  spec.source = where + " (tokenizer.json)";
  spec.label = where;
  return spec;
}

TokenizerSpec read_tokenizer_folder(const std::string& folder_str) {
  const fs::path folder(folder_str);
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) {
    throw TokenizerError("tokenizer folder " + folder.string() + " does not exist");
  }
  const fs::path vocab_path = folder / "vocab.json";
  const fs::path merges_path = folder / "merges.txt";
  const fs::path tj_path = folder / "tokenizer.json";
  const bool have_vocab = fs::exists(vocab_path, ec);
  const bool have_merges = fs::exists(merges_path, ec);
  TokenizerSpec spec;
  AddedTokens added;
  if (have_vocab && have_merges) {
    read_vocab_json(vocab_path, spec.vocab);
    spec.merges = read_merges_txt(merges_path);
    spec.source = folder.string() + " (vocab.json + merges.txt)";
    spec.label = vocab_path.string() + " + " + merges_path.string();
  } else if (fs::exists(tj_path, ec)) {
    spec = read_tokenizer_json(tj_path.string());
    for (const AddedToken& t : spec.added) added.add(t, false, tj_path.string());
  } else if (have_vocab || have_merges) {
    throw TokenizerError(
        "tokenizer folder " + folder.string() + " has " +
        (have_vocab ? "vocab.json but no merges.txt" : "merges.txt but no vocab.json") +
        " (and no tokenizer.json)");
  } else {
    throw TokenizerError("no tokenizer files in " + folder.string() +
                         ": expected vocab.json + merges.txt or tokenizer.json");
  }

  std::vector<std::string> specials;
  const fs::path cfg_path = folder / "tokenizer_config.json";
  if (fs::exists(cfg_path, ec)) {
    const json cfg = read_json(cfg_path);
    if (!cfg.is_object()) throw TokenizerError(cfg_path.string() + " must be a JSON object");
    read_added_tokens_decoder(cfg, cfg_path.string(), added);
    spec.pad_token = token_content(cfg, "pad_token", cfg_path.string());
    spec.eos_token = token_content(cfg, "eos_token", cfg_path.string());
    for (auto& s : special_contents(cfg, cfg_path.string())) specials.push_back(std::move(s));
  }
  const fs::path at_path = folder / "added_tokens.json";
  if (fs::exists(at_path, ec)) {
    const json at = read_json(at_path);
    if (!at.is_object()) throw TokenizerError(at_path.string() + " must be {content: id}");
    for (auto it = at.begin(); it != at.end(); ++it) {
      AddedToken t;
      t.content = it.key();
      t.id = to_id(it.value(), at_path.string() + " entry \"" + it.key() + "\"");
      added.add(t, false, at_path.string());
    }
  }
  const fs::path stm_path = folder / "special_tokens_map.json";
  if (fs::exists(stm_path, ec)) {
    const json stm = read_json(stm_path);
    if (!stm.is_object()) throw TokenizerError(stm_path.string() + " must be a JSON object");
    if (spec.pad_token.empty()) spec.pad_token = token_content(stm, "pad_token", stm_path.string());
    if (spec.eos_token.empty()) spec.eos_token = token_content(stm, "eos_token", stm_path.string());
    for (auto& s : special_contents(stm, stm_path.string())) specials.push_back(std::move(s));
  }
  for (const std::string& s : specials) added.mark_special(s);
  spec.added = added.sorted();
  return spec;
}

}  // namespace qwen::tokenizer
