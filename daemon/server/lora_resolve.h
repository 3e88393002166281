// A job's LoRA names to files (issue #14): bare names from the daemon's lora_dir folders, absolute
// paths only for files the client's own user owns. Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace qwen::server {

// `name` as the job sent it: a bare name (no '/') is looked up as NAME, then NAME.safetensors, in
// each of `dirs` in order; an absolute path is accepted when the file's owner is the uid that owns
// /proc/<client_pid>. Returns "" and sets *path, or an error naming the LoRA and saying what to do.
std::string resolve_job_lora(const std::string& name, const std::vector<std::string>& dirs,
                             int64_t client_pid, std::string* path);

}  // namespace qwen::server
