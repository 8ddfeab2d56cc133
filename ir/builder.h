// Adds schema-checked nodes to a graph: output types are inferred, names made unique.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/graph.h"

namespace kvcc::ir {

class Builder {
 public:
  explicit Builder(Graph* graph) : graph_(graph) {}

  // Adds `op` named `name` (made unique); outputs are named name, name.1, ...
  absl::StatusOr<std::vector<Value*>> Add(const std::string& op, const std::string& name,
                                          std::vector<Value*> inputs, AttributeMap attrs = {});
  // Single-output form.
  absl::StatusOr<Value*> Add1(const std::string& op, const std::string& name,
                              std::vector<Value*> inputs, AttributeMap attrs = {});

  Graph* graph() const { return graph_; }

 private:
  Graph* graph_;
};

}  // namespace kvcc::ir
