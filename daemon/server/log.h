// Timestamped log lines (UTC, ISO 8601) to stderr or a file. Thread-safe.
#pragma once

#include <string>

namespace qwen::server {

// Appends to `path` from now on; "" = stderr. Returns false (and keeps stderr) if it cannot open
// it.
bool log_to_file(const std::string& path, std::string* error);
void log_info(const std::string& msg);
void log_warn(const std::string& msg);
void log_error(const std::string& msg);

}  // namespace qwen::server
