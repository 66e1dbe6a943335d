// Status helpers that abseil 20220623 lacks.
#ifndef VIGIE_COMMON_STATUS_H_
#define VIGIE_COMMON_STATUS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define VIGIE_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::absl::Status vigie_status_ = (expr);         \
    if (!vigie_status_.ok()) return vigie_status_; \
  } while (0)

#define VIGIE_STATUS_CONCAT_INNER_(a, b) a##b
#define VIGIE_STATUS_CONCAT_(a, b) VIGIE_STATUS_CONCAT_INNER_(a, b)

// `VIGIE_ASSIGN_OR_RETURN(auto x, Foo());` assigns the value of an absl::StatusOr, or returns
// its error from the enclosing function.
#define VIGIE_ASSIGN_OR_RETURN(lhs, expr) \
  VIGIE_ASSIGN_OR_RETURN_IMPL_(VIGIE_STATUS_CONCAT_(vigie_statusor_, __LINE__), lhs, expr)
#define VIGIE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)  \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

namespace vigie {

// Prefixes the message of a non-OK status with `context` ("context: message").
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace vigie

#endif  // VIGIE_COMMON_STATUS_H_
