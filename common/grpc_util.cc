#include "common/grpc_util.h"

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.pb.h"
#include "grpcpp/health_check_service_interface.h"

namespace vigie {

void EnableHealthAndReflection() {
  grpc::EnableDefaultHealthCheckService(true);
  // Debian's gRPC 1.51 serves grpc.health.v1.Health without its descriptor; referencing our
  // compiled copy puts it in the generated pool that reflection reads.
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

}  // namespace vigie
