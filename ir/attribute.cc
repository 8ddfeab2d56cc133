#include "ir/attribute.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace kvcc::ir {
namespace {
// %.9g round-trips a float and prints doubles that came from float configs readably;
// %.17g keeps a double exact for values that need it.
std::string FormatDouble(double v) {
  std::string s = absl::StrFormat("%.9g", v);
  if (std::strtod(s.c_str(), nullptr) != v) s = absl::StrFormat("%.17g", v);
  return s;
}
}  // namespace

std::string AttributeToString(const Attribute& attr) {
  struct Visitor {
    std::string operator()(int64_t v) const { return absl::StrCat(v); }
    std::string operator()(double v) const { return FormatDouble(v); }
    std::string operator()(const std::string& v) const { return absl::StrCat("\"", v, "\""); }
    std::string operator()(const std::vector<int64_t>& v) const {
      return absl::StrCat("[", absl::StrJoin(v, ","), "]");
    }
    std::string operator()(const std::vector<double>& v) const {
      return absl::StrCat("[",
                          absl::StrJoin(v, ",",
                                        [](std::string* out, double d) {
                                          out->append(FormatDouble(d));
                                        }),
                          "]");
    }
  };
  return std::visit(Visitor{}, attr);
}

}  // namespace kvcc::ir
