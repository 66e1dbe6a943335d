// gRPC plumbing shared by the control plane and the notifier.
#ifndef VIGIE_COMMON_GRPC_UTIL_H_
#define VIGIE_COMMON_GRPC_UTIL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/server.h"
#include "grpcpp/support/status.h"

namespace vigie {

// Enables the built-in grpc.health.v1 service for every server built afterwards, and links the
// health descriptor so reflection can describe it. Reflection itself is added per server (see
// GrpcServers in grpc_security.h), never globally.
void EnableHealthAndReflection();

// absl::Status <-> grpc::Status, keeping the code and message.
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace vigie

#endif  // VIGIE_COMMON_GRPC_UTIL_H_
