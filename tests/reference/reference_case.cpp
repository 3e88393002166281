#include "reference_case.h"

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <vector>

#include "common/fixtures.h"

// No std::filesystem here: the PyPI torch wheel's libtorch.so exports its own (ABI-incompatible)
// copies of some std::filesystem functions, and remove_all() binding to them crashes. POSIX only.

namespace qwen::reftest {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

int remove_entry(const char* path, const struct stat*, int, struct FTW*) { return ::remove(path); }

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

}  // namespace

std::string reference_python(std::string* why) {
  static std::string cached_py, cached_why;
  static bool done = false;
  if (!done) {
    done = true;
    const char* env = std::getenv("QWEN_REFERENCE_PYTHON");  // override (e.g. another venv)
    std::string py =
        env && *env ? std::string(env) : std::string(QWEN_SOURCE_DIR) + "/.venv/bin/python";
    if (!exists(py)) {
      cached_why = "live reference not available: " + py +
                   " does not exist (run installers/setup.sh to create the reference venv)";
    } else {
      std::string cmd = quote(py) + " -c 'import torch, diffusers, transformers' >/dev/null 2>&1";
      if (std::system(cmd.c_str()) != 0)
        cached_why = "live reference not available: " + py +
                     " cannot import torch, diffusers and transformers "
                     "(pip install -r tests/reference/requirements.txt)";
      else
        cached_py = py;
    }
  }
  if (why) *why = cached_why;
  return cached_py;
}

bool reference_required() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

ReferenceCase::ReferenceCase(const std::string& parts, const std::string& extra_args,
                             const std::string& script) {
  if (const char* s = std::getenv("QWEN_REFERENCE_SEED"); s && *s) {
    seed_ = std::strtoll(s, nullptr, 10);
  } else {
    auto ms = std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
    seed_ = (ms ^ (static_cast<int64_t>(::getpid()) << 20)) % 2147483647;
  }
  std::cout << "[reference] seed " << seed_ << " (repeat with QWEN_REFERENCE_SEED=" << seed_ << ")"
            << std::endl;
  std::string py = reference_python(&skip_);
  if (py.empty()) return;
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/qwen-reference-" +
                      std::to_string(seed_) + "-XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) {
    error_ = "cannot create a temp dir " + templ;
    return;
  }
  dir_ = buf.data();
  std::string log = dir_ + "/gen.log";
  std::string cmd = quote(py) + " " + quote(std::string(QWEN_REFERENCE_DIR) + "/" + script) +
                    " " + quote(dir_) + " --seed " + std::to_string(seed_) + " --parts " +
                    quote(parts) + " --threads 1 " + extra_args + " >" + quote(log) + " 2>&1";
  int rc = std::system(cmd.c_str());
  if (rc != 0 || !exists(dir_ + "/case.json")) {
    error_ = "command: " + cmd + "\n" + slurp(log);
    return;
  }
  json_ = nlohmann::json::parse(slurp(dir_ + "/case.json"));
  std::cout << "[reference] case " << dir_ << "\n[reference] config " << json_["config"].dump()
            << std::endl;
  ok_ = true;
}

ReferenceCase::~ReferenceCase() {
  if (dir_.empty()) return;
  const char* keep = std::getenv("QWEN_REFERENCE_KEEP");
  bool failed = ::testing::Test::HasFailure();
  if ((keep && *keep && std::string(keep) != "0") || failed) {
    std::cout << "[reference] kept " << dir_ << std::endl;
    return;
  }
  ::nftw(dir_.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

std::map<std::string, torch::Tensor> ReferenceCase::tensors(const std::string& part) const {
  return qwen::test::load_tensors(dir_ + "/" + part + ".safetensors");
}

}  // namespace qwen::reftest
