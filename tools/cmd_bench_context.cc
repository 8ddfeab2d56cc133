// `kvcc bench context`: what a fresh process pays for CUDA before kvcc does anything: the driver's
// initialisation (cudaGetDeviceCount) and the primary context (cudaSetDevice + cudaFree(0)).
// `kvcc bench startup` spawns it to measure the floor under process start to first token.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "ir/startup_marks.h"
#include "tools/bench_registry.h"

namespace kvcc::tools {
namespace {

int RunBenchContext(const std::vector<std::string>& args) {
  if (!args.empty()) {
    std::fprintf(stderr, "usage: kvcc bench context\n");
    return 2;
  }
  const int64_t t0 = ir::UnixNanos();
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::fprintf(stderr, "kvcc bench context: no CUDA device\n");
    return 1;
  }
  const int64_t t1 = ir::UnixNanos();
  ir::StartupMark("driver");
  if (cudaSetDevice(0) != cudaSuccess || cudaFree(nullptr) != cudaSuccess) {
    std::fprintf(stderr, "kvcc bench context: cannot create the primary context of device 0\n");
    return 1;
  }
  const int64_t t2 = ir::UnixNanos();
  ir::StartupMark("context");
  std::printf("driver initialisation %.1f ms, primary context %.1f ms\n", (t1 - t0) / 1e6,
              (t2 - t1) / 1e6);
  return 0;
}

}  // namespace
}  // namespace kvcc::tools

KVCC_BENCH(context, "context", kvcc::tools::RunBenchContext);
