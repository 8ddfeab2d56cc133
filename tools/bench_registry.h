// Sub-benchmarks of `kvcc bench <name> ...`: each tools/cmd_bench_<name>.cc registers itself
// here (KVCC_BENCH) and tools/cmd_bench.cc dispatches on the first argument, so new benches
// (cpu, memory, attention, ...) need no edit to a shared file.
#pragma once

#include <vector>

#include "tools/command.h"

namespace kvcc::tools {

struct Bench {
  const char* name;
  const char* usage;  // one line after "kvcc bench "
  CommandFn fn;       // gets the arguments after the bench name
};

inline std::vector<Bench>& BenchRegistry() {
  static auto* benches = new std::vector<Bench>();
  return *benches;
}

inline bool RegisterBench(const Bench& bench) {
  BenchRegistry().push_back(bench);
  return true;
}

}  // namespace kvcc::tools

#define KVCC_BENCH(name, usage, fn) \
  static const bool kvcc_bench_registered_##name = ::kvcc::tools::RegisterBench({#name, usage, fn})
