// Shared-memory plumbing (internal to shared/ and daemon/server): names, owner-only segments
// (Boost.Interprocess over POSIX shm), futex waits with deadlines, flock liveness probes.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qwen::ipc::shm {

// Instance names: 1..64 characters of [A-Za-z0-9_-].
bool valid_instance_name(const std::string& name);
// "qwen-image.<uid>.<instance>"; throws ClientError(SharedMemory) for a bad instance name.
std::string prefix(const std::string& instance);
std::string lock_name(const std::string& instance);
std::string control_name(const std::string& instance);
std::string job_name(const std::string& instance, int64_t pid, uint64_t id);
std::string result_name(const std::string& instance, int64_t pid, uint64_t id);

// A mapped shared-memory object. Move-only; unmaps on destruction (the name stays until unlink()).
class Segment {
 public:
  Segment();
  Segment(Segment&&) noexcept;
  Segment& operator=(Segment&&) noexcept;
  ~Segment();
  // Creates a new object (fails if the name exists) with mode 0600 and maps it read-write.
  // Throws ClientError(SharedMemory) with the reason.
  static Segment create(const std::string& name, size_t size);
  // Opens an existing object and maps all of it. Throws ClientError(SharedMemory); `missing` is
  // set to true instead of throwing when the object does not exist.
  static Segment open(const std::string& name, bool writable, bool* missing = nullptr);

  bool valid() const { return data_ != nullptr; }
  void* data() const { return data_; }
  size_t size() const { return size_; }
  int fd() const;
  const std::string& name() const { return name_; }
  // True when the object belongs to this user and grants nothing to group or others.
  bool owner_only() const;
  void unlink();  // removes the name; the mapping stays valid

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  void* data_ = nullptr;
  size_t size_ = 0;
  std::string name_;
};

// Removes a shared-memory name; true when something was removed.
bool remove(const std::string& name);
// Names (without the leading '/') in /dev/shm that start with `prefix`.
std::vector<std::string> list(const std::string& prefix);
// Mode and owner of a name in /dev/shm (false when it does not exist).
bool stat_mode(const std::string& name, unsigned* mode, unsigned* uid);

// A lock object: an empty 0600 shm object used with flock().
int open_lock(const std::string& name, bool create);  // -1 when missing (and !create)
// True when nobody holds an exclusive lock on `fd` (probes with LOCK_SH|LOCK_NB and releases).
bool unlocked(int fd);

int64_t now_ns();  // CLOCK_MONOTONIC, comparable between processes
void futex_wake(uint32_t* word);
// Waits while *word == expected, at most timeout_ms. Returns early on a wake or a change.
void futex_wait(uint32_t* word, uint32_t expected, int timeout_ms);

template <typename T>
std::atomic_ref<T> atom(T& v) {
  return std::atomic_ref<T>(v);
}

}  // namespace qwen::ipc::shm
