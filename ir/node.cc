#include "ir/node.h"

#include "absl/strings/str_cat.h"

namespace kvcc::ir {
namespace {
template <typename T>
absl::StatusOr<T> Get(const Node& node, absl::string_view attr, const char* kind) {
  auto it = node.attrs.find(std::string(attr));
  if (it == node.attrs.end()) {
    return absl::NotFoundError(
        absl::StrCat("node '", node.name, "' (", node.op, ") has no attribute '", attr, "'"));
  }
  if (const T* v = std::get_if<T>(&it->second)) return *v;
  return absl::InvalidArgumentError(absl::StrCat("node '", node.name, "' (", node.op,
                                                 ") attribute '", attr, "' is not ", kind));
}
}  // namespace

absl::StatusOr<int64_t> Node::Int(absl::string_view attr) const {
  return Get<int64_t>(*this, attr, "an int");
}
absl::StatusOr<double> Node::Float(absl::string_view attr) const {
  return Get<double>(*this, attr, "a float");
}
absl::StatusOr<std::string> Node::Str(absl::string_view attr) const {
  return Get<std::string>(*this, attr, "a string");
}
absl::StatusOr<std::vector<int64_t>> Node::Ints(absl::string_view attr) const {
  return Get<std::vector<int64_t>>(*this, attr, "an int list");
}
absl::StatusOr<std::vector<double>> Node::Floats(absl::string_view attr) const {
  return Get<std::vector<double>>(*this, attr, "a float list");
}
int64_t Node::IntOr(absl::string_view attr, int64_t fallback) const {
  auto v = Int(attr);
  return v.ok() ? *v : fallback;
}
double Node::FloatOr(absl::string_view attr, double fallback) const {
  auto v = Float(attr);
  return v.ok() ? *v : fallback;
}
std::string Node::StrOr(absl::string_view attr, std::string fallback) const {
  auto v = Str(attr);
  return v.ok() ? *v : fallback;
}

}  // namespace kvcc::ir
