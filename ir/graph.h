// The dataflow graph: owns values and nodes, keeps nodes in topological order and use lists
// in sync with node operands.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/node.h"
#include "ir/value.h"

namespace kvcc::ir {

class Graph {
 public:
  Graph() = default;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  // Each fails if the name is already taken.
  absl::StatusOr<Value*> AddInput(const std::string& name, TensorType type);
  absl::StatusOr<Value*> AddWeight(const std::string& name, TensorType type, WeightData data);
  // Appends a node whose outputs have the given names and types (see Builder for
  // schema-inferred types). A null input is an omitted optional operand.
  absl::StatusOr<Node*> AddNode(const std::string& op, const std::string& name,
                                std::vector<Value*> inputs,
                                std::vector<std::pair<std::string, TensorType>> outputs,
                                AttributeMap attrs = {});
  void AddOutput(Value* value) { outputs_.push_back(value); }

  // Rewiring for passes.
  void SetInput(Node* node, size_t index, Value* value);
  void ReplaceAllUsesWith(Value* from, Value* to);
  // Removes a node whose outputs are unused.
  absl::Status RemoveNode(Node* node);
  // Removes weights no node uses.
  void RemoveUnusedWeights();
  // Moves the last-added node to just before `before` (passes insert mid-graph this way).
  void MoveLastNodeBefore(const Node* before);

  Value* FindValue(const std::string& name) const;
  Node* FindNode(const std::string& name) const;
  const std::vector<std::unique_ptr<Node>>& nodes() const { return nodes_; }
  const std::vector<Value*>& inputs() const { return inputs_; }
  const std::vector<Value*>& weights() const { return weights_; }
  const std::vector<Value*>& outputs() const { return outputs_; }
  // A name not yet used by any value or node, derived from `base`.
  std::string UniqueName(const std::string& base) const;

 private:
  absl::StatusOr<Value*> NewValue(const std::string& name, TensorType type);

  std::vector<std::unique_ptr<Value>> values_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<Value*> inputs_, weights_, outputs_;
  std::unordered_map<std::string, Value*> value_by_name_;
  std::unordered_map<std::string, Node*> node_by_name_;
};

}  // namespace kvcc::ir
