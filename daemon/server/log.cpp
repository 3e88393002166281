#include "server/log.h"

#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>

namespace qwen::server {

namespace {
std::mutex g_mu;
FILE* g_out = nullptr;

void line(const char* level, const std::string& msg) {
  timeval tv;
  ::gettimeofday(&tv, nullptr);
  tm t;
  ::gmtime_r(&tv.tv_sec, &t);
  char ts[40];
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &t);
  std::lock_guard<std::mutex> lock(g_mu);
  FILE* out = g_out ? g_out : stderr;
  std::fprintf(out, "%s.%03dZ qwen-imaged[%d] %s: %s\n", ts, int(tv.tv_usec / 1000),
               int(::getpid()), level, msg.c_str());
  std::fflush(out);
}
}  // namespace

bool log_to_file(const std::string& path, std::string* error) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (path.empty()) return true;
  FILE* f = std::fopen(path.c_str(), "a");
  if (!f) {
    if (error) *error = "cannot open log file " + path + ": " + std::strerror(errno);
    return false;
  }
  g_out = f;
  return true;
}

void log_info(const std::string& m) { line("info", m); }
void log_warn(const std::string& m) { line("warning", m); }
void log_error(const std::string& m) { line("error", m); }

}  // namespace qwen::server
