// `qwen-image inspect`: a summary of a checkpoint (torch-free, so it also runs without libtorch's
// startup cost). Lives in io/ so that tests and tools can call it without the CLI.
#pragma once

#include <cstdio>

namespace qwen::io {

// argv[0] is the sub-command name. Returns the exit code: 0 ok, 1 broken checkpoint (the error is
// printed to `err`), 2 usage error.
int inspect_main(int argc, char** argv, FILE* out, FILE* err);

}  // namespace qwen::io
