#include "tools/command.h"

namespace kvcc::tools {

static std::vector<Command>& Registry() {
  static auto* commands = new std::vector<Command>();
  return *commands;
}

bool RegisterCommand(const Command& command) {
  Registry().push_back(command);
  return true;
}

const std::vector<Command>& Commands() { return Registry(); }

}  // namespace kvcc::tools
