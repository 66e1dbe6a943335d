// The Notifier gRPC service (callback API): validates, de-duplicates and queues.
#ifndef VIGIE_NOTIFIER_SERVICE_H_
#define VIGIE_NOTIFIER_SERVICE_H_

#include "notifier/delivery.h"
#include "vigie/v1/notifier.grpc.pb.h"

namespace vigie::notifier {

// Thread-safe; `delivery` must outlive it. Accept() never blocks, so it runs in the reaction.
class NotifierService : public v1::Notifier::CallbackService {
 public:
  explicit NotifierService(Delivery* delivery) : delivery_(delivery) {}
  grpc::ServerUnaryReactor* Notify(grpc::CallbackServerContext* ctx,
                                   const v1::NotifyRequest* request,
                                   v1::NotifyResponse* response) override;

 private:
  Delivery* const delivery_;
};

}  // namespace vigie::notifier

#endif  // VIGIE_NOTIFIER_SERVICE_H_
