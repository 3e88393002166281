// `qwen-image status [--instance NAME]`: what the daemon is doing. Exit 1 when none runs.
#include <cstdio>
#include <cstring>
#include <string>

#include "cli/commands.h"
#include "qwen_image/client.h"
#include "qwen_image/protocol.h"

namespace {
std::string human(int64_t bytes) {
  char buf[32];
  const double b = double(bytes);
  if (b >= 1024.0 * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  else
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1024.0 * 1024));
  return buf;
}
}  // namespace

int qwen::cli::cmd_status(int argc, char** argv) {
  std::string instance;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--instance") && i + 1 < argc) {
      instance = argv[++i];
    } else if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::printf(
          "usage: qwen-image status [--instance NAME]\n"
          "Prints the daemon's pid, version, device, models, queue and memory.\n"
          "Exit status: 0 when a daemon serves the instance, 1 when none does.\n");
      return 0;
    } else {
      std::fprintf(stderr, "qwen-image status: unknown option '%s'\n", argv[i]);
      return 2;
    }
  }
  try {
    ipc::Client c = ipc::Client::connect(instance, 2000);
    const ipc::DaemonStatus s = c.status();
    std::printf("qwen-imaged %s (protocol %d), pid %lld, instance '%s'\n", s.version.c_str(),
                s.protocol_version, static_cast<long long>(s.pid), s.instance.c_str());
    std::printf("device:    %s\n", s.device.c_str());
    std::printf("models:\n");
    for (size_t i = 0; i < s.model_states.size(); ++i) {
      std::string line = s.model_states[i];
      std::string name = line.substr(0, line.find('\t'));
      line = line.substr(line.find('\t') + 1);
      std::string state = line.substr(0, line.find('\t'));
      std::string dir = line.substr(line.find('\t') + 1);
      // What the model can do (issue #16: typed capabilities; "unknown" before it loads when
      // neither model_type nor model_index.json tells, or from a daemon older than protocol 3).
      const std::string can =
          i < s.model_caps.size() ? ipc::proto::caps_flags(s.model_caps[i]) : "unknown";
      std::printf("  %-24s %-10s %s%s\n  %-24s can: %s\n", name.c_str(), state.c_str(), dir.c_str(),
                  i == 0 ? "  (default)" : "", "", can.c_str());
    }
    // The LoRAs in the daemon's lora_dir (protocol version 4; issue #14).
    if (!s.loras.empty() || s.loras_left_out > 0) {
      std::printf("loras:\n");
      for (const auto& l : s.loras) {
        std::string kind = l.lightning ? "Lightning" : "";
        if (l.lightning && l.lightning_steps > 0)
          kind += " (" + std::to_string(l.lightning_steps) + " steps)";
        std::printf("  %-24s %s\n", l.name.c_str(), kind.c_str());
      }
      if (s.loras_left_out > 0)
        std::printf("  ... and %d more (not listed: the status block is full)\n", s.loras_left_out);
    }
    if (s.busy)
      std::printf("queue:     running a job (step %d/%d), %d waiting\n", s.step, s.total,
                  s.queued_jobs);
    else
      std::printf("queue:     idle, %d waiting\n", s.queued_jobs);
    std::printf("jobs done: %lld\n", static_cast<long long>(s.jobs_done));
    std::printf("memory:    %s resident, %s of model weights loaded\n",
                human(s.memory_bytes).c_str(), human(s.device_memory_bytes).c_str());
    if (s.heartbeat_age_s > 2.0)
      std::printf("warning:   no heartbeat for %.1f s\n", s.heartbeat_age_s);
    return 0;
  } catch (const ipc::ClientError& e) {
    std::fprintf(stderr, "qwen-image status: %s\n", e.what());
    return 1;
  }
}
