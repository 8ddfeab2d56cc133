#include "ir/printer.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kvcc::ir {

std::string Print(const Module& module) {
  const Graph& g = module.graph;
  std::string out = absl::StrCat("module ", module.config.architecture, " {\n  config ",
                                 module.config.ToJson(-1), "\n");
  for (const auto& [key, value] : module.metadata) {
    // Long blobs (calibration tables) are summarized so dumps stay readable.
    std::string shown = value.size() <= 80 ? value : absl::StrCat("<", value.size(), " bytes>");
    absl::StrAppend(&out, "  meta ", key, " = ", shown, "\n");
  }
  for (const Value* v : g.inputs()) {
    absl::StrAppend(&out, "  input %", v->name, " : ", v->type.ToString(), "\n");
  }
  for (const Value* w : g.weights()) {
    absl::StrAppend(&out, "  weight %", w->name, " : ", w->type.ToString(), "\n");
  }
  for (const auto& node : g.nodes()) {
    std::string outs = absl::StrJoin(node->outputs, ", ", [](std::string* s, const Value* v) {
      absl::StrAppend(s, "%", v->name, ":", v->type.ToString());
    });
    std::string ins = absl::StrJoin(node->inputs, ", ", [](std::string* s, const Value* v) {
      absl::StrAppend(s, v == nullptr ? "_" : absl::StrCat("%", v->name));
    });
    std::string attrs = absl::StrJoin(node->attrs, ", ", [](std::string* s, const auto& kv) {
      absl::StrAppend(s, kv.first, "=", AttributeToString(kv.second));
    });
    absl::StrAppend(&out, "  ", outs, " = ", node->op, "(", ins, ")");
    if (!attrs.empty()) absl::StrAppend(&out, " {", attrs, "}");
    absl::StrAppend(&out, "  # ", node->name, "\n");
  }
  for (const Value* v : g.outputs()) absl::StrAppend(&out, "  output %", v->name, "\n");
  absl::StrAppend(&out, "}\n");
  return out;
}

}  // namespace kvcc::ir
