// Node attributes: a small closed set of scalar and list kinds, kept in a sorted map so that
// printing and serialization are deterministic.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace kvcc::ir {

using Attribute =
    std::variant<int64_t, double, std::string, std::vector<int64_t>, std::vector<double>>;
using AttributeMap = std::map<std::string, Attribute>;

// Printer form: 3, 1e-05, "llama3", [1,2], [0.5,2].
std::string AttributeToString(const Attribute& attr);

}  // namespace kvcc::ir
