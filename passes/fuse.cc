#include "passes/fuse.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ir/builder.h"
#include "ir/group_quant.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"

namespace kvcc::passes {
namespace {

using ir::Graph;
using ir::Node;
using ir::Value;

// A 4-bit linear, in the plain layout of ir/group_quant.h or the packed one: in both the rows of
// codes and scale/zero operands concatenate like float weight rows (the packed layout is
// strip-major, each member a whole number of 16-row strips).
bool IsW4(const Node* n) {
  const Value* w = n->input(1);
  const Value* scales = n->input(3);
  const Value* zeros = n->input(4);
  const bool packed = n->Has(ir::kW4LayoutAttr);
  return (packed ? w->type.dtype == ir::DType::kI32 : w->type.dtype == ir::DType::kI4) &&
         n->IntOr("group_size", 0) > 0 && scales != nullptr && scales->is_weight() &&
         (zeros == nullptr || zeros->is_weight()) && n->inputs.size() <= 5;
}

// The `linear` node producing `v`, if it is a float one or a 4-bit one.
Node* FusableLinear(Value* v) {
  if (v == nullptr || v->producer == nullptr || v->producer->op != ir::op::kLinear) return nullptr;
  Node* n = v->producer;
  const Value* w = n->input(1);
  if (w == nullptr || !w->is_weight()) return nullptr;
  if (const Value* b = n->input(2); b != nullptr && !b->is_weight()) return nullptr;
  if (IsW4(n)) return n;
  if (n->inputs.size() > 3) {
    for (size_t i = 3; i < n->inputs.size(); ++i) {
      if (n->inputs[i] != nullptr) return nullptr;
    }
  }
  if (!ir::IsFloat(w->type.dtype)) return nullptr;
  return n;
}

// The input of the `rotary` node producing `v` (q and k reach attention through rotary).
Value* BeforeRotary(Value* v) {
  if (v == nullptr || v->producer == nullptr || v->producer->op != ir::op::kRotary) return nullptr;
  return v->producer->input(0);
}

bool Compatible(const std::vector<Node*>& group) {
  const Node* first = group[0];
  if (first == nullptr) return false;
  const Value* x = first->input(0);
  const ir::TensorType& w0 = first->input(1)->type;
  const Value* b0 = first->input(2);
  for (const Node* n : group) {
    if (n == nullptr || n->input(0) != x) return false;
    const ir::TensorType& w = n->input(1)->type;
    if (w.dtype != w0.dtype || w.shape.size() != 2 || w.shape[1] != w0.shape[1]) return false;
    const Value* b = n->input(2);
    if ((b == nullptr) != (b0 == nullptr)) return false;
    if (b != nullptr && b->type.dtype != b0->type.dtype) return false;
    if (IsW4(n) != IsW4(first)) return false;
    if (IsW4(n)) {
      // Same layout, group size, scale dtype and zero points present or not.
      const Value* s = n->input(3);
      const Value* z = n->input(4);
      const Value* s0 = first->input(3);
      const Value* z0 = first->input(4);
      if (n->StrOr(ir::kW4LayoutAttr, "") != first->StrOr(ir::kW4LayoutAttr, "") ||
          n->IntOr(ir::kW4LayoutVersionAttr, 0) != first->IntOr(ir::kW4LayoutVersionAttr, 0) ||
          n->IntOr("group_size", 0) != first->IntOr("group_size", 0) ||
          s->type.dtype != s0->type.dtype || (z == nullptr) != (z0 == nullptr) ||
          (z != nullptr && z->type.dtype != z0->type.dtype)) {
        return false;
      }
      // Each member's i4 codes and zeros end on a byte, so their bytes concatenate.
      for (const Value* v : {static_cast<const Value*>(n->input(1)), z}) {
        if (v != nullptr && v->type.dtype == ir::DType::kI4 && v->type.NumElements() % 2 != 0) {
          return false;
        }
      }
    }
  }
  // Distinct nodes: a graph feeding one projection to two roles is not a fusion candidate.
  for (size_t i = 0; i < group.size(); ++i) {
    for (size_t j = i + 1; j < group.size(); ++j) {
      if (group[i] == group[j]) return false;
    }
  }
  return true;
}

// Replaces `name_part` in `base` by `fused_part`, or appends `suffix` when it does not occur.
std::string FusedName(const std::string& base, const std::string& name_part,
                      const std::string& fused_part, const std::string& suffix) {
  size_t at = base.rfind(name_part);
  if (at == std::string::npos) return base + suffix;
  return base.substr(0, at) + fused_part + base.substr(at + name_part.size());
}

absl::StatusOr<Value*> ConcatRows(Graph& g, const std::vector<Value*>& parts,
                                  const std::string& name) {
  std::vector<uint8_t> bytes;
  int64_t rows = 0;
  for (const Value* p : parts) {
    bytes.insert(bytes.end(), p->weight->bytes, p->weight->bytes + p->weight->size);
    rows += p->type.shape[0];
  }
  ir::TensorType type = parts[0]->type;
  type.shape[0] = rows;
  return g.AddWeight(g.UniqueName(name), type, ir::WeightData::FromVector(std::move(bytes)));
}

// Fuses `group` (linears sharing an input) into one linear + split whose outputs take over the
// members' uses, in group order.
absl::Status FuseGroup(Graph& g, const std::vector<Node*>& group, const std::string& name_part,
                       const std::string& fused_part) {
  std::vector<Value*> weights, biases;
  std::vector<int64_t> sizes;
  for (Node* n : group) {
    weights.push_back(n->input(1));
    if (n->input(2) != nullptr) biases.push_back(n->input(2));
    sizes.push_back(n->input(1)->type.shape[0]);
  }
  const std::string suffix = absl::StrCat(".", fused_part);
  KVCC_ASSIGN_OR_RETURN(auto w, ConcatRows(g, weights, FusedName(weights[0]->name, name_part, fused_part, suffix)));
  std::vector<Value*> inputs = {group[0]->input(0), w};
  if (!biases.empty()) {
    KVCC_ASSIGN_OR_RETURN(auto b, ConcatRows(g, biases, FusedName(biases[0]->name, name_part, fused_part, suffix)));
    inputs.push_back(b);
  }
  ir::AttributeMap attrs;
  if (IsW4(group[0])) {
    // ir/group_quant.h: scales and zeros (or the scale/zero words) are [out, in / G] rows like
    // the codes'; the layout attributes carry over.
    if (inputs.size() == 2) inputs.push_back(nullptr);
    for (size_t i : {size_t{3}, size_t{4}}) {
      std::vector<Value*> parts;
      for (Node* n : group) {
        if (n->input(i) != nullptr) parts.push_back(n->input(i));
      }
      if (parts.empty()) continue;
      KVCC_ASSIGN_OR_RETURN(auto cat, ConcatRows(g, parts, FusedName(parts[0]->name, name_part, fused_part, suffix)));
      inputs.resize(i);
      inputs.push_back(cat);
    }
    for (const char* key : {"group_size", ir::kW4LayoutAttr, ir::kW4LayoutVersionAttr}) {
      if (auto it = group[0]->attrs.find(key); it != group[0]->attrs.end()) attrs[key] = it->second;
    }
  }
  // Insert before the earliest member so every user of the split outputs comes later.
  const Node* earliest = nullptr;
  for (const auto& n : g.nodes()) {
    if (std::find(group.begin(), group.end(), n.get()) != group.end()) {
      earliest = n.get();
      break;
    }
  }
  ir::Builder builder(&g);
  const std::string node_name = FusedName(group[0]->name, name_part, fused_part, suffix);
  KVCC_ASSIGN_OR_RETURN(auto fused, builder.Add1(ir::op::kLinear, node_name, inputs, attrs));
  g.MoveLastNodeBefore(earliest);
  KVCC_ASSIGN_OR_RETURN(auto parts, builder.Add(ir::op::kSplit, node_name + ".split", {fused}, {{"sizes", sizes}}));
  g.MoveLastNodeBefore(earliest);
  for (size_t i = 0; i < group.size(); ++i) {
    g.ReplaceAllUsesWith(group[i]->output(), parts[i]);
  }
  for (Node* n : group) {
    KVCC_RETURN_IF_ERROR(g.RemoveNode(n));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status FusePass::Run(ir::Module& module) {
  Graph& g = module.graph;
  fused_qkv_ = fused_gate_up_ = 0;
  // Collect groups first: fusing rewires the graph and invalidates node iteration.
  std::vector<std::vector<Node*>> qkv_groups, gate_up_groups;
  // A linear claimed by two patterns (an unusual graph) is fused at most once.
  std::set<const Node*> claimed;
  auto claim = [&claimed](const std::vector<Node*>& group) {
    for (const Node* n : group) {
      if (claimed.count(n)) return false;
    }
    claimed.insert(group.begin(), group.end());
    return true;
  };
  for (const auto& n : g.nodes()) {
    if (options_.qkv && n->op == ir::op::kAttention) {
      Node* cache = n->input(1) != nullptr ? n->input(1)->producer : nullptr;
      if (cache == nullptr || cache->op != ir::op::kKvCacheWrite) continue;
      std::vector<Node*> group = {FusableLinear(BeforeRotary(n->input(0))),
                                  FusableLinear(BeforeRotary(cache->input(0))),
                                  FusableLinear(cache->input(1))};
      if (Compatible(group) && claim(group)) qkv_groups.push_back(group);
    }
    if (options_.gate_up && n->op == ir::op::kSiluMul) {
      std::vector<Node*> group = {FusableLinear(n->input(0)), FusableLinear(n->input(1))};
      if (Compatible(group) && claim(group)) gate_up_groups.push_back(group);
    }
  }
  for (const auto& group : qkv_groups) {
    KVCC_RETURN_IF_ERROR(FuseGroup(g, group, "q_proj", "qkv_proj"));
    ++fused_qkv_;
  }
  for (const auto& group : gate_up_groups) {
    KVCC_RETURN_IF_ERROR(FuseGroup(g, group, "gate_proj", "gate_up_proj"));
    ++fused_gate_up_;
  }
  g.RemoveUnusedWeights();
  return absl::OkStatus();
}

}  // namespace kvcc::passes
