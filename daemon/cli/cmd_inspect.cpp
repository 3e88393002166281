// `qwen-image inspect`: implemented torch-free in io/inspect.cpp.
#include <cstdio>

#include "cli/commands.h"
#include "io/inspect.h"

int qwen::cli::cmd_inspect(int argc, char** argv) {
  return qwen::io::inspect_main(argc, argv, stdout, stderr);
}
