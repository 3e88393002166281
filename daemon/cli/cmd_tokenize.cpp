#include <cstdio>

#include "cli/commands.h"

int qwen::cli::cmd_tokenize(int, char**) {
  std::fprintf(stderr, "qwen-image tokenize: not built yet\n");
  return 2;
}
