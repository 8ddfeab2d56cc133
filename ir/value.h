// A typed SSA value of the graph: a graph input, a weight (initializer) or a node output.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "ir/tensor_type.h"
#include "ir/weight_data.h"

namespace kvcc::ir {

class Node;

struct Value {
  std::string name;
  TensorType type;
  Node* producer = nullptr;         // null for graph inputs and weights
  std::vector<Node*> users;         // one entry per use (a node using it twice appears twice)
  std::optional<WeightData> weight;  // set exactly for weights

  bool is_weight() const { return weight.has_value(); }
};

}  // namespace kvcc::ir
