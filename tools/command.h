// Subcommands of the `kvcc` executable register themselves here; main dispatches on argv[1].
#pragma once

#include <string>
#include <vector>

namespace kvcc::tools {

// `args` are the positional arguments after the subcommand, flags already parsed by absl.
using CommandFn = int (*)(const std::vector<std::string>& args);

struct Command {
  const char* name;
  const char* usage;  // one line: "import <hf_dir> -o <out_dir>"
  CommandFn fn;
};

bool RegisterCommand(const Command& command);
const std::vector<Command>& Commands();

}  // namespace kvcc::tools

// In a tools/cmd_*.cc file: KVCC_COMMAND(import, "import <hf_dir> -o DIR", RunImport);
#define KVCC_COMMAND(name, usage, fn) \
  static const bool kvcc_registered_##name = ::kvcc::tools::RegisterCommand({#name, usage, fn})
