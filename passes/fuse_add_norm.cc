#include "passes/fuse_add_norm.h"

#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"

namespace kvcc::passes {
namespace {

using ir::Graph;
using ir::Node;
using ir::Value;

absl::Status FusePair(Graph& g, Node* add, Node* norm) {
  Value* sum = add->output();
  Value* normed = norm->output();
  KVCC_ASSIGN_OR_RETURN(auto eps, norm->Float("eps"));
  // Fresh names while the old values still exist; the add's position is the earliest point
  // where all three operands are defined and before every user of either result.
  KVCC_ASSIGN_OR_RETURN(auto fused, g.AddNode("add_rms_norm", g.UniqueName(norm->name + ".fused"),
                                              {add->input(0), add->input(1), norm->input(1)},
                                              {{g.UniqueName(sum->name + ".fused"), sum->type},
                                               {g.UniqueName(normed->name + ".fused"), normed->type}},
                                              {{"eps", eps}}));
  g.MoveLastNodeBefore(add);
  g.ReplaceAllUsesWith(normed, fused->outputs[1]);
  g.ReplaceAllUsesWith(sum, fused->outputs[0]);
  KVCC_RETURN_IF_ERROR(g.RemoveNode(norm));
  return g.RemoveNode(add);
}

}  // namespace

absl::Status FuseAddNormPass::Run(ir::Module& module) {
  Graph& g = module.graph;
  fused_ = 0;
  // Collect first: rewriting invalidates node iteration. Each add fuses with at most one norm
  // (its first rms_norm user); a second norm of the same sum reads the fused node's sum.
  std::vector<std::pair<Node*, Node*>> pairs;
  std::set<const Node*> claimed;
  for (const auto& n : g.nodes()) {
    if (n->op != ir::op::kRmsNorm || n->inputs.size() != 2) continue;
    Value* x = n->input(0);
    const Value* w = n->input(1);
    if (x == nullptr || w == nullptr || !w->is_weight()) continue;
    Node* add = x->producer;
    if (add == nullptr || add->op != ir::op::kAdd || add->inputs.size() != 2) continue;
    if (add->input(0) == nullptr || add->input(1) == nullptr) continue;
    if (!claimed.insert(add).second) continue;
    pairs.emplace_back(add, n.get());
  }
  for (const auto& [add, norm] : pairs) {
    if (absl::Status s = FusePair(g, add, norm); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("fusing '", add->name, "' with '", norm->name,
                                                  "': ", s.message()));
    }
    ++fused_;
  }
  return absl::OkStatus();
}

}  // namespace kvcc::passes
