#include <cstdio>

#include "cli/commands.h"

int qwen::cli::cmd_inspect(int, char**) {
  std::fprintf(stderr, "qwen-image inspect: not built yet\n");
  return 2;
}
