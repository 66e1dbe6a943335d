// Delivers stored alert transitions (the transactional outbox) to the notifier, at least once,
// with backoff while the notifier is unreachable. The notifier drops duplicates by key. Entries
// are leased (Store::DispatchOutbox): no transaction stays open while the notifier is called,
// and replicas on one database share the work, each transition sent by one of them.
#ifndef VIGIE_CONTROLPLANE_DISPATCHER_H_
#define VIGIE_CONTROLPLANE_DISPATCHER_H_

#include <memory>
#include <string>

#include "common/backoff.h"
#include "common/runnable.h"
#include "controlplane/store.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "vigie/v1/notifier.grpc.pb.h"

namespace vigie::controlplane {

struct DispatcherOptions {
  // Channel to the notifier (see MakeChannel); null = keep transitions stored, send
  // nothing. `token` is presented on every call.
  std::shared_ptr<grpc::Channel> channel;
  std::string token;
  BackoffPolicy backoff;
  absl::Duration poll_interval = absl::Seconds(1);
  absl::Duration rpc_timeout = absl::Seconds(5);
  int batch = 50;
  // Heartbeat to the notifier this often, while the database answers (its dead-man's switch).
  absl::Duration heartbeat_interval = absl::Seconds(60);
  std::string source;  // who we are, in the heartbeat
};

// Start()/Stop(); Wake() after a commit that stored transitions. Thread-safe.
class Dispatcher : public Runnable {
 public:
  Dispatcher(DispatcherOptions options, Store* store, prometheus::Registry* registry);
  ~Dispatcher() override;

 protected:
  void Run() override;

 private:
  const DispatcherOptions options_;
  Store* const store_;
  std::unique_ptr<v1::Notifier::Stub> stub_;
  Backoff backoff_;                                   // only used by the Run() thread
  absl::Time last_heartbeat_ = absl::InfinitePast();  // likewise
  prometheus::Family<prometheus::Counter>& sent_;
  prometheus::Gauge& pending_;
  prometheus::Gauge& oldest_;
};

}  // namespace vigie::controlplane

#endif  // VIGIE_CONTROLPLANE_DISPATCHER_H_
