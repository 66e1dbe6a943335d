// The delivery log and the idempotency keys in PostgreSQL (tables notifier_*, migrated at
// start-up under an advisory lock). Recording never blocks a delivery: events go to a bounded
// buffer that a background thread writes in batches, retrying while the database is away
// (events beyond the buffer are dropped and counted in vigie_notifier_log_dropped_total).
// At start-up the most recent keys are loaded so Notify stays idempotent across restarts
// without asking the database on the Notify path.
#ifndef VIGIE_NOTIFIER_DELIVERY_LOG_H_
#define VIGIE_NOTIFIER_DELIVERY_LOG_H_

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "common/runnable.h"
#include "notifier/delivery.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "vigie/v1/notifier.pb.h"

namespace pqxx {
class transaction_base;
}  // namespace pqxx

namespace vigie::notifier {

class LogConnection;  // a pqxx::connection; defined in delivery_log.cc

struct DeliveryLogOptions {
  std::string database_url;  // secret
  size_t max_buffer = 100000;
  absl::Duration retention = absl::Hours(24 * 30);
};

class DeliveryLog : public DeliveryObserver, public Runnable {
 public:
  // Connects and migrates.
  static absl::StatusOr<std::unique_ptr<DeliveryLog>> Open(DeliveryLogOptions options,
                                                           prometheus::Registry* registry);
  ~DeliveryLog() override;

  void Accepted(const v1::NotifyRequest& request, const std::vector<std::string>& targets) override;
  void Attempted(const std::string& key, const std::string& target, const std::string& status,
                 int attempts, const std::string& error) override;

  // The `n` most recently accepted keys.
  absl::StatusOr<std::vector<std::string>> RecentKeys(size_t n);
  absl::StatusOr<v1::ListDeliveriesResponse> List(const v1::ListDeliveriesRequest& request);
  // Writes everything buffered now (tests, shutdown).
  absl::Status Flush();

 protected:
  void Run() override;

 private:
  struct Event {
    bool accepted;
    std::string key, target, status, error, notification_json;
    int attempts = 0;
    absl::Time at;
  };
  DeliveryLog(DeliveryLogOptions options, prometheus::Registry* registry);
  absl::Status Write(const std::vector<Event>& events);
  static void WriteOne(pqxx::transaction_base& w, const Event& e);
  absl::Status Connect() ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  void Push(Event e);

  const DeliveryLogOptions options_;
  Mutex db_mu_;  // one user of the connection at a time
  std::unique_ptr<LogConnection> conn_ ABSL_GUARDED_BY(db_mu_);
  Mutex mu_;
  std::deque<Event> buffer_ ABSL_GUARDED_BY(mu_);
  prometheus::Counter& dropped_;
  prometheus::Counter& write_errors_;
  prometheus::Gauge& buffered_;
  absl::Time next_cleanup_ = absl::InfinitePast();  // Run() thread only
};

}  // namespace vigie::notifier

#endif  // VIGIE_NOTIFIER_DELIVERY_LOG_H_
