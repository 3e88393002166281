// A job's LoRA names to files (daemon/server/lora_resolve.cpp, issue #14): names from lora_dir,
// absolute paths only for files of the client's user, everything else refused with the name.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "server/lora_resolve.h"

namespace fs = std::filesystem;
using qwen::server::resolve_job_lora;

namespace {
struct Dir {
  fs::path path;
  Dir() {
    char t[] = "/tmp/qwen-loradir-XXXXXX";
    path = ::mkdtemp(t);
  }
  ~Dir() { fs::remove_all(path); }
  std::string file(const std::string& name) {
    std::ofstream(path / name) << "x";
    return (path / name).string();
  }
};
bool has(const std::string& e, const std::string& what) {
  return e.find(what) != std::string::npos;
}
}  // namespace

TEST(LoraResolve, NamesFromTheLoraDirs) {
  Dir a, b;
  const std::string style = b.file("style.safetensors");
  const std::string exact = a.file("exact");
  std::string path;
  EXPECT_EQ(resolve_job_lora("style", {a.path, b.path}, ::getpid(), &path), "");
  EXPECT_EQ(path, style);
  EXPECT_EQ(resolve_job_lora("style.safetensors", {a.path, b.path}, ::getpid(), &path), "");
  EXPECT_EQ(path, style);
  EXPECT_EQ(resolve_job_lora("exact", {a.path, b.path}, ::getpid(), &path), "");
  EXPECT_EQ(path, exact);
  std::string e = resolve_job_lora("missing", {a.path}, ::getpid(), &path);
  EXPECT_TRUE(has(e, "LoRA 'missing': not found as missing or missing.safetensors")) << e;
  e = resolve_job_lora("style", {}, ::getpid(), &path);
  EXPECT_TRUE(has(e, "no lora_dir")) << e;
  for (const std::string bad : {"..", ".", "../style", "sub/style"}) {
    e = resolve_job_lora(bad, {b.path}, ::getpid(), &path);
    EXPECT_TRUE(has(e, "LoRA '" + bad + "'")) << e;
  }
}

TEST(LoraResolve, AbsolutePathsOnlyOfTheClientsUser) {
  Dir d;
  const std::string mine = d.file("mine.safetensors");
  std::string path;
  EXPECT_EQ(resolve_job_lora(mine, {}, ::getpid(), &path), "");
  EXPECT_EQ(path, mine);
  std::string e = resolve_job_lora(d.path.string() + "/none.safetensors", {}, ::getpid(), &path);
  EXPECT_TRUE(has(e, "none.safetensors': no such file")) << e;
  // A file of another user: root can make one; others use a root-owned file.
  std::string theirs = "/etc/passwd";
  if (::getuid() == 0) {
    theirs = d.file("theirs.safetensors");
    ASSERT_EQ(::chown(theirs.c_str(), 65534, 65534), 0);
  }
  e = resolve_job_lora(theirs, {}, ::getpid(), &path);
  EXPECT_TRUE(has(e, "LoRA '" + theirs + "': the file is not owned by the user")) << e;
  e = resolve_job_lora(mine, {}, -1, &path);
  EXPECT_TRUE(has(e, "cannot tell which user")) << e;
}
