// The qwen-imaged server: accepts jobs from shared memory, runs them in order on injected engines,
// publishes status and heartbeats, notices dead clients, and cleans up after itself and after a
// daemon that died before it. Torch-free: engines come from an EngineFactory.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "pipelines/engine.h"
#include "server/config.h"

namespace qwen::server {

using EngineFactory = std::function<std::unique_ptr<Engine>(const EngineOptions&)>;

class Server {
 public:
  Server(DaemonConfig config, EngineFactory factory);
  ~Server();
  // Takes ownership of the instance (fails if another daemon serves it), removes stale segments.
  // Returns "" or why the daemon cannot start.
  std::string start();
  // Serves until request_stop(); then aborts the running job, fails queued ones, removes segments.
  void serve();
  // Async-signal-safe.
  void request_stop();

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// The whole daemon: parses argv, installs SIGTERM/SIGINT handlers, serves. `real` opens real
// models (nullptr in builds without the engine: only --fake-engine works there).
int daemon_main(int argc, char** argv, EngineFactory real);

}  // namespace qwen::server
