// Accepted notifications waiting for delivery: idempotency by key, routing, grouping (see
// Grouper), a bounded queue, and delivery workers that retry each (message, channel) pair with
// backoff.
#ifndef VIGIE_NOTIFIER_DELIVERY_H_
#define VIGIE_NOTIFIER_DELIVERY_H_

#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/backoff.h"
#include "common/mutex.h"
#include "notifier/batch.h"
#include "notifier/channel.h"
#include "notifier/grouper.h"
#include "notifier/router.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace vigie::notifier {

// Remembers the last `capacity` keys; the oldest is forgotten first. Not thread-safe.
class KeyMemory {
 public:
  explicit KeyMemory(size_t capacity) : capacity_(capacity) {}
  bool Contains(const std::string& key) const { return keys_.contains(key); }
  const std::deque<std::string>& order() const { return order_; }
  void Insert(const std::string& key);
  size_t size() const { return keys_.size(); }

 private:
  const size_t capacity_;
  absl::flat_hash_set<std::string> keys_;
  std::deque<std::string> order_;
};

// One channel of a receiver: a delivery target of its own (retried on its own).
struct Receiver {
  std::string name;
  std::string kind;  // "webhook", "email", "slack", "sms": the metrics' channel label
  std::unique_ptr<Channel> channel;
};

// Told about every acceptance and delivery attempt (the delivery log). Called with the
// delivery lock held: must not block and must not call back into Delivery.
class DeliveryObserver {
 public:
  virtual ~DeliveryObserver() = default;
  // `targets` are the names of the channels it will go to ("<receiver>/<kind>[<i>]").
  virtual void Accepted(const v1::NotifyRequest& request,
                        const std::vector<std::string>& targets) = 0;
  // status: "sent", "retrying", "failed", or "skipped" (never sent to that target: superseded
  // by a later change of the same alert, resolved before its firing was sent, or rate limited;
  // `error` says which).
  virtual void Attempted(const std::string& key, const std::string& target,
                         const std::string& status, int attempts, const std::string& error) = 0;
};

// A spool file and how many of its notifications are not yet done; removed at zero.
struct SpoolFile {
  std::string path;
  size_t remaining = 0;
};

struct DeliveryOptions {
  size_t max_queue = 10000;
  size_t max_remembered_keys = 100000;
  BackoffPolicy backoff;
  absl::Duration give_up_after = absl::Hours(1);
  int workers = 2;
  // Empty = memory only. See NotifierConfig.spool_directory.
  std::string spool_directory;
  // Per receiver name: at most `first` messages per `second`.
  std::map<std::string, std::pair<int, absl::Duration>> rate_limits;
  // Alerts remembered by the groups (NotifierConfig.max_active_alerts).
  size_t max_active_alerts = 100000;
};

// Thread-safe. Start() launches the workers; Stop() ends them. Undelivered items survive only
// with a spool directory (Recover() queues them again); without one they are lost at exit,
// and logged.
class Delivery {
 public:
  // `router` (may be null: every receiver gets everything, each alert on its own) must
  // outlive it.
  Delivery(DeliveryOptions options, std::vector<Receiver> receivers, prometheus::Registry* registry,
           DeliveryObserver* observer = nullptr, const Router* router = nullptr);
  // Remembers `keys` as already accepted (from the delivery log, at start-up).
  void RememberKeys(const std::vector<std::string>& keys);
  // The keys remembered, oldest first (handed to the next Delivery at a reload).
  std::vector<std::string> Keys() const;
  const std::vector<Receiver>& receivers() const { return receivers_; }
  // The channel names the log uses, one per receiver entry.
  const std::vector<std::string>& targets() const { return targets_; }
  ~Delivery();

  enum class Accepted { kQueued, kDuplicate };
  // kResourceExhausted when the queue is full (the key is not remembered, so a retry works);
  // kInvalidArgument for a malformed request, naming the field; kUnavailable if the spool
  // cannot be written. With a spool, a kQueued request is on disk when `done` runs: the spool
  // writer thread groups concurrent requests into one sync. `done` runs on the caller's thread
  // or the spool writer's; it must not call back into Delivery.
  void AcceptAsync(const v1::NotifyRequest& request,
                   std::function<void(absl::StatusOr<Accepted>)> done);
  // AcceptAsync, waiting for the answer.
  absl::StatusOr<Accepted> Accept(const v1::NotifyRequest& request);

  // Before Start(): queues every notification left in the spool by an earlier process.
  // Returns how many were recovered. Unreadable files are renamed *.bad and logged.
  absl::StatusOr<int> Recover();

  void Start();
  void Stop();
  // Messages queued plus notifications waiting in groups.
  size_t queued() const;

 private:
  // One message (a group's batch) on its way to the receiver's channels.
  struct Flight {
    std::string group;
    // The notifications it carries, finished when every channel is done.
    std::vector<Grouper::Token> members;
    size_t remaining = 0;  // channels not yet done; guarded by mu_
  };
  struct Item {
    std::shared_ptr<Flight> flight;
    std::shared_ptr<const Batch> batch;  // what this channel gets (send_resolved applied)
    size_t receiver;
    int attempts = 0;
    absl::Time first_attempt;
    absl::Time next_attempt;
    Backoff backoff;
    bool in_flight = false;
  };
  void Work();
  // Writes a batch of notifications into one spool file (a JSON line each), durably: one
  // fsync of the file and one of the directory for the whole batch.
  absl::StatusOr<std::string> WriteSpoolBatch(const std::vector<const v1::NotifyRequest*>& batch,
                                              uint64_t number);
  // The spool writer thread: writes queued notifications, one syncfs per batch, then queues
  // them for delivery and answers their callers.
  void SpoolWriter();
  struct SpoolJob {
    v1::NotifyRequest request;
    uint64_t number;
    size_t targets;
    std::function<void(absl::StatusOr<Accepted>)> done;
  };
  // Queues `request` for every receiver it goes to (ignores max_queue).
  void EnqueueLocked(const v1::NotifyRequest& request, std::shared_ptr<SpoolFile> spool)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Turns the groups due now into queued messages; returns when the next group falls due.
  absl::Time FlushGroupsLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The channels of `receiver` that take `request` (resolved ones only where send_resolved).
  std::vector<size_t> ChannelsFor(const std::string& receiver,
                                  const v1::NotifyRequest& request) const;
  // `n` will never be sent to `receiver`: logged as skipped for `reason`, and finished there.
  void SkipLocked(const Grouper::Token& n, const std::string& receiver, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One of the groups `n` joined is done with it.
  void FinishLocked(const Grouper::Token& n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One channel is done with `item`'s message (sent or given up on).
  void ItemDoneLocked(Item& item) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateGaugesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A notification is finished: its spool file goes when the whole batch is; meanwhile the key
  // is noted in <file>.done so a restart skips it.
  void SpoolDone(const AcceptedNotification& accepted) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const DeliveryOptions options_;
  const std::vector<Receiver> receivers_;
  std::vector<std::string> targets_;
  DeliveryObserver* const observer_;
  // The default router (each receiver everything) when none is given.
  std::unique_ptr<Router> own_router_;
  const Router* const router_;
  std::map<std::string, std::vector<size_t>> channels_by_receiver_;
  prometheus::Family<prometheus::Counter>& not_sent_;
  std::map<std::string, RateLimiter> limiters_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;

  prometheus::Family<prometheus::Counter>& accepted_;
  prometheus::Family<prometheus::Counter>& deliveries_;
  prometheus::Gauge& queue_depth_;
  prometheus::Gauge& groups_gauge_;
  prometheus::Gauge& waiting_gauge_;
  prometheus::Counter& forgotten_;
  uint64_t forgotten_seen_ ABSL_GUARDED_BY(mu_) = 0;

  mutable Mutex mu_;
  KeyMemory keys_ ABSL_GUARDED_BY(mu_);
  Grouper grouper_ ABSL_GUARDED_BY(mu_);
  // Notifications waiting for the spool writer (bounded by max_queue through reserved_).
  std::deque<SpoolJob> spool_queue_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::vector<std::function<void(absl::StatusOr<Accepted>)>>>
      spool_waiters_ ABSL_GUARDED_BY(mu_);
  bool spool_stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread spool_thread_;
  // Keys being written to the spool, and the queue room they hold.
  absl::flat_hash_set<std::string> spooling_ ABSL_GUARDED_BY(mu_);
  size_t reserved_ ABSL_GUARDED_BY(mu_) = 0;
  // Messages per channel, FIFO. An item stays in place while it is sent and while it waits to
  // retry; its group sends nothing else meanwhile, so "resolved" never overtakes "firing".
  std::list<Item> queue_ ABSL_GUARDED_BY(mu_);
  // Deliveries under way per channel, and how many one channel may have.
  std::vector<int> in_flight_ ABSL_GUARDED_BY(mu_);
  const int max_in_flight_per_channel_ = std::max(1, options_.workers - 1);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::mt19937_64 jitter_seeds_ ABSL_GUARDED_BY(mu_){std::random_device{}()};
  uint64_t spool_counter_ ABSL_GUARDED_BY(mu_) = 0;
  // Idle workers wait here; the spool writer waits on spool_cv_.
  CondVar work_cv_;
  CondVar spool_cv_;
};

// The current Delivery, replaced as a whole when the configuration is reloaded (SIGHUP).
// Get() is null while a reload swaps it: callers answer UNAVAILABLE and are retried.
class DeliveryHolder {
 public:
  std::shared_ptr<Delivery> Get() const {
    MutexLock lock(&mu_);
    return current_;
  }
  void Set(std::shared_ptr<Delivery> d) {
    MutexLock lock(&mu_);
    current_ = std::move(d);
  }

 private:
  mutable Mutex mu_;
  std::shared_ptr<Delivery> current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vigie::notifier

#endif  // VIGIE_NOTIFIER_DELIVERY_H_
