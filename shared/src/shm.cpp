#include "qwen_image/shm.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "qwen_image/client.h"

namespace bip = boost::interprocess;

namespace qwen::ipc::shm {

namespace {
[[noreturn]] void fail(const std::string& what, const std::string& name, const std::string& why) {
  throw ClientError(ClientError::Kind::SharedMemory,
                    "cannot " + what + " shared memory '/dev/shm/" + name + "': " + why +
                        " (is /dev/shm available to this process? sandboxed GIMP builds such as "
                        "Flatpak need --filesystem=/dev/shm)");
}
}  // namespace

bool valid_instance_name(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
  return true;
}

std::string prefix(const std::string& instance) {
  if (!valid_instance_name(instance))
    throw ClientError(
        ClientError::Kind::SharedMemory,
        "bad instance name '" + instance + "': use 1 to 64 letters, digits, '-' or '_'");
  return "qwen-image." + std::to_string(geteuid()) + "." + instance;
}
std::string lock_name(const std::string& i) { return prefix(i) + ".lock"; }
std::string control_name(const std::string& i) { return prefix(i) + ".ctl"; }
std::string job_name(const std::string& i, int64_t pid, uint64_t id) {
  return prefix(i) + ".job." + std::to_string(pid) + "." + std::to_string(id);
}
std::string result_name(const std::string& i, int64_t pid, uint64_t id) {
  return prefix(i) + ".res." + std::to_string(pid) + "." + std::to_string(id);
}

struct Segment::Impl {
  bip::shared_memory_object obj;
  bip::mapped_region region;
};

Segment::Segment() = default;
Segment::Segment(Segment&&) noexcept = default;
Segment& Segment::operator=(Segment&&) noexcept = default;
Segment::~Segment() = default;

Segment Segment::create(const std::string& name, size_t size) {
  Segment s;
  s.impl_ = std::make_unique<Impl>();
  try {
    bip::permissions perm;
    perm.set_permissions(0600);
    s.impl_->obj = bip::shared_memory_object(bip::create_only, name.c_str(), bip::read_write, perm);
  } catch (const bip::interprocess_exception& e) {
    fail("create", name, e.what());
  }
  try {
    // Boost applies the mode with fchmod, but make sure of it whatever the version does.
    ::fchmod(s.impl_->obj.get_mapping_handle().handle, 0600);
    s.impl_->obj.truncate(bip::offset_t(size));
    s.impl_->region = bip::mapped_region(s.impl_->obj, bip::read_write);
  } catch (const bip::interprocess_exception& e) {
    bip::shared_memory_object::remove(name.c_str());
    fail("size/map", name, std::string(e.what()) + " (" + std::to_string(size) + " bytes)");
  }
  s.data_ = s.impl_->region.get_address();
  s.size_ = s.impl_->region.get_size();
  s.name_ = name;
  return s;
}

Segment Segment::open(const std::string& name, bool writable, bool* missing) {
  Segment s;
  if (missing) *missing = false;
  s.impl_ = std::make_unique<Impl>();
  const auto mode = writable ? bip::read_write : bip::read_only;
  try {
    s.impl_->obj = bip::shared_memory_object(bip::open_only, name.c_str(), mode);
  } catch (const bip::interprocess_exception& e) {
    if (missing && e.get_error_code() == bip::not_found_error) {
      *missing = true;
      return Segment();
    }
    fail("open", name, e.what());
  }
  bip::offset_t size = 0;
  if (!s.impl_->obj.get_size(size) || size <= 0) fail("open", name, "the object is empty");
  try {
    s.impl_->region = bip::mapped_region(s.impl_->obj, mode);
  } catch (const bip::interprocess_exception& e) {
    fail("map", name, e.what());
  }
  s.data_ = s.impl_->region.get_address();
  s.size_ = s.impl_->region.get_size();
  s.name_ = name;
  return s;
}

int Segment::fd() const { return impl_ ? impl_->obj.get_mapping_handle().handle : -1; }

bool Segment::owner_only() const {
  struct stat st;
  if (fd() < 0 || ::fstat(fd(), &st) != 0) return false;
  return st.st_uid == ::geteuid() && (st.st_mode & 077) == 0;
}

void Segment::unlink() {
  if (!name_.empty()) bip::shared_memory_object::remove(name_.c_str());
}

bool remove(const std::string& name) { return bip::shared_memory_object::remove(name.c_str()); }

std::vector<std::string> list(const std::string& p) {
  std::vector<std::string> out;
  DIR* d = ::opendir("/dev/shm");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n.compare(0, p.size(), p) == 0) out.push_back(n);
  }
  ::closedir(d);
  return out;
}

bool stat_mode(const std::string& name, unsigned* mode, unsigned* uid) {
  struct stat st;
  if (::stat(("/dev/shm/" + name).c_str(), &st) != 0) return false;
  *mode = st.st_mode & 07777;
  *uid = st.st_uid;
  return true;
}

int open_lock(const std::string& name, bool create) {
  const std::string n = "/" + name;
  int fd = ::shm_open(n.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
  if (fd < 0) {
    if (!create && errno == ENOENT) return -1;
    fail(create ? "create" : "open", name, std::strerror(errno));
  }
  ::fchmod(fd, 0600);
  return fd;
}

bool unlocked(int fd) {
  if (::flock(fd, LOCK_SH | LOCK_NB) == 0) {
    ::flock(fd, LOCK_UN);
    return true;
  }
  return false;
}

int64_t now_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

void futex_wake(uint32_t* word) {
  ::syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

void futex_wait(uint32_t* word, uint32_t expected, int timeout_ms) {
  timespec ts{timeout_ms / 1000, long(timeout_ms % 1000) * 1000000L};
  ::syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, nullptr, 0);
}

}  // namespace qwen::ipc::shm
