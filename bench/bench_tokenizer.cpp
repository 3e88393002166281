// Tokenizer throughput: MB/s of UTF-8 text through Qwen2Tokenizer::encode, cold (empty BPE word
// cache) and warm, on English, Chinese and mixed corpora, plus the load time and the latency of
// one templated prompt.
//   bench_tokenizer [TOKENIZER_DIR] [MB]   (default: the tiny fixture model's tokenizer, 4 MB)
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "tokenizer/qwen2_tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;
using qwen::tokenizer::Qwen2Tokenizer;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Deterministic prompt-like paragraphs of about 300-600 bytes.
std::vector<std::string> make_corpus(const std::string& kind, size_t total_bytes, uint32_t seed) {
  static const char* kEnglish[] = {
      "a",        "the",     "of",         "cat",      "holding",  "sign",    "that",
      "says",     "hello",   "world",      "portrait", "woman",    "wearing", "red",
      "dress",    "city",    "skyline",    "night",    "neon",     "lights",  "reflect",
      "wet",      "street",  "cinematic",  "lighting", "detailed", "texture", "watercolor",
      "mountain", "river",   "sunset",     "golden",   "hour",     "photo",   "realistic",
      "8k",       "ultra",   "sharp",      "focus",    "bokeh",    "Make",    "Remove",
      "Add",      "replace", "background", "with",     "blue",     "sky"};
  static const char* kChinese[] = {"一只",   "猫",   "举着", "写有", "你好", "世界", "的",
                                   "牌子",   "中国", "美女", "正",   "拿着", "黑色", "马克笔",
                                   "水墨画", "山水", "之间", "小船", "天空", "变成", "紫色",
                                   "自动",   "布局", "渲染", "文字", "替换", "通义", "千问"};
  static const char* kPunctEn[] = {", ", ". ", "; ", " - ", "! ", "? ", ": ", "\n"};
  static const char* kPunctZh[] = {"，", "。", "、", "；", "！", "：", "\n"};
  std::mt19937 rng(seed);
  auto pick = [&](auto& arr) { return arr[rng() % (sizeof(arr) / sizeof(arr[0]))]; };
  std::vector<std::string> out;
  size_t bytes = 0;
  while (bytes < total_bytes) {
    std::string p;
    const size_t target = 300 + rng() % 300;
    const bool zh_para = kind == "zh" || (kind == "mixed" && rng() % 2 == 0);
    while (p.size() < target) {
      if (zh_para) {
        const int run = 2 + static_cast<int>(rng() % 8);
        for (int k = 0; k < run; ++k) p += pick(kChinese);
        if (kind == "mixed" && rng() % 6 == 0) {
          p += " ";
          p += pick(kEnglish);
          p += " ";
        }
        if (rng() % 9 == 0) p += std::to_string(rng() % 5000);
        p += pick(kPunctZh);
      } else {
        const int run = 3 + static_cast<int>(rng() % 10);
        for (int k = 0; k < run; ++k) {
          if (k) p += " ";
          // Invented words keep the word cache honest on the cold pass.
          if (rng() % 5 == 0) {
            static const char* kSyl[] = {"qua", "zor", "mip", "tel", "van", "dri", "sko", "lun"};
            const int n = 1 + static_cast<int>(rng() % 3);
            for (int s = 0; s < n; ++s) p += pick(kSyl);
          } else {
            p += pick(kEnglish);
          }
        }
        if (rng() % 7 == 0) {  // appended piecewise: GCC 12 -O3 gives a false -Wrestrict otherwise
          p += ' ';
          p += std::to_string(rng() % 100000);
        }
        p += pick(kPunctEn);
      }
    }
    bytes += p.size();
    out.push_back(std::move(p));
  }
  return out;
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct Result {
  double mb_per_s;      // wall clock
  double cpu_mb_per_s;  // thread CPU time (meaningful on a shared, busy machine)
  double tokens;
};

Result encode_all(const Qwen2Tokenizer& tok, const std::vector<std::string>& corpus) {
  size_t bytes = 0;
  size_t tokens = 0;
  const auto t0 = Clock::now();
  const double c0 = thread_cpu_seconds();
  for (const auto& p : corpus) {
    tokens += tok.encode(p).size();
    bytes += p.size();
  }
  const double s = seconds_since(t0);
  const double c = thread_cpu_seconds() - c0;
  const double mb = static_cast<double>(bytes) / 1e6;
  return {mb / s, mb / c, static_cast<double>(tokens)};
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 && argv[1][0] ? argv[1] : QWEN_BENCH_TOKENIZER_DIR;
  const double mb = argc > 2 ? std::atof(argv[2]) : 4.0;
  if (mb <= 0) {
    std::fprintf(stderr, "usage: bench_tokenizer [TOKENIZER_DIR] [MB > 0]\n");
    return 2;
  }
  try {
    const auto t0 = Clock::now();
    const Qwen2Tokenizer tok = Qwen2Tokenizer::load(Qwen2Tokenizer::resolve_folder(dir));
    std::printf("load: %.3f s (%zu ids, %zu merges) from %s\n", seconds_since(t0), tok.vocab_size(),
                tok.num_merges(), tok.source().c_str());

    const auto total = static_cast<size_t>(mb * 1e6);
    std::printf("MB/s of UTF-8 text, wall clock (thread CPU time in brackets)\n");
    std::printf("%-6s %6s %9s %22s %22s\n", "corpus", "MB", "tokens", "cold MB/s", "warm MB/s");
    for (const std::string kind : {"en", "zh", "mixed"}) {
      const auto corpus = make_corpus(kind, total, 1234);
      size_t bytes = 0;
      for (const auto& p : corpus) bytes += p.size();
      tok.clear_cache();
      const Result cold = encode_all(tok, corpus);
      const Result warm = encode_all(tok, corpus);
      std::printf("%-6s %6.2f %9.0f %12.2f (%7.2f) %12.2f (%7.2f)\n", kind.c_str(),
                  static_cast<double>(bytes) / 1e6, cold.tokens, cold.mb_per_s, cold.cpu_mb_per_s,
                  warm.mb_per_s, warm.cpu_mb_per_s);
    }

    // One T2I prompt in its template, as the pipeline encodes it (warm cache, best of 200).
    const std::string prompt =
        "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, "
        "quantity, text, spatial relationships of the objects and background:<|im_end|>\n"
        "<|im_start|>user\nA coffee shop entrance features a chalkboard sign reading \"Qwen "
        "Coffee 😊 $2 per cup\", with a neon light beside it displaying \"通义千问\".<|im_end|>\n"
        "<|im_start|>assistant\n";
    double best = 1e9;
    size_t n = 0;
    for (int i = 0; i < 200; ++i) {
      const auto t1 = Clock::now();
      n = tok.encode(prompt).size();
      best = std::min(best, seconds_since(t1));
    }
    std::printf("templated prompt (%zu bytes, %zu tokens): %.1f us\n", prompt.size(), n,
                best * 1e6);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_tokenizer: %s\n", e.what());
    return 1;
  }
  return 0;
}
