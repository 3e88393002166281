#include <signal.h>

#include <cstdio>
#include <cstring>

#include "server/fake_engine.h"
#include "server/log.h"
#include "server/server.h"

namespace qwen::server {

namespace {
Server* g_server = nullptr;
extern "C" void on_signal(int) {
  if (g_server) g_server->request_stop();
}
}  // namespace

int daemon_main(int argc, char** argv, EngineFactory real) {
  DaemonConfig cfg;
  const std::string err = parse_args(argc, argv, &cfg);
  if (err == "help") {
    std::fputs(usage_text(), stdout);
    return 0;
  }
  if (err == "version") {
    std::printf("qwen-imaged %s (protocol %u)\n", QWEN_IMAGE_VERSION, ipc::proto::kProtocolVersion);
    return 0;
  }
  if (!err.empty()) {
    std::fprintf(stderr, "qwen-imaged: %s\n", err.c_str());
    return 2;
  }
  std::string log_err;
  if (!log_to_file(cfg.log_file, &log_err)) {
    std::fprintf(stderr, "qwen-imaged: %s\n", log_err.c_str());
    return 2;
  }
  EngineFactory factory = std::move(real);
  if (cfg.fake_engine) {
    const int ms = cfg.fake_step_ms;
    factory = [ms](const EngineOptions& o) { return make_fake_engine(o, ms); };
    log_warn("running the FAKE engine (test aid): results are test patterns");
  }
  if (!factory) {
    log_error("this build has no inference engine (only --fake-engine works)");
    return 2;
  }
  Server server(cfg, factory);
  if (std::string e = server.start(); !e.empty()) {
    log_error(e);
    return 1;
  }
  g_server = &server;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  server.serve();
  g_server = nullptr;
  return 0;
}

}  // namespace qwen::server
