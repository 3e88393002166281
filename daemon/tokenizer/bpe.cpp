#include "tokenizer/bpe.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <mutex>

#include "tokenizer/byte_level.h"
#include "tokenizer/qwen2_tokenizer.h"
#include "tokenizer/unicode.h"

namespace qwen::tokenizer {

namespace {

constexpr uint64_t kEmpty = ~0ull;  // left = right = 2^21 - 1, never a valid id
constexpr int32_t kMaxId = (1 << 21) - 2;
constexpr size_t kMaxMerges = size_t{1} << 22;
constexpr size_t kCacheMaxEntries = 1 << 17;
constexpr size_t kCacheMaxWordBytes = 512;

// Left and right ids in the top 42 bits of a table word.
inline uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(left) << 43) | (static_cast<uint64_t>(right) << 22);
}
constexpr uint64_t kKeyMask = ~((uint64_t{1} << 22) - 1);

inline uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

std::string printable(std::string_view token) {
  // Byte-level tokens are valid UTF-8; anything else is shown escaped.
  std::string out;
  for (char c : token) {
    const auto b = static_cast<uint8_t>(c);
    if (b < 0x20 || b == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", b);
      out += buf;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Word -> ids of the words seen so far; the ids of all words live in one arena.
struct BpeModel::Cache {
  std::mutex mutex;
  std::unordered_map<std::string, std::pair<uint32_t, uint32_t>, StringHash, std::equal_to<>>
      words;  // (offset, count) in ids
  std::vector<int32_t> ids;
  void clear() {
    words.clear();
    ids.clear();
  }
};

BpeModel::BpeModel(std::unordered_map<std::string, int32_t> vocab, const std::vector<Merge>& merges,
                   const std::string& label)
    : vocab_(std::move(vocab)), cache_(std::make_unique<Cache>()) {
  int32_t max_id = -1;
  for (const auto& [tok, id] : vocab_) {
    if (id < 0) {
      throw TokenizerError(label + ": token '" + printable(tok) + "' has a negative id " +
                           std::to_string(id));
    }
    max_id = std::max(max_id, id);
  }
  id_to_token_.resize(static_cast<size_t>(max_id + 1));
  has_id_.assign(static_cast<size_t>(max_id + 1), 0);
  for (const auto& [tok, id] : vocab_) {
    if (has_id_[id]) {
      throw TokenizerError(label + ": id " + std::to_string(id) + " is used by two tokens ('" +
                           printable(id_to_token_[id]) + "' and '" + printable(tok) + "')");
    }
    id_to_token_[id] = tok;
    has_id_[id] = 1;
  }
  const auto& b2u = bytes_to_unicode();
  for (int b = 0; b < 256; ++b) {
    std::string sym;
    append_utf8(sym, b2u[b]);
    auto it = vocab_.find(sym);
    if (it == vocab_.end()) {
      throw TokenizerError(label + ": the vocabulary lacks the byte symbol '" + sym + "' (byte " +
                           std::to_string(b) + "); this is not a byte-level BPE vocabulary");
    }
    byte_id_[b] = it->second;
  }

  size_t cap = 1;
  while (cap < merges.size() + merges.size() / 2 + 16) cap <<= 1;  // load factor <= 2/3
  if (max_id > kMaxId || merges.size() > kMaxMerges) {
    throw TokenizerError(label + ": vocabulary of " + std::to_string(max_id + 1) + " ids / " +
                         std::to_string(merges.size()) +
                         " merges is larger than this tokenizer supports (2M ids, 4M merges)");
  }
  table_.assign(cap, kEmpty);
  mask_ = cap - 1;
  merged_by_rank_.assign(merges.size(), -1);
  num_merges_ = merges.size();
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const Merge& m = merges[rank];
    auto where = [&] {
      return label + ": merge #" + std::to_string(rank) + " '" + printable(m.left) + " " +
             printable(m.right) + "'";
    };
    auto l = vocab_.find(m.left);
    auto r = vocab_.find(m.right);
    if (l == vocab_.end() || r == vocab_.end()) {
      throw TokenizerError(where() + " uses a token that is not in the vocabulary");
    }
    joined.assign(m.left).append(m.right);
    auto j = vocab_.find(joined);
    if (j == vocab_.end()) {
      throw TokenizerError(where() + " produces '" + printable(joined) +
                           "', which is not in the vocabulary");
    }
    // A repeated pair keeps its last rank (Python dict semantics of the reference).
    insert_merge(l->second, r->second, static_cast<int32_t>(rank));
    merged_by_rank_[rank] = j->second;
  }
}

BpeModel::~BpeModel() = default;

void BpeModel::insert_merge(int32_t left, int32_t right, int32_t rank) {
  const uint64_t key = pair_key(left, right);
  for (uint64_t h = mix(key) & mask_;; h = (h + 1) & mask_) {
    uint64_t& e = table_[h];
    if (e == kEmpty || (e & kKeyMask) == key) {
      e = key | static_cast<uint64_t>(rank);
      return;
    }
  }
}

int32_t BpeModel::find_rank(int32_t left, int32_t right) const {
  const uint64_t key = pair_key(left, right);
  for (uint64_t h = mix(key) & mask_;; h = (h + 1) & mask_) {
    const uint64_t e = table_[h];
    if ((e & kKeyMask) == key && e != kEmpty) return static_cast<int32_t>(e & ~kKeyMask);
    if (e == kEmpty) return -1;
  }
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= has_id_.size() || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

void BpeModel::clear_cache() const {
  std::lock_guard<std::mutex> lock(cache_->mutex);
  cache_->clear();
}

void BpeModel::encode_word(std::string_view bytes, std::vector<int32_t>& out) const {
  if (bytes.empty()) return;
  if (bytes.size() == 1) {
    out.push_back(byte_id_[static_cast<uint8_t>(bytes[0])]);
    return;
  }
  const bool cacheable = bytes.size() <= kCacheMaxWordBytes;
  Cache& c = *cache_;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.words.find(bytes);
    if (it != c.words.end()) {
      const int32_t* p = c.ids.data() + it->second.first;
      out.insert(out.end(), p, p + it->second.second);
      return;
    }
  }
  const size_t start = out.size();
  bpe(bytes, out);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.words.size() >= kCacheMaxEntries) c.clear();
    if (c.words.find(bytes) == c.words.end()) {  // another thread may have added it meanwhile
      const auto offset = static_cast<uint32_t>(c.ids.size());
      c.ids.insert(c.ids.end(), out.begin() + static_cast<std::ptrdiff_t>(start), out.end());
      c.words.emplace(std::string(bytes),
                      std::make_pair(offset, static_cast<uint32_t>(out.size() - start)));
    }
  }
}

// The reference loop: repeatedly take the adjacent pair with the lowest rank and merge all of its
// non-overlapping occurrences left to right, then look again. Candidate pairs live in a heap
// ordered by (rank, position); all entries of one rank are one "pass" of the reference, and the
// pairs a pass creates are only pushed after it, so the order of merges is exactly the reference's.
void BpeModel::bpe(std::string_view bytes, std::vector<int32_t>& out) const {
  struct Sym {
    int32_t id;
    int32_t prev;
    int32_t next;  // -1 at the end
  };
  struct Cand {
    int32_t rank;
    int32_t pos;
    int32_t left;
    int32_t right;
    int32_t merged;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  thread_local std::vector<Sym> syms;
  thread_local std::vector<Cand> heap;
  thread_local std::vector<int32_t> touched;
  const auto n = static_cast<int32_t>(bytes.size());
  syms.resize(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    syms[i] = Sym{byte_id_[static_cast<uint8_t>(bytes[i])], i - 1, i + 1 < n ? i + 1 : -1};
  }
  heap.clear();
  const std::greater<Cand> later;
  auto push_pair = [&](int32_t pos) {
    if (pos < 0) return;
    const int32_t nx = syms[pos].next;
    if (nx < 0) return;
    const int32_t rank = find_rank(syms[pos].id, syms[nx].id);
    if (rank >= 0) {
      heap.push_back(Cand{rank, pos, syms[pos].id, syms[nx].id, merged_by_rank_[rank]});
      std::push_heap(heap.begin(), heap.end(), later);
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) push_pair(i);

  while (!heap.empty()) {
    const int32_t rank = heap.front().rank;
    touched.clear();
    while (!heap.empty() && heap.front().rank == rank) {
      std::pop_heap(heap.begin(), heap.end(), later);
      const Cand c = heap.back();
      heap.pop_back();
      Sym& s = syms[c.pos];
      if (s.id != c.left || s.next < 0) continue;  // stale: consumed or changed
      Sym& r = syms[s.next];
      if (r.id != c.right) continue;
      s.id = c.merged;
      const int32_t after = r.next;
      r.id = -1;
      s.next = after;
      if (after >= 0) syms[after].prev = c.pos;
      touched.push_back(c.pos);
    }
    for (int32_t pos : touched) {
      if (syms[pos].id < 0) continue;
      push_pair(syms[pos].prev);
      push_pair(pos);
    }
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next) out.push_back(syms[i].id);
}

}  // namespace qwen::tokenizer
