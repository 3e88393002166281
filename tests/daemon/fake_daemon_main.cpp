// Test build of the daemon: qwen-imaged's daemon_main without the real engine, so only
// --fake-engine works. Keeps the daemon tests free of libtorch.
#include "server/server.h"

int main(int argc, char** argv) { return qwen::server::daemon_main(argc, argv, nullptr); }
