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

// Enables the built-in grpc.health.v1 service and server reflection for every server built
// afterwards, and links the health descriptor so reflection can describe it. Call once before
// building a grpc::ServerBuilder.
void EnableHealthAndReflection();

// Builds and starts the process's one gRPC server on `listen` (host:port) with `services`
// (not owned; they must outlive the server), health and reflection. kUnavailable if it cannot
// listen.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartGrpcServer(
    const std::string& listen, int max_receive_message_bytes,
    const std::vector<grpc::Service*>& services);

// absl::Status <-> grpc::Status, keeping the code and message.
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace vigie

#endif  // VIGIE_COMMON_GRPC_UTIL_H_
