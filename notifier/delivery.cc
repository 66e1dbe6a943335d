#include "notifier/delivery.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace vigie::notifier {

void KeyMemory::Insert(const std::string& key) {
  if (!keys_.insert(key).second) return;
  order_.push_back(key);
  while (order_.size() > capacity_) {
    keys_.erase(order_.front());
    order_.pop_front();
  }
}

Delivery::Delivery(DeliveryOptions options, std::vector<Receiver> receivers,
                   prometheus::Registry* registry)
    : options_(options),
      receivers_(std::move(receivers)),
      accepted_(prometheus::BuildCounter()
                    .Name("vigie_notifier_requests_total")
                    .Help("Notify calls, by result (queued, duplicate, rejected, full).")
                    .Register(*registry)),
      deliveries_(prometheus::BuildCounter()
                      .Name("vigie_notifier_deliveries_total")
                      .Help("Delivery attempts, by receiver and result (sent, retry, gave_up).")
                      .Register(*registry)),
      queue_depth_(prometheus::BuildGauge()
                       .Name("vigie_notifier_queue_depth")
                       .Help("Deliveries waiting (including those waiting to retry).")
                       .Register(*registry)
                       .Add({})),
      keys_(options.max_remembered_keys) {
  for (const char* r : {"queued", "duplicate", "rejected", "full"}) accepted_.Add({{"result", r}});
  for (const Receiver& r : receivers_) {
    for (const char* res : {"sent", "retry", "gave_up"}) {
      deliveries_.Add({{"receiver", r.name}, {"result", res}});
    }
  }
}

Delivery::~Delivery() { Stop(); }

absl::StatusOr<Delivery::Accepted> Delivery::Accept(const v1::NotifyRequest& request) {
  const std::string& key = request.idempotency_key();
  absl::Status invalid;
  if (key.empty() || key.size() > 256) {
    invalid = absl::InvalidArgumentError(
        absl::StrCat("idempotency_key: must be 1-256 bytes, got ", key.size()));
  } else if (request.notification().status() == v1::Notification::STATUS_UNSPECIFIED) {
    invalid = absl::InvalidArgumentError("notification.status: must be FIRING or RESOLVED");
  }
  if (!invalid.ok()) {
    accepted_.Add({{"result", "rejected"}}).Increment();
    return invalid;
  }
  const bool resolved = request.notification().status() == v1::Notification::STATUS_RESOLVED;
  absl::MutexLock lock(&mu_);
  if (keys_.Contains(key)) {
    accepted_.Add({{"result", "duplicate"}}).Increment();
    return Accepted::kDuplicate;
  }
  size_t targets = 0;
  for (const Receiver& r : receivers_) targets += (!resolved || r.channel->send_resolved());
  if (queue_.size() + targets > options_.max_queue) {
    accepted_.Add({{"result", "full"}}).Increment();
    return absl::ResourceExhaustedError(absl::StrCat(
        "delivery queue full (", queue_.size(), " of max_queue ", options_.max_queue,
        "); retry with backoff"));
  }
  keys_.Insert(key);
  auto shared = std::make_shared<const v1::NotifyRequest>(request);
  const absl::Time now = absl::Now();
  for (size_t i = 0; i < receivers_.size(); ++i) {
    if (resolved && !receivers_[i].channel->send_resolved()) continue;
    queue_.push_back(Item{shared, i, 0, now, now, Backoff(options_.backoff), false});
  }
  queue_depth_.Set(static_cast<double>(queue_.size()));
  accepted_.Add({{"result", "queued"}}).Increment();
  return Accepted::kQueued;
}

void Delivery::Start() {
  for (int i = 0; i < options_.workers; ++i) threads_.emplace_back([this] { Work(); });
}

void Delivery::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  absl::MutexLock lock(&mu_);
  if (!queue_.empty()) {
    log::Warn("stopping with undelivered notifications", {{"count", queue_.size()}});
  }
}

size_t Delivery::queued() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

void Delivery::Work() {
  while (true) {
    std::list<Item>::iterator item;
    {
      absl::MutexLock lock(&mu_);
      while (true) {
        if (stopping_) return;
        const absl::Time now = absl::Now();
        absl::Time earliest = absl::InfiniteFuture();
        item = queue_.end();
        absl::flat_hash_set<std::pair<size_t, std::string>> blocked;
        for (auto it = queue_.begin(); it != queue_.end(); ++it) {
          auto order_key = std::make_pair(it->receiver, it->request->notification().fingerprint());
          if (!it->in_flight && it->next_attempt <= now && !blocked.contains(order_key)) {
            item = it;
            break;
          }
          if (!it->in_flight) earliest = std::min(earliest, it->next_attempt);
          blocked.insert(std::move(order_key));
        }
        if (item != queue_.end()) break;
        size_t depth = queue_.size();
        auto changed = [this, depth]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || queue_.size() != depth;
        };
        mu_.AwaitWithDeadline(absl::Condition(&changed),
                              std::min(earliest, now + absl::Seconds(1)));
      }
      item->in_flight = true;
    }
    // Send outside the lock. The item stays in the list (only this thread erases it).
    const Receiver& r = receivers_[item->receiver];
    const int attempts = ++item->attempts;
    absl::Status s = r.channel->Send(*item->request);
    const std::string key = item->request->idempotency_key();
    absl::MutexLock lock(&mu_);
    item->in_flight = false;
    if (s.ok()) {
      deliveries_.Add({{"receiver", r.name}, {"result", "sent"}}).Increment();
      log::Info("notification delivered",
                {{"key", key}, {"receiver", r.name}, {"attempts", attempts}});
      queue_.erase(item);
    } else if (s.code() == absl::StatusCode::kInvalidArgument ||
               absl::Now() - item->first_attempt >= options_.give_up_after) {
      deliveries_.Add({{"receiver", r.name}, {"result", "gave_up"}}).Increment();
      log::Error("notification not delivered; giving up",
                 {{"key", key}, {"receiver", r.name}, {"attempts", attempts}, {"error", s}});
      queue_.erase(item);
    } else {
      deliveries_.Add({{"receiver", r.name}, {"result", "retry"}}).Increment();
      absl::Duration delay = item->backoff.Next();
      log::Warn("notification delivery failed; will retry",
                {{"key", key},
                 {"receiver", r.name},
                 {"attempts", attempts},
                 {"retry_in", absl::FormatDuration(delay)},
                 {"error", s}});
      item->next_attempt = absl::Now() + delay;
    }
    queue_depth_.Set(static_cast<double>(queue_.size()));
  }
}

}  // namespace vigie::notifier
