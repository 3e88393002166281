// Whole-file memory mappings of checkpoint files, shared by SafetensorsFile::open and
// GgufFile::open (header-only, torch-free; the fuzz targets compile the readers without a library).
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

namespace qwen::io::detail {

// A file descriptor closed on scope exit.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(const std::string& path) : fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

struct FileMapping {
  const uint8_t* base = nullptr;
  uint64_t size = 0;
};

// Maps all of the regular file `path`, which must hold at least `min_size` bytes, as a private
// writable mapping: pages are copy-on-write, so in-place ops on zero-copy tensors never touch the
// file (and never fault); MAP_NORESERVE avoids charging the whole file to the commit limit. Falls
// back to read-only when the kernel refuses. On failure calls `fail(message)`, which must throw;
// `kind` names the format in the too-short message ("safetensors", "GGUF"). The caller unmaps
// (munmap(base, size)).
template <class Fail>
FileMapping map_file(const std::string& path, uint64_t min_size, const char* kind, Fail&& fail) {
  Fd f(path);
  if (f.fd < 0) fail(std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) fail(std::string("cannot stat: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail("not a regular file");
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < min_size)
    fail("file of " + std::to_string(size) + " bytes is too short to be a " + kind +
         " file (truncated?)");
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, f.fd, 0);
  if (p == MAP_FAILED) p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, f.fd, 0);
  if (p == MAP_FAILED) fail(std::string("cannot map: ") + std::strerror(errno));
  return {static_cast<const uint8_t*>(p), size};
}

}  // namespace qwen::io::detail
