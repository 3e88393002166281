// Transport benchmark: a daemon (fake engine, no model: it echoes the input image) runs in a
// child process; the client sends 4096x4096 RGBA layers (float and 8-bit) and gets them back in
// the same format. Prints the round-trip throughput against a plain memcpy of the same bytes, and
// the latency of an empty job (1 step, 16x16 generate).
//   bench_transport [--size N] [--reps R]
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "qwen_image/client.h"
#include "server/fake_engine.h"
#include "server/server.h"

using namespace qwen;
using Clock = std::chrono::steady_clock;

namespace {

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Time of one memcpy of `bytes` (fresh destination each time, like a new segment).
double memcpy_time(size_t bytes, int reps) {
  std::vector<uint8_t> src(bytes, 7);
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    std::vector<uint8_t> dst;
    const auto t0 = Clock::now();
    dst.resize(bytes);  // page faults count, as they do for a new segment
    std::memcpy(dst.data(), src.data(), bytes);
    t.push_back(secs(Clock::now() - t0));
    if (dst[bytes / 2] != 7) std::abort();
  }
  return median(t);
}

void round_trip(const std::string& instance, ipc::PixelFormat f, int n, int reps) {
  const size_t bpp = size_t(ipc::channels(f)) * size_t(ipc::bytes_per_channel(f));
  const size_t bytes = size_t(n) * size_t(n) * bpp;
  std::vector<uint8_t> layer(bytes);
  for (size_t i = 0; i < bytes; ++i) layer[i] = uint8_t(i * 13);
  if (ipc::bytes_per_channel(f) == 4) {
    auto* fl = reinterpret_cast<float*>(layer.data());
    for (size_t i = 0; i < bytes / 4; ++i) fl[i] = float(i % 256) / 255.0f;
  }
  ipc::Client c = ipc::Client::connect(instance);
  ipc::JobRequest r;
  r.pipeline = "img2img";
  r.prompts = {"echo"};
  r.steps = 1;
  r.images.push_back(ipc::ImageView{n, n, f, 0, layer.data()});
  r.result_format = f;
  std::vector<double> t;
  for (int i = 0; i < reps + 1; ++i) {
    const auto t0 = Clock::now();
    auto out = c.run(r);
    const double dt = secs(Clock::now() - t0);
    if (out.size() != 1 || out[0].bytes.size() != bytes) {
      std::fprintf(stderr, "bad result\n");
      std::exit(1);
    }
    if (i > 0) t.push_back(dt);  // the first run warms up
  }
  const double rt = median(t);
  const double mc = memcpy_time(2 * bytes, reps);  // in + out
  const char* name = ipc::bytes_per_channel(f) == 4 ? "RGBA float32" : "RGBA 8-bit  ";
  std::printf(
      "%dx%d %s: %7.1f MiB each way, round trip %7.1f ms = %5.2f GB/s; "
      "memcpy of the same %7.1f MiB %6.1f ms = %5.2f GB/s; ratio %.1fx\n",
      n, n, name, bytes / 1048576.0, rt * 1e3, 2 * bytes / rt / 1e9, 2 * bytes / 1048576.0,
      mc * 1e3, 2 * bytes / mc / 1e9, rt / mc);
}

}  // namespace

int main(int argc, char** argv) {
  int n = 4096, reps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--size")) n = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
  }
  if (n < 16 || reps < 1) {
    std::fprintf(stderr, "usage: bench_transport [--size N>=16] [--reps R>=1]\n");
    return 2;
  }
  const std::string instance = "bench-" + std::to_string(::getpid());
  const pid_t daemon = ::fork();
  if (daemon == 0) {
    server::DaemonConfig cfg;
    cfg.instance = instance;
    cfg.fake_engine = true;
    cfg.lazy = false;
    cfg.preview_every = 0;
    server::Server s(cfg, [](const EngineOptions& o) { return server::make_fake_engine(o, 0); });
    if (!s.start().empty()) ::_exit(1);
    s.serve();
    ::_exit(0);
  }
  // Wait for the daemon.
  bool up = false;
  for (int i = 0; i < 500 && !up; ++i) {
    try {
      ipc::Client::connect(instance, 100);
      up = true;
    } catch (const ipc::ClientError&) {
      ::usleep(10000);
    }
  }
  int rc = 0;
  if (!up) {
    std::fprintf(stderr, "daemon did not start\n");
    rc = 1;
  } else {
    std::printf("client -> qwen-imaged (fake engine, child process) -> client, median of %d\n",
                reps);
    round_trip(instance, ipc::PixelFormat::RGBA_F32, n, reps);
    round_trip(instance, ipc::PixelFormat::RGBA8, n, reps);
    ipc::Client c = ipc::Client::connect(instance);
    ipc::JobRequest r;
    r.prompts = {"x"};
    r.steps = 1;
    r.width = r.height = 16;
    std::vector<double> t;
    for (int i = 0; i < 200; ++i) {
      const auto t0 = Clock::now();
      c.run(r);
      t.push_back(secs(Clock::now() - t0));
    }
    std::printf("empty job (generate 16x16, 1 step): median %.3f ms, p90 %.3f ms over 200\n",
                median(t) * 1e3, [&] {
                  std::sort(t.begin(), t.end());
                  return t[t.size() * 9 / 10] * 1e3;
                }());
  }
  ::kill(daemon, SIGTERM);
  ::waitpid(daemon, nullptr, 0);
  return rc;
}
