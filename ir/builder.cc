#include "ir/builder.h"

#include "absl/strings/str_cat.h"
#include "ir/op_schema.h"
#include "ir/status_macros.h"

namespace kvcc::ir {

absl::StatusOr<std::vector<Value*>> Builder::Add(const std::string& op, const std::string& name,
                                                 std::vector<Value*> inputs, AttributeMap attrs) {
  // Infer on a detached node first so a rejected node leaves the graph untouched.
  Node probe;
  probe.op = op;
  probe.name = name;
  probe.inputs = inputs;
  probe.attrs = attrs;
  KVCC_ASSIGN_OR_RETURN(auto types, InferOutputTypes(probe));
  std::string node_name = graph_->UniqueName(name);
  std::vector<std::pair<std::string, TensorType>> outs;
  for (size_t i = 0; i < types.size(); ++i) {
    std::string out = i == 0 ? node_name : absl::StrCat(node_name, ".", i);
    outs.emplace_back(graph_->UniqueName(out), types[i]);
  }
  KVCC_ASSIGN_OR_RETURN(auto node, graph_->AddNode(op, node_name, std::move(inputs), std::move(outs), std::move(attrs)));
  return node->outputs;
}

absl::StatusOr<Value*> Builder::Add1(const std::string& op, const std::string& name,
                                     std::vector<Value*> inputs, AttributeMap attrs) {
  KVCC_ASSIGN_OR_RETURN(auto outs, Add(op, name, std::move(inputs), std::move(attrs)));
  if (outs.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(op, " '", name, "' has ", outs.size(),
                                                   " outputs, expected 1"));
  }
  return outs.front();
}

}  // namespace kvcc::ir
