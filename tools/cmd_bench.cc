// `kvcc bench <name> ...`: dispatches to the benchmarks registered in tools/bench_registry.h.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tools/bench_registry.h"
#include "tools/command.h"

namespace kvcc::tools {
namespace {

void PrintBenches() {
  std::fprintf(stderr, "usage: kvcc bench <name> [args]\nbenchmarks:\n");
  for (const Bench& b : BenchRegistry()) std::fprintf(stderr, "  kvcc bench %s\n", b.usage);
}

int RunBench(const std::vector<std::string>& args) {
  if (args.empty()) {
    PrintBenches();
    return 2;
  }
  for (const Bench& b : BenchRegistry()) {
    if (args[0] == b.name) return b.fn(std::vector<std::string>(args.begin() + 1, args.end()));
  }
  std::fprintf(stderr, "kvcc bench: unknown benchmark '%s'\n", args[0].c_str());
  PrintBenches();
  return 2;
}

}  // namespace
}  // namespace kvcc::tools

KVCC_COMMAND(bench, "bench <name> [args]   (kvcc bench for the list)", kvcc::tools::RunBench);
