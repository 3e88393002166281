#include <cstdio>

#include "cli/commands.h"

namespace {
int todo(const char* name) {
  std::fprintf(stderr, "qwen-image %s: not built yet\n", name);
  return 2;
}
}  // namespace

int qwen::cli::cmd_generate(int, char**) { return todo("generate"); }
int qwen::cli::cmd_img2img(int, char**) { return todo("img2img"); }
int qwen::cli::cmd_inpaint(int, char**) { return todo("inpaint"); }
int qwen::cli::cmd_edit(int, char**) { return todo("edit"); }
