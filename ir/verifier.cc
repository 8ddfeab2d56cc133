#include "ir/verifier.h"

#include <algorithm>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "ir/op_schema.h"
#include "ir/status_macros.h"

namespace kvcc::ir {
namespace {

size_t CountUses(const Graph& g, const Value* v) {
  size_t n = 0;
  for (const auto& node : g.nodes()) n += std::count(node->inputs.begin(), node->inputs.end(), v);
  return n;
}

absl::Status CheckConfig(const ModelConfig& c) {
  if (c.num_layers <= 0 || c.hidden_size <= 0 || c.num_heads <= 0 || c.num_kv_heads <= 0 ||
      c.head_dim <= 0 || c.vocab_size <= 0) {
    return absl::InvalidArgumentError("module config has non-positive dimensions");
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("module config: ", c.num_heads,
                                                   " heads not a multiple of ", c.num_kv_heads,
                                                   " kv heads"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Verify(const Module& module) {
  KVCC_RETURN_IF_ERROR(CheckConfig(module.config));
  const Graph& g = module.graph;
  // Values available so far: inputs and weights, then node outputs in order. Requiring every
  // operand to be defined earlier in node order rules out cycles.
  std::unordered_set<const Value*> defined;
  for (const Value* v : g.inputs()) {
    if (v->producer != nullptr || v->is_weight()) {
      return absl::InternalError(absl::StrCat("graph input '", v->name, "' has a producer"));
    }
    defined.insert(v);
  }
  for (const Value* w : g.weights()) {
    if (!w->is_weight()) {
      return absl::InternalError(absl::StrCat("weight '", w->name, "' has no data"));
    }
    if (!w->type.IsStatic() || static_cast<int64_t>(w->weight->size) != w->type.NumBytes()) {
      return absl::InvalidArgumentError(absl::StrCat("weight '", w->name, "' of type ",
                                                     w->type.ToString(), " holds ",
                                                     w->weight->size, " bytes"));
    }
    defined.insert(w);
  }
  for (const auto& node : g.nodes()) {
    for (size_t i = 0; i < node->inputs.size(); ++i) {
      const Value* in = node->inputs[i];
      if (in == nullptr) continue;
      if (!defined.count(in)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "node '", node->name, "' input ", i, " '", in->name,
            "' is not defined before use (dangling value or cycle)"));
      }
      if (std::count(in->users.begin(), in->users.end(), node.get()) !=
          std::count(node->inputs.begin(), node->inputs.end(), in)) {
        return absl::InternalError(absl::StrCat("use list of '", in->name,
                                                "' is out of sync with node '", node->name, "'"));
      }
    }
    KVCC_ASSIGN_OR_RETURN(auto types, InferOutputTypes(*node));
    if (types.size() != node->outputs.size()) {
      return absl::InvalidArgumentError(absl::StrCat("node '", node->name, "' has ",
                                                     node->outputs.size(), " outputs, expected ",
                                                     types.size()));
    }
    for (size_t i = 0; i < types.size(); ++i) {
      const Value* out = node->outputs[i];
      if (out->producer != node.get()) {
        return absl::InternalError(absl::StrCat("output '", out->name, "' of node '",
                                                node->name, "' has another producer"));
      }
      if (out->type != types[i]) {
        return absl::InvalidArgumentError(absl::StrCat(
            "node '", node->name, "' output '", out->name, "' is typed ", out->type.ToString(),
            " but the op gives ", types[i].ToString()));
      }
      if (!defined.insert(out).second) {
        return absl::InvalidArgumentError(absl::StrCat("value '", out->name, "' defined twice"));
      }
    }
  }
  for (const Value* v : defined) {
    if (v->users.size() != CountUses(g, v)) {
      return absl::InternalError(absl::StrCat("use list of '", v->name, "' has stale entries"));
    }
  }
  if (g.outputs().empty()) return absl::InvalidArgumentError("graph has no outputs");
  for (const Value* out : g.outputs()) {
    if (!defined.count(out)) {
      return absl::InvalidArgumentError(absl::StrCat("graph output '", out->name,
                                                     "' is not defined"));
    }
  }
  return absl::OkStatus();
}

}  // namespace kvcc::ir
