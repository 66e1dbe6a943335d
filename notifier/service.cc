#include "notifier/service.h"

#include "common/grpc_util.h"

namespace vigie::notifier {

grpc::ServerUnaryReactor* NotifierService::Notify(grpc::CallbackServerContext* ctx,
                                                  const v1::NotifyRequest* request,
                                                  v1::NotifyResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::StatusOr<Delivery::Accepted> r = delivery_->Accept(*request);
  if (r.ok()) response->set_duplicate(*r == Delivery::Accepted::kDuplicate);
  reactor->Finish(ToGrpcStatus(r.status()));
  return reactor;
}

}  // namespace vigie::notifier
