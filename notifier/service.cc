#include "notifier/service.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_util.h"

namespace vigie::notifier {

grpc::ServerUnaryReactor* NotifierService::Notify(grpc::CallbackServerContext* ctx,
                                                  const v1::NotifyRequest* request,
                                                  v1::NotifyResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  std::shared_ptr<Delivery> delivery = delivery_->Get();
  if (!delivery) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "reloading; retry"));
    return reactor;
  }
  // Answered when the notification is durable (the spool writer's group commit), without
  // holding a gRPC thread meanwhile.
  delivery->AcceptAsync(*request, [reactor, response](absl::StatusOr<Delivery::Accepted> r) {
    if (r.ok()) response->set_duplicate(*r == Delivery::Accepted::kDuplicate);
    reactor->Finish(ToGrpcStatus(r.status()));
  });
  return reactor;
}

grpc::ServerUnaryReactor* NotifierService::Heartbeat(grpc::CallbackServerContext* ctx,
                                                     const v1::HeartbeatRequest* request,
                                                     v1::HeartbeatResponse*) {
  deadman_->Heartbeat(request->source());
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* NotifierService::ListDeliveries(grpc::CallbackServerContext* ctx,
                                                          const v1::ListDeliveriesRequest* request,
                                                          v1::ListDeliveriesResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (log_ == nullptr) {
    reactor->Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                 "no delivery log: set database_url in the notifier's config"));
    return reactor;
  }
  // A bounded query on an index; run in the reaction like the rest of this small service.
  absl::StatusOr<v1::ListDeliveriesResponse> r = log_->List(*request);
  if (r.ok()) *response = std::move(*r);
  reactor->Finish(ToGrpcStatus(r.status()));
  return reactor;
}

grpc::ServerUnaryReactor* NotifierService::ListReceivers(grpc::CallbackServerContext* ctx,
                                                         const v1::ListReceiversRequest*,
                                                         v1::ListReceiversResponse* response) {
  std::shared_ptr<Delivery> delivery = delivery_->Get();
  if (!delivery) {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "reloading; retry"));
    return reactor;
  }
  for (const Receiver& r : delivery->receivers()) {
    if (response->receivers_size() == 0 ||
        response->receivers(response->receivers_size() - 1).name() != r.name) {
      response->add_receivers()->set_name(r.name);
    }
    response->mutable_receivers(response->receivers_size() - 1)->add_channels(r.kind);
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* NotifierService::TestReceiver(grpc::CallbackServerContext* ctx,
                                                        const v1::TestReceiverRequest* request,
                                                        v1::TestReceiverResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  v1::NotifyRequest test;
  test.set_idempotency_key(
      absl::StrCat("test/", request->receiver(), "/", absl::ToUnixMillis(absl::Now())));
  v1::Notification* n = test.mutable_notification();
  n->set_status(v1::Notification::STATUS_FIRING);
  n->set_rule("VigieTest");
  n->set_severity("info");
  (*n->mutable_labels())["alertname"] = "VigieTest";
  (*n->mutable_annotations())["summary"] =
      absl::StrCat("Test notification for receiver ", request->receiver());
  n->set_starts_at_ms(absl::ToUnixMillis(absl::Now()));
  std::shared_ptr<Delivery> delivery = delivery_->Get();
  if (!delivery) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "reloading; retry"));
    return reactor;
  }
  bool found = false;
  for (size_t i = 0; i < delivery->receivers().size(); ++i) {
    const Receiver& r = delivery->receivers()[i];
    if (r.name != request->receiver()) continue;
    found = true;
    // Channels have deadlines (timeout), so this ends; it holds one callback thread meanwhile.
    absl::Status s = r.channel->Send(Batch::Of(test, r.name));
    v1::ChannelResult* result = response->add_results();
    result->set_target(delivery->targets()[i]);
    result->set_ok(s.ok());
    result->set_error(std::string(s.message()));
  }
  if (!found) {
    reactor->Finish(
        grpc::Status(grpc::StatusCode::NOT_FOUND,
                     absl::StrCat("receiver: no receiver \"", request->receiver(), "\"")));
    return reactor;
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace vigie::notifier
