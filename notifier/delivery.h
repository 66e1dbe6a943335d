// Accepted notifications waiting for delivery: idempotency by key, a bounded queue, and
// delivery workers that retry each (notification, receiver) pair with backoff.
#ifndef VIGIE_NOTIFIER_DELIVERY_H_
#define VIGIE_NOTIFIER_DELIVERY_H_

#include <deque>
#include <list>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/backoff.h"
#include "notifier/channel.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace vigie::notifier {

// Remembers the last `capacity` keys; the oldest is forgotten first. Not thread-safe.
class KeyMemory {
 public:
  explicit KeyMemory(size_t capacity) : capacity_(capacity) {}
  bool Contains(const std::string& key) const { return keys_.contains(key); }
  void Insert(const std::string& key);
  size_t size() const { return keys_.size(); }

 private:
  const size_t capacity_;
  absl::flat_hash_set<std::string> keys_;
  std::deque<std::string> order_;
};

struct Receiver {
  std::string name;
  std::unique_ptr<Channel> channel;
};

struct DeliveryOptions {
  size_t max_queue = 10000;
  size_t max_remembered_keys = 100000;
  BackoffPolicy backoff;
  absl::Duration give_up_after = absl::Hours(1);
  int workers = 2;
};

// Thread-safe. Start() launches the workers; Stop() ends them (undelivered items are dropped
// and logged: the control plane's outbox holds what it has not handed over).
class Delivery {
 public:
  Delivery(DeliveryOptions options, std::vector<Receiver> receivers,
           prometheus::Registry* registry);
  ~Delivery();

  enum class Accepted { kQueued, kDuplicate };
  // kResourceExhausted when the queue is full (the key is not remembered, so a retry works);
  // kInvalidArgument for a malformed request, naming the field.
  absl::StatusOr<Accepted> Accept(const v1::NotifyRequest& request);

  void Start();
  void Stop();
  size_t queued() const;

 private:
  struct Item {
    std::shared_ptr<const v1::NotifyRequest> request;
    size_t receiver;
    int attempts = 0;
    absl::Time first_attempt;
    absl::Time next_attempt;
    Backoff backoff;
    bool in_flight = false;
  };
  void Work();

  const DeliveryOptions options_;
  const std::vector<Receiver> receivers_;
  std::vector<std::thread> threads_;

  prometheus::Family<prometheus::Counter>& accepted_;
  prometheus::Family<prometheus::Counter>& deliveries_;
  prometheus::Gauge& queue_depth_;

  mutable absl::Mutex mu_;
  KeyMemory keys_ ABSL_GUARDED_BY(mu_);
  // FIFO. An item stays in place while it is sent and while it waits to retry, and a later item
  // for the same receiver and alert waits behind it, so "resolved" never overtakes "firing".
  std::list<Item> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace vigie::notifier

#endif  // VIGIE_NOTIFIER_DELIVERY_H_
