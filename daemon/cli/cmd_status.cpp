#include <cstdio>

#include "cli/commands.h"

int qwen::cli::cmd_status(int, char**) {
  std::fprintf(stderr, "qwen-image status: not built yet\n");
  return 2;
}
