// `qwen-image tokenize --model DIR TEXT...`: the token ids of each TEXT on its own line.
// `qwen-image tokenize --model DIR --json`: a JSON array of strings on stdin -> a JSON array of
// id arrays on stdout.
#include <cstdio>
#include <exception>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "tokenizer/qwen2_tokenizer.h"

namespace {

void usage(FILE* out) {
  std::fprintf(out,
               "usage: qwen-image tokenize --model DIR TEXT...\n"
               "       qwen-image tokenize --model DIR --json < texts.json\n\n"
               "Prints the Qwen2 token ids of each TEXT on its own line, space-separated (no\n"
               "BOS/EOS is added; special tokens such as <|im_start|> are recognized).\n"
               "With --json, reads a JSON array of strings from stdin and writes a JSON array of\n"
               "id arrays to stdout.\n\n"
               "  --model DIR   model folder (uses DIR/tokenizer) or a tokenizer folder\n"
               "                (vocab.json + merges.txt, or tokenizer.json)\n"
               "  --json        JSON in, JSON out\n"
               "  -h, --help    this text\n");
}

int fail(const std::string& msg) {
  std::fprintf(stderr, "qwen-image tokenize: %s\n", msg.c_str());
  return 1;
}

}  // namespace

int qwen::cli::cmd_tokenize(int argc, char** argv) {
  using qwen::tokenizer::Qwen2Tokenizer;
  std::string model;
  bool json_mode = false;
  bool end_of_options = false;
  std::vector<std::string> texts;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (!end_of_options && (a == "-h" || a == "--help")) {
      usage(stdout);
      return 0;
    }
    if (!end_of_options && a == "--") {
      end_of_options = true;
    } else if (!end_of_options && a == "--model") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "qwen-image tokenize: --model needs a folder\n\n");
        usage(stderr);
        return 2;
      }
      model = argv[++i];
    } else if (!end_of_options && a.rfind("--model=", 0) == 0) {
      model = a.substr(8);
    } else if (!end_of_options && a == "--json") {
      json_mode = true;
    } else if (!end_of_options && a.size() > 1 && a[0] == '-' && a[1] == '-') {
      std::fprintf(stderr, "qwen-image tokenize: unknown option '%s'\n\n", a.c_str());
      usage(stderr);
      return 2;
    } else {
      texts.push_back(a);
    }
  }
  if (model.empty()) {
    std::fprintf(stderr, "qwen-image tokenize: --model DIR is required\n\n");
    usage(stderr);
    return 2;
  }
  if (json_mode && !texts.empty()) {
    std::fprintf(stderr,
                 "qwen-image tokenize: give the texts either as arguments or, with "
                 "--json, on stdin, not both\n");
    return 2;
  }
  if (!json_mode && texts.empty()) {
    std::fprintf(stderr, "qwen-image tokenize: no TEXT given (or use --json to read stdin)\n\n");
    usage(stderr);
    return 2;
  }

  try {
    const Qwen2Tokenizer tok = Qwen2Tokenizer::load(Qwen2Tokenizer::resolve_folder(model));
    if (!json_mode) {
      std::string out;
      for (const std::string& t : texts) {
        const auto ids = tok.encode(t);
        for (size_t k = 0; k < ids.size(); ++k) {
          if (k) out.push_back(' ');
          out += std::to_string(ids[k]);
        }
        out.push_back('\n');
      }
      std::fwrite(out.data(), 1, out.size(), stdout);
      return std::fflush(stdout) == 0 ? 0 : fail("cannot write to stdout");
    }

    const std::string input((std::istreambuf_iterator<char>(std::cin)),
                            std::istreambuf_iterator<char>());
    nlohmann::json in;
    try {
      in = nlohmann::json::parse(input);
    } catch (const nlohmann::json::exception& e) {
      return fail(std::string("stdin is not valid JSON (expected an array of strings): ") +
                  e.what());
    }
    if (!in.is_array())
      return fail("stdin must be a JSON array of strings, got " + std::string(in.type_name()));
    nlohmann::json result = nlohmann::json::array();
    for (size_t i = 0; i < in.size(); ++i) {
      if (!in[i].is_string()) {
        return fail("element " + std::to_string(i) + " of the stdin array is a " +
                    in[i].type_name() + ", expected a string");
      }
      try {
        result.push_back(tok.encode(in[i].get_ref<const std::string&>()));
      } catch (const qwen::tokenizer::TokenizerError& e) {
        return fail("element " + std::to_string(i) + ": " + e.what());
      }
    }
    std::string out = result.dump();
    out.push_back('\n');
    std::fwrite(out.data(), 1, out.size(), stdout);
    return std::fflush(stdout) == 0 ? 0 : fail("cannot write to stdout");
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}
