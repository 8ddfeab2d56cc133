#include "ir/graph.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace kvcc::ir {

absl::StatusOr<Value*> Graph::NewValue(const std::string& name, TensorType type) {
  if (name.empty()) return absl::InvalidArgumentError("value name must not be empty");
  if (value_by_name_.count(name)) {
    return absl::AlreadyExistsError(absl::StrCat("value '", name, "' is defined twice"));
  }
  values_.push_back(std::make_unique<Value>());
  Value* v = values_.back().get();
  v->name = name;
  v->type = std::move(type);
  value_by_name_[name] = v;
  return v;
}

absl::StatusOr<Value*> Graph::AddInput(const std::string& name, TensorType type) {
  auto v = NewValue(name, std::move(type));
  if (v.ok()) inputs_.push_back(*v);
  return v;
}

absl::StatusOr<Value*> Graph::AddWeight(const std::string& name, TensorType type,
                                        WeightData data) {
  if (type.IsStatic() && static_cast<int64_t>(data.size) != type.NumBytes()) {
    return absl::InvalidArgumentError(absl::StrCat("weight '", name, "' of type ",
                                                   type.ToString(), " needs ", type.NumBytes(),
                                                   " bytes but has ", data.size));
  }
  auto v = NewValue(name, std::move(type));
  if (!v.ok()) return v;
  (*v)->weight = std::move(data);
  weights_.push_back(*v);
  return v;
}

absl::StatusOr<Node*> Graph::AddNode(const std::string& op, const std::string& name,
                                     std::vector<Value*> inputs,
                                     std::vector<std::pair<std::string, TensorType>> outputs,
                                     AttributeMap attrs) {
  if (name.empty() || node_by_name_.count(name)) {
    return absl::AlreadyExistsError(absl::StrCat("node name '", name, "' is empty or taken"));
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    const std::string& out_name = outputs[i].first;
    bool repeated = false;
    for (size_t j = 0; j < i; ++j) repeated |= outputs[j].first == out_name;
    if (repeated || out_name.empty() || value_by_name_.count(out_name)) {
      return absl::AlreadyExistsError(absl::StrCat("node '", name, "' output '", out_name,
                                                   "' is empty, repeated or already defined"));
    }
  }
  auto node = std::make_unique<Node>();
  node->op = op;
  node->name = name;
  node->attrs = std::move(attrs);
  node->inputs = std::move(inputs);
  for (Value* in : node->inputs) {
    if (in != nullptr) in->users.push_back(node.get());
  }
  for (auto& [out_name, type] : outputs) {
    Value* v = *NewValue(out_name, std::move(type));
    v->producer = node.get();
    node->outputs.push_back(v);
  }
  Node* raw = node.get();
  node_by_name_[name] = raw;
  nodes_.push_back(std::move(node));
  return raw;
}

namespace {
void EraseOneUse(Value* v, Node* user) {
  auto it = std::find(v->users.begin(), v->users.end(), user);
  if (it != v->users.end()) v->users.erase(it);
}
}  // namespace

void Graph::SetInput(Node* node, size_t index, Value* value) {
  if (node->inputs.size() <= index) node->inputs.resize(index + 1, nullptr);
  if (node->inputs[index] != nullptr) EraseOneUse(node->inputs[index], node);
  node->inputs[index] = value;
  if (value != nullptr) value->users.push_back(node);
}

void Graph::ReplaceAllUsesWith(Value* from, Value* to) {
  std::vector<Node*> users = from->users;
  for (Node* user : users) {
    for (size_t i = 0; i < user->inputs.size(); ++i) {
      if (user->inputs[i] == from) SetInput(user, i, to);
    }
  }
  for (Value*& out : outputs_) {
    if (out == from) out = to;
  }
}

absl::Status Graph::RemoveNode(Node* node) {
  for (Value* out : node->outputs) {
    if (!out->users.empty() ||
        std::find(outputs_.begin(), outputs_.end(), out) != outputs_.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot remove node '", node->name, "': its output '", out->name, "' is still used"));
    }
  }
  for (Value* in : node->inputs) {
    if (in != nullptr) EraseOneUse(in, node);
  }
  for (Value* out : node->outputs) {
    value_by_name_.erase(out->name);
    values_.erase(std::find_if(values_.begin(), values_.end(),
                               [out](const auto& p) { return p.get() == out; }));
  }
  node_by_name_.erase(node->name);
  nodes_.erase(std::find_if(nodes_.begin(), nodes_.end(),
                            [node](const auto& p) { return p.get() == node; }));
  return absl::OkStatus();
}

void Graph::RemoveUnusedWeights() {
  std::vector<Value*> kept;
  for (Value* w : weights_) {
    if (!w->users.empty()) {
      kept.push_back(w);
      continue;
    }
    value_by_name_.erase(w->name);
    values_.erase(std::find_if(values_.begin(), values_.end(),
                               [w](const auto& p) { return p.get() == w; }));
  }
  weights_ = std::move(kept);
}

void Graph::MoveLastNodeBefore(const Node* before) {
  auto pos = std::find_if(nodes_.begin(), nodes_.end(),
                          [before](const auto& p) { return p.get() == before; });
  if (pos == nodes_.end() || nodes_.empty()) return;
  std::rotate(pos, nodes_.end() - 1, nodes_.end());
}

Value* Graph::FindValue(const std::string& name) const {
  auto it = value_by_name_.find(name);
  return it == value_by_name_.end() ? nullptr : it->second;
}

Node* Graph::FindNode(const std::string& name) const {
  auto it = node_by_name_.find(name);
  return it == node_by_name_.end() ? nullptr : it->second;
}

std::string Graph::UniqueName(const std::string& base) const {
  if (!value_by_name_.count(base) && !node_by_name_.count(base)) return base;
  for (int i = 1;; ++i) {
    std::string name = absl::StrCat(base, ".", i);
    if (!value_by_name_.count(name) && !node_by_name_.count(name)) return name;
  }
}

}  // namespace kvcc::ir
