// qwen-imaged: the persistent daemon (see docs/daemon.md). The server lives in qwen_server; this
// file only injects the real engine.
#include "pipelines/engine.h"
#include "server/server.h"

int main(int argc, char** argv) {
  return qwen::server::daemon_main(
      argc, argv, [](const qwen::EngineOptions& o) { return qwen::Engine::open(o); });
}
