// qwen-image: the command-line client. Each sub-command lives in its own cmd_*.cpp.
#include <cstdio>
#include <cstring>
#include <string>

#include "cli/commands.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int argc, char** argv);  // argv[0] is the sub-command name
  const char* help;
};

const Command kCommands[] = {
    {"inspect", qwen::cli::cmd_inspect, "list the components of a model folder"},
    {"tokenize", qwen::cli::cmd_tokenize, "print the token ids of texts"},
    {"generate", qwen::cli::cmd_generate, "text to image"},
    {"img2img", qwen::cli::cmd_img2img, "image to image"},
    {"inpaint", qwen::cli::cmd_inpaint, "repaint the white part of a mask"},
    {"edit", qwen::cli::cmd_edit, "instruction edit of one or more images"},
    {"decompose", qwen::cli::cmd_decompose, "split an image into RGBA layers (Qwen-Image-Layered)"},
    {"status", qwen::cli::cmd_status, "show the daemon's state"},
    {"plan", qwen::cli::cmd_plan, "predict device memory and placement for a card"},
};

void usage(FILE* out) {
  std::fprintf(out, "usage: qwen-image <command> [options]\n\ncommands:\n");
  for (const auto& c : kCommands) std::fprintf(out, "  %-10s %s\n", c.name, c.help);
  std::fprintf(out, "\n`qwen-image <command> --help` describes a command's options.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    usage(stdout);
    return 0;
  }
  if (name == "--version") {
    std::printf("qwen-image %s\n", QWEN_IMAGE_VERSION);
    return 0;
  }
  for (const auto& c : kCommands) {
    if (name == c.name) return c.run(argc - 1, argv + 1);
  }
  std::fprintf(stderr, "qwen-image: unknown command '%s'\n\n", name.c_str());
  usage(stderr);
  return 2;
}
