// The `qwen-image` CLI (QWEN_CLI) run as a program, shared by the CLI tests (test_cli.cpp,
// test_cli_formats.cpp): its exit code and output, output paths in the build tree, and the max
// 8-bit level difference of two PNGs.
#pragma once

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "image/png.h"

namespace qwen::test::cli {

struct Result {
  int code = -1;
  std::string output;  // stdout + stderr
};

// Runs `QWEN_CLI args` through the shell (stderr merged into the output).
inline Result run(const std::string& args) {
  // Appended piecewise: GCC 12 gives a false -Warray-bounds for the chained operator+.
  std::string cmd = QWEN_CLI;
  cmd += ' ';
  cmd += args;
  cmd += " 2>&1";
  Result r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// <build tree>/<dir>/<name>, the folder created.
inline std::string out_path(const std::string& dir, const std::string& name) {
  const std::filesystem::path d = std::filesystem::path(QWEN_BINARY_DIR) / dir;
  std::filesystem::create_directories(d);
  return (d / name).string();
}

// The largest difference of two PNGs in 8-bit levels; 256 when their sizes differ.
inline int max_diff(const std::string& a, const std::string& b) {
  auto x = qwen::read_png(a), y = qwen::read_png(b);
  if (x.width != y.width || x.height != y.height || x.pixels.size() != y.pixels.size()) return 256;
  int d = 0;
  for (size_t i = 0; i < x.pixels.size(); ++i)
    d = std::max(d, std::abs(int(x.pixels[i]) - int(y.pixels[i])));
  return d;
}

}  // namespace qwen::test::cli
