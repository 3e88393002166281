// Helpers of the daemon-configuration tests (test_config.cpp, test_memory.cpp): a temporary
// daemon.conf and qwen-imaged's command-line parser.
#pragma once

#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "server/config.h"

namespace qwen::server::test {

// Writes `text` to a fresh /tmp file and returns its path (the caller unlinks it).
inline std::string write_conf(const std::string& text) {
  char path[] = "/tmp/qwen-conf-XXXXXX";
  const int fd = ::mkstemp(path);
  ::close(fd);
  std::ofstream(path) << text;
  return path;
}

// qwen::server::parse_args on `qwen-imaged ARGS...`.
inline std::string parse(std::vector<std::string> args, DaemonConfig* cfg) {
  std::vector<char*> argv;
  args.insert(args.begin(), "qwen-imaged");
  for (auto& a : args) argv.push_back(a.data());
  return parse_args(static_cast<int>(argv.size()), argv.data(), cfg);
}

}  // namespace qwen::server::test
