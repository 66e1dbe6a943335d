// gRPC plumbing shared by the control plane and the notifier.
#ifndef VIGIE_COMMON_GRPC_UTIL_H_
#define VIGIE_COMMON_GRPC_UTIL_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace vigie {

// Enables the built-in grpc.health.v1 service and server reflection for every server built
// afterwards, and links the health descriptor so reflection can describe it. Call once before
// building a grpc::ServerBuilder.
void EnableHealthAndReflection();

// absl::Status <-> grpc::Status, keeping the code and message.
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace vigie

#endif  // VIGIE_COMMON_GRPC_UTIL_H_
