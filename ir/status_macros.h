// The one way library code propagates errors: KVCC_RETURN_IF_ERROR(expr) returns a non-OK
// absl::Status, KVCC_ASSIGN_OR_RETURN(lhs, expr) unwraps an absl::StatusOr or returns its
// status. Used by every layer; nothing else spells error propagation by hand.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define KVCC_STATUS_CONCAT_INNER(a, b) a##b
#define KVCC_STATUS_CONCAT(a, b) KVCC_STATUS_CONCAT_INNER(a, b)

#define KVCC_RETURN_IF_ERROR(expr)                                   \
  do {                                                               \
    if (::absl::Status kvcc_status_ = (expr); !kvcc_status_.ok()) {  \
      return kvcc_status_;                                           \
    }                                                                \
  } while (false)

// `lhs` may declare a variable (`auto x`, `std::string s`) or name an existing one.
#define KVCC_ASSIGN_OR_RETURN(lhs, expr) \
  KVCC_ASSIGN_OR_RETURN_IMPL(KVCC_STATUS_CONCAT(kvcc_statusor_, __LINE__), lhs, expr)

#define KVCC_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return std::move(tmp).status();   \
  lhs = std::move(tmp).value()
