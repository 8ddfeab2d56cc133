// An operation of the kvcc op domain with its operands, results and attributes.
#pragma once

#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "ir/attribute.h"
#include "ir/value.h"

namespace kvcc::ir {

class Node {
 public:
  std::string op;    // op type, e.g. "rms_norm"; see ir/op_schema.h
  std::string name;  // unique within the graph
  std::vector<Value*> inputs;  // nullptr marks an omitted optional input
  std::vector<Value*> outputs;
  AttributeMap attrs;

  bool Has(absl::string_view attr) const { return attrs.count(std::string(attr)) != 0; }
  // Typed attribute reads; a missing or mistyped attribute is an error naming node and key.
  absl::StatusOr<int64_t> Int(absl::string_view attr) const;
  absl::StatusOr<double> Float(absl::string_view attr) const;
  absl::StatusOr<std::string> Str(absl::string_view attr) const;
  absl::StatusOr<std::vector<int64_t>> Ints(absl::string_view attr) const;
  absl::StatusOr<std::vector<double>> Floats(absl::string_view attr) const;
  int64_t IntOr(absl::string_view attr, int64_t fallback) const;
  double FloatOr(absl::string_view attr, double fallback) const;
  std::string StrOr(absl::string_view attr, std::string fallback) const;

  Value* input(size_t i) const { return i < inputs.size() ? inputs[i] : nullptr; }
  Value* output(size_t i = 0) const { return i < outputs.size() ? outputs[i] : nullptr; }
};

}  // namespace kvcc::ir
