// The kvcc op domain ("ai.kvcc"): for every op, its operand counts, required attributes and
// output-type inference. The verifier and the builder both go through these schemas.
#pragma once

#include <functional>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "ir/node.h"

namespace kvcc::ir {

inline constexpr char kOpDomain[] = "ai.kvcc";
inline constexpr int kOpsetVersion = 1;

enum class AttrKind { kInt, kFloat, kString, kInts, kFloats };

struct OpSchema {
  std::string op;
  int min_inputs = 0;
  int max_inputs = 0;
  int num_outputs = 1;  // -1: one per entry of the "sizes" attribute (split)
  std::vector<std::pair<std::string, AttrKind>> required_attrs;
  // Output types from the node's input types and attributes; errors name the node.
  std::function<absl::StatusOr<std::vector<TensorType>>(const Node&)> infer;
};

// nullptr for an op outside the domain.
const OpSchema* FindOpSchema(absl::string_view op);
const std::vector<OpSchema>& AllOpSchemas();

// Checks operand counts and attribute presence/kinds, then infers output types.
absl::StatusOr<std::vector<TensorType>> InferOutputTypes(const Node& node);

}  // namespace kvcc::ir
