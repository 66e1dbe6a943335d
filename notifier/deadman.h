// The dead-man's switch. The control plane calls Heartbeat every minute while it can reach its
// database; when none has arrived for `after` (counted from start-up too), the notifier fires
// VigieControlPlaneDown itself, through its routes, and resolves it at the next heartbeat.
// While heartbeats arrive it can also ping an external dead-man service (watchdog_url), which
// then alerts when the pings stop: when the notifier itself, or the control plane, is down.
#ifndef VIGIE_NOTIFIER_DEADMAN_H_
#define VIGIE_NOTIFIER_DEADMAN_H_

#include <string>

#include "absl/time/time.h"
#include "common/mutex.h"
#include "common/runnable.h"
#include "notifier/delivery.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace vigie::notifier {

struct DeadManOptions {
  absl::Duration after = absl::ZeroDuration();  // zero: off
  std::string watchdog_url;                     // secret
  absl::Duration watchdog_interval = absl::Minutes(1);
  absl::Duration check_interval = absl::Seconds(1);
};

class DeadMan : public Runnable {
 public:
  DeadMan(DeadManOptions options, const DeliveryHolder* delivery, prometheus::Registry* registry);
  ~DeadMan() override;
  void Heartbeat(const std::string& source);

 protected:
  void Run() override;

 private:
  const DeadManOptions options_;
  const DeliveryHolder* const delivery_;
  // Accepts through the current Delivery (a reload in progress: retried next check).
  bool Send(const v1::NotifyRequest& r);
  // VigieControlPlaneDown for the outage that started at firing_since_.
  v1::NotifyRequest Transition(bool firing, const std::string& source) const;
  Mutex mu_;
  absl::Time last_ ABSL_GUARDED_BY(mu_);
  std::string source_ ABSL_GUARDED_BY(mu_);
  // Run() thread only: the firing alert's start (InfinitePast: not firing), the last ping.
  absl::Time firing_since_ = absl::InfinitePast();
  absl::Time last_ping_ = absl::InfinitePast();
  prometheus::Gauge& last_heartbeat_;
  prometheus::Gauge& firing_;
  prometheus::Family<prometheus::Counter>& pings_;
};

}  // namespace vigie::notifier

#endif  // VIGIE_NOTIFIER_DEADMAN_H_
