// The Notifier gRPC service (callback API): validates, de-duplicates and queues.
#ifndef VIGIE_NOTIFIER_SERVICE_H_
#define VIGIE_NOTIFIER_SERVICE_H_

#include "notifier/deadman.h"
#include "notifier/delivery.h"
#include "notifier/delivery_log.h"
#include "vigie/v1/notifier.grpc.pb.h"

namespace vigie::notifier {

// Thread-safe; `delivery` must outlive it. Accept() never blocks, so it runs in the reaction.
// `log` may be null (no database): ListDeliveries then answers FAILED_PRECONDITION.
class NotifierService : public v1::Notifier::CallbackService {
 public:
  NotifierService(const DeliveryHolder* delivery, DeliveryLog* log, DeadMan* deadman)
      : delivery_(delivery), log_(log), deadman_(deadman) {}
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) override;
  grpc::ServerUnaryReactor* Notify(grpc::CallbackServerContext* ctx,
                                   const v1::NotifyRequest* request,
                                   v1::NotifyResponse* response) override;
  grpc::ServerUnaryReactor* ListDeliveries(grpc::CallbackServerContext* ctx,
                                           const v1::ListDeliveriesRequest* request,
                                           v1::ListDeliveriesResponse* response) override;
  grpc::ServerUnaryReactor* ListReceivers(grpc::CallbackServerContext* ctx,
                                          const v1::ListReceiversRequest* request,
                                          v1::ListReceiversResponse* response) override;
  grpc::ServerUnaryReactor* TestReceiver(grpc::CallbackServerContext* ctx,
                                         const v1::TestReceiverRequest* request,
                                         v1::TestReceiverResponse* response) override;

 private:
  const DeliveryHolder* const delivery_;
  DeliveryLog* const log_;
  DeadMan* const deadman_;
};

}  // namespace vigie::notifier

#endif  // VIGIE_NOTIFIER_SERVICE_H_
