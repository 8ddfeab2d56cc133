// Shared helpers for the GoogleTest suite: source-tree paths and Status assertions.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace kvcc::testing {

inline std::string SourcePath(const std::string& rel) {
  return std::string(KVCC_SOURCE_DIR) + "/" + rel;
}
// ../shared next to the checkout (models and data the tests read).
inline std::string SharedPath(const std::string& rel) {
  return std::string(KVCC_SOURCE_DIR) + "/../shared/" + rel;
}
// A fresh empty directory under the build tree, unique per test.
std::string TempDir(const std::string& name);

}  // namespace kvcc::testing

#define KVCC_ASSERT_OK(expr)                                \
  do {                                                      \
    const auto& kvcc_status_ = (expr);                      \
    ASSERT_TRUE(kvcc_status_.ok()) << kvcc_status_;         \
  } while (0)
#define KVCC_ASSERT_OK_AND_ASSIGN(lhs, expr)                \
  auto lhs##_or = (expr);                                   \
  ASSERT_TRUE(lhs##_or.ok()) << lhs##_or.status();          \
  auto lhs = std::move(*lhs##_or)
