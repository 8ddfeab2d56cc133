// Runs a pipeline of passes over a module: verifies the module after every pass (an invalid
// result is reported with the pass's name) and can print the IR after a named pass.
#pragma once

#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "ir/module.h"
#include "passes/pass.h"

namespace kvcc::passes {

class PassManager {
 public:
  void Add(std::unique_ptr<Pass> pass) { passes_.push_back(std::move(pass)); }

  // After the pass named `pass_name` runs, ir::Print of the module goes to `out` (which must
  // outlive Run). Run fails if no pass of the pipeline has that name, so a typo in
  // `--dump-after` is not silently ignored.
  void DumpAfter(const std::string& pass_name, std::ostream* out) {
    dump_after_ = pass_name;
    dump_stream_ = out;
  }

  // Names of the passes in pipeline order.
  std::vector<std::string> PassNames() const;

  absl::Status Run(ir::Module& module);

 private:
  std::vector<std::unique_ptr<Pass>> passes_;
  std::string dump_after_;
  std::ostream* dump_stream_ = nullptr;
};

}  // namespace kvcc::passes
