// The `kvcc` command line: dispatches to the registered subcommands.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "ir/startup_marks.h"
#include "pipeline/model_opener.h"
#include "tools/command.h"

namespace {

void PrintUsage() {
  std::fprintf(stderr, "usage: kvcc <command> [args] [--flags]\ncommands:\n");
  for (const auto& c : kvcc::tools::Commands()) std::fprintf(stderr, "  kvcc %s\n", c.usage);
}

// absl flag names cannot contain '-'; accept the documented --max-len spelling.
std::string NormalizeFlag(const char* arg) {
  std::string s(arg);
  if (s.size() < 3 || s[0] != '-' || s[1] != '-') return s;
  size_t end = s.find('=');
  if (end == std::string::npos) end = s.size();
  for (size_t i = 2; i < end; ++i) {
    if (s[i] == '-') s[i] = '_';
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  // Past `ulimit -f` a write then fails with EFBIG, which the atomic writers report with the
  // path (removing their temporary file), instead of the signal killing kvcc mid-write.
  std::signal(SIGXFSZ, SIG_IGN);
  kvcc::ir::StartupMark("main");
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "help") == 0) {
    PrintUsage();
    return argc < 2 ? 2 : 0;
  }
  const kvcc::tools::Command* command = nullptr;
  for (const auto& c : kvcc::tools::Commands()) {
    if (std::strcmp(c.name, argv[1]) == 0) command = &c;
  }
  if (command == nullptr) {
    std::fprintf(stderr, "kvcc: unknown command '%s'\n", argv[1]);
    PrintUsage();
    return 2;
  }
  // `kvcc <command> --help` lists the command's own flags (those of tools/cmd_<command>*.cc)
  // and the shared ones (tools/flags.cc).
  absl::SetProgramUsageMessage(std::string("kvcc ") + command->usage);
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [own = std::string("cmd_") + command->name](absl::string_view file) {
    return absl::StrContains(file, own) || absl::EndsWith(file, "tools/flags.cc");
  };
  absl::SetFlagsUsageConfig(usage);
  std::vector<std::string> storage = {std::string("kvcc ") + argv[1]};
  for (int i = 2; i < argc; ++i) storage.push_back(NormalizeFlag(argv[i]));
  std::vector<char*> args;
  for (auto& s : storage) args.push_back(s.data());
  std::vector<char*> rest = absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  std::vector<std::string> positional(rest.begin() + 1, rest.end());
  const int rc = command->fn(positional);
  kvcc::pipeline::AwaitGpuPrewarm();
  return rc;
}
