#include "notifier/delivery.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mutex.h"
#include "google/protobuf/util/json_util.h"

namespace vigie::notifier {

namespace {

std::unique_ptr<Router> EveryoneRouter(const std::vector<Receiver>& receivers) {
  std::set<std::string> names;
  for (const Receiver& r : receivers) names.insert(r.name);
  auto router = Router::FromConfig(v1::NotifierConfig(), names);
  return router.ok() ? std::move(*router) : nullptr;  // cannot fail without a route
}

}  // namespace

void KeyMemory::Insert(const std::string& key) {
  if (!keys_.insert(key).second) return;
  order_.push_back(key);
  while (order_.size() > capacity_) {
    keys_.erase(order_.front());
    order_.pop_front();
  }
}

Delivery::Delivery(DeliveryOptions options, std::vector<Receiver> receivers,
                   prometheus::Registry* registry, DeliveryObserver* observer, const Router* router)
    : options_(options),
      receivers_(std::move(receivers)),
      observer_(observer),
      own_router_(router == nullptr ? EveryoneRouter(receivers_) : nullptr),
      router_(router != nullptr ? router : own_router_.get()),
      not_sent_(prometheus::BuildCounter()
                    .Name("vigie_notifier_not_sent_total")
                    .Help("Notifications a receiver did not get, by reason: muted (a route "
                          "matched outside its active times or inside its mute times) or "
                          "rate_limited (the receiver's rate_limit was reached).")
                    .Register(*registry)),
      accepted_(prometheus::BuildCounter()
                    .Name("vigie_notifier_requests_total")
                    .Help("Notify calls, by result (queued, duplicate, rejected, full).")
                    .Register(*registry)),
      deliveries_(
          prometheus::BuildCounter()
              .Name("vigie_notifier_deliveries_total")
              .Help("Delivery attempts, by receiver, channel and result (sent, retry, gave_up).")
              .Register(*registry)),
      queue_depth_(prometheus::BuildGauge()
                       .Name("vigie_notifier_queue_depth")
                       .Help("Deliveries waiting (including those waiting to retry).")
                       .Register(*registry)
                       .Add({})),
      groups_gauge_(prometheus::BuildGauge()
                        .Name("vigie_notifier_alert_groups")
                        .Help("Alert groups (route, receiver and group_by values) held.")
                        .Register(*registry)
                        .Add({})),
      waiting_gauge_(prometheus::BuildGauge()
                         .Name("vigie_notifier_group_waiting")
                         .Help("Notifications waiting in groups for group_wait, "
                               "group_interval or the end of a mute.")
                         .Register(*registry)
                         .Add({})),
      forgotten_(prometheus::BuildCounter()
                     .Name("vigie_notifier_alerts_forgotten_total")
                     .Help("Firing alerts forgotten to stay within max_active_alerts (they are "
                           "not repeated; their resolve is still sent).")
                     .Register(*registry)
                     .Add({})),
      keys_(options.max_remembered_keys),
      grouper_(options.max_active_alerts) {
  for (const char* r : {"queued", "duplicate", "rejected", "full"}) accepted_.Add({{"result", r}});
  for (const auto& [name, limit] : options_.rate_limits) {
    limiters_.emplace(name, RateLimiter(limit.first, limit.second));
  }
  std::map<std::pair<std::string, std::string>, int> seen;
  for (const Receiver& r : receivers_) {
    const int i = seen[{r.name, r.kind}]++;
    targets_.push_back(absl::StrCat(r.name, "/", r.kind, "[", i, "]"));
  }
  for (size_t i = 0; i < receivers_.size(); ++i) {
    channels_by_receiver_[receivers_[i].name].push_back(i);
  }
  for (const Receiver& r : receivers_) {
    for (const char* res : {"sent", "retry", "gave_up"}) {
      deliveries_.Add({{"receiver", r.name}, {"channel", r.kind}, {"result", res}});
    }
  }
  in_flight_.assign(receivers_.size(), 0);
  // Accepting (the spool) runs from construction; delivering from Start().
  if (!options_.spool_directory.empty()) spool_thread_ = std::thread([this] { SpoolWriter(); });
}

Delivery::~Delivery() { Stop(); }

absl::StatusOr<Delivery::Accepted> Delivery::Accept(const v1::NotifyRequest& request) {
  Mutex mu;
  bool done = false;
  absl::StatusOr<Accepted> result = absl::InternalError("not answered");
  AcceptAsync(request, [&](absl::StatusOr<Accepted> r) {
    MutexLock lock(&mu);
    result = std::move(r);
    done = true;
  });
  MutexLock lock(&mu);
  mu.Await([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return done; });
  return result;
}

void Delivery::AcceptAsync(const v1::NotifyRequest& request,
                           std::function<void(absl::StatusOr<Accepted>)> done) {
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
    done(invalid);
    return;
  }
  const bool resolved = request.notification().status() == v1::Notification::STATUS_RESOLVED;
  size_t targets = 0;
  for (const Receiver& r : receivers_) targets += (!resolved || r.channel->send_resolved());
  absl::StatusOr<Accepted> result = Accepted::kDuplicate;
  {
    MutexLock lock(&mu_);
    if (spooling_.contains(key)) {
      // Being written: the answer waits for that write (a duplicate only once it is durable).
      spool_waiters_[key].push_back(std::move(done));
      return;
    }
    if (keys_.Contains(key)) {
      accepted_.Add({{"result", "duplicate"}}).Increment();
    } else if (spool_stopping_ && !options_.spool_directory.empty()) {
      result = absl::UnavailableError("notifier stopping; retry");
    } else if (queue_.size() + grouper_.pending() + reserved_ + targets > options_.max_queue) {
      accepted_.Add({{"result", "full"}}).Increment();
      result = absl::ResourceExhaustedError(
          absl::StrCat("delivery queue full (", queue_.size() + grouper_.pending(),
                       " of max_queue ", options_.max_queue, "); retry with backoff"));
    } else if (options_.spool_directory.empty()) {
      keys_.Insert(key);
      EnqueueLocked(request, nullptr);
      accepted_.Add({{"result", "queued"}}).Increment();
      result = Accepted::kQueued;
    } else {
      // Reserve the key and the room; the spool writer makes it durable and then queues it.
      spooling_.insert(key);
      reserved_ += targets;
      spool_queue_.push_back({request, spool_counter_++, targets, std::move(done)});
      spool_cv_.Signal();
      return;
    }
  }
  done(std::move(result));
}

void Delivery::SpoolWriter() {
  while (true) {
    std::vector<SpoolJob> jobs;
    {
      MutexLock lock(&mu_);
      while (spool_queue_.empty() && !spool_stopping_) spool_cv_.Wait(&mu_);
      if (spool_queue_.empty()) return;  // stopping, nothing left
      // A bounded batch: everything that arrived while the last sync ran.
      while (!spool_queue_.empty() && jobs.size() < 4096) {
        jobs.push_back(std::move(spool_queue_.front()));
        spool_queue_.pop_front();
      }
    }
    // Group commit: the whole batch in one file, made durable with one fsync of the file and
    // one of the directory, before any caller hears "accepted".
    std::vector<const v1::NotifyRequest*> batch;
    batch.reserve(jobs.size());
    for (const SpoolJob& j : jobs) batch.push_back(&j.request);
    uint64_t number = 0;
    {
      MutexLock lock(&mu_);
      number = spool_counter_++;
    }
    absl::StatusOr<std::string> path = WriteSpoolBatch(batch, number);
    auto file = std::make_shared<SpoolFile>();
    if (path.ok()) {
      file->path = *path;
      file->remaining = jobs.size();
    } else {
      log::Error("cannot spool notifications", {{"count", jobs.size()}, {"error", path.status()}});
    }
    std::vector<absl::StatusOr<Accepted>> results;
    // Callers who sent the same key while it was being written: a duplicate if it is now
    // durable, the same error otherwise.
    std::vector<std::pair<std::function<void(absl::StatusOr<Accepted>)>, absl::StatusOr<Accepted>>>
        waiters;
    {
      MutexLock lock(&mu_);
      for (SpoolJob& j : jobs) {
        spooling_.erase(j.request.idempotency_key());
        reserved_ -= j.targets;
        if (auto w = spool_waiters_.find(j.request.idempotency_key()); w != spool_waiters_.end()) {
          for (auto& fn : w->second) {
            if (path.ok()) accepted_.Add({{"result", "duplicate"}}).Increment();
            waiters.emplace_back(std::move(fn), path.ok()
                                                    ? absl::StatusOr<Accepted>(Accepted::kDuplicate)
                                                    : absl::StatusOr<Accepted>(path.status()));
          }
          spool_waiters_.erase(w);
        }
        if (!path.ok()) {
          results.push_back(path.status());
          continue;
        }
        keys_.Insert(j.request.idempotency_key());
        EnqueueLocked(j.request, file);
        accepted_.Add({{"result", "queued"}}).Increment();
        results.push_back(Accepted::kQueued);
      }
    }
    for (size_t i = 0; i < jobs.size(); ++i) jobs[i].done(std::move(results[i]));
    for (auto& [fn, r] : waiters) fn(std::move(r));
  }
}

std::vector<size_t> Delivery::ChannelsFor(const std::string& receiver,
                                          const v1::NotifyRequest& request) const {
  const bool resolved = request.notification().status() == v1::Notification::STATUS_RESOLVED;
  std::vector<size_t> out;
  auto it = channels_by_receiver_.find(receiver);
  if (it == channels_by_receiver_.end()) return out;
  for (size_t i : it->second) {
    if (!resolved || receivers_[i].channel->send_resolved()) out.push_back(i);
  }
  return out;
}

void Delivery::EnqueueLocked(const v1::NotifyRequest& request, std::shared_ptr<SpoolFile> spool) {
  auto accepted = std::make_shared<AcceptedNotification>();
  accepted->request = request;
  accepted->spool = std::move(spool);
  const absl::Time now = absl::Now();
  std::vector<const RoutePolicy*> routes =
      router_ != nullptr ? router_->Route(request) : std::vector<const RoutePolicy*>{};
  std::vector<std::string> targets;
  std::set<std::string> receivers;
  for (const RoutePolicy* p : routes) {
    if (!receivers.insert(p->receiver).second) continue;
    for (size_t i : ChannelsFor(p->receiver, request)) targets.push_back(targets_[i]);
  }
  if (observer_ != nullptr) observer_->Accepted(request, targets);
  accepted->remaining = routes.size();
  for (const RoutePolicy* p : routes) {
    for (const Grouper::Token& old : grouper_.Add(*p, accepted, now)) {
      SkipLocked(old, p->receiver, "superseded by a later change of the same alert");
    }
  }
  if (accepted->remaining == 0) SpoolDone(*accepted);
  // Groups with nothing to wait for (no group_wait: the default) become messages now, in the
  // order their notifications arrive.
  FlushGroupsLocked(now);
  // A worker recomputes when it must wake (this group may be due before what it waits for).
  work_cv_.Signal();
}

void Delivery::SkipLocked(const Grouper::Token& n, const std::string& receiver,
                          const std::string& reason) {
  if (observer_ != nullptr) {
    for (size_t i : ChannelsFor(receiver, n->request)) {
      observer_->Attempted(n->request.idempotency_key(), targets_[i], "skipped", 0, reason);
    }
  }
  FinishLocked(n);
}

void Delivery::FinishLocked(const Grouper::Token& n) {
  if (--n->remaining == 0) SpoolDone(*n);
}

void Delivery::UpdateGaugesLocked() {
  queue_depth_.Set(static_cast<double>(queue_.size()));
  groups_gauge_.Set(static_cast<double>(grouper_.groups()));
  waiting_gauge_.Set(static_cast<double>(grouper_.pending()));
  if (grouper_.forgotten() != forgotten_seen_) {
    forgotten_.Increment(static_cast<double>(grouper_.forgotten() - forgotten_seen_));
    forgotten_seen_ = grouper_.forgotten();
  }
}

absl::Time Delivery::FlushGroupsLocked(absl::Time now) {
  for (Grouper::Flush& f : grouper_.Due(now)) {
    const std::string& receiver = f.policy->receiver;
    for (const Grouper::Token& n : f.dropped) {
      SkipLocked(n, receiver, "resolved before its firing was sent");
    }
    if (f.muted) {
      not_sent_.Add({{"receiver", receiver}, {"reason", "muted"}}).Increment();
      continue;
    }
    if (!f.batch) continue;
    auto limiter = limiters_.find(receiver);
    if (limiter != limiters_.end() && !limiter->second.Allow(now)) {
      not_sent_.Add({{"receiver", receiver}, {"reason", "rate_limited"}}).Increment();
      log::Warn("receiver over its rate_limit; message not sent to it",
                {{"receiver", receiver}, {"group", f.group}, {"alerts", f.batch->alerts.size()}});
      for (const Grouper::Token& n : f.members) SkipLocked(n, receiver, "receiver rate_limit");
      grouper_.Done(f.group, now);
      continue;
    }
    auto flight = std::make_shared<Flight>();
    flight->group = f.group;
    flight->members = std::move(f.members);
    std::shared_ptr<const Batch> firing_only;
    for (size_t i : channels_by_receiver_[receiver]) {
      std::shared_ptr<const Batch> batch = f.batch;
      if (!receivers_[i].channel->send_resolved() && batch->FiringCount() != batch->alerts.size()) {
        if (!firing_only && batch->Firing()) {
          auto b = std::make_shared<Batch>(*batch);
          b->alerts.resize(b->FiringCount());  // firing alerts come first
          firing_only = std::move(b);
        }
        batch = firing_only;
        if (!batch) continue;
      }
      ++flight->remaining;
      queue_.push_back(Item{flight, std::move(batch), i, 0, now, now,
                            Backoff(options_.backoff, jitter_seeds_()), false});
      work_cv_.Signal();  // one worker per message
    }
    if (flight->remaining == 0) {
      grouper_.Done(f.group, now);
      for (const Grouper::Token& n : flight->members) FinishLocked(n);
    }
  }
  UpdateGaugesLocked();
  return grouper_.NextDue();
}

void Delivery::ItemDoneLocked(Item& item) {
  if (--item.flight->remaining > 0) return;
  grouper_.Done(item.flight->group, absl::Now());
  for (const Grouper::Token& n : item.flight->members) FinishLocked(n);
}

void Delivery::SpoolDone(const AcceptedNotification& accepted) {
  if (!accepted.spool) return;
  SpoolFile& file = *accepted.spool;
  const std::string done = file.path + ".done";
  if (--file.remaining == 0) {
    unlink(file.path.c_str());
    unlink(done.c_str());
    return;
  }
  // The batch's file stays while others in it are pending: note this one as finished, so a
  // restart does not deliver it again (not fsync'ed: at worst it is delivered twice).
  int fd = open(done.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return;
  const std::string line = accepted.request.idempotency_key() + "\n";
  (void)!write(fd, line.data(), line.size());
  close(fd);
}

absl::StatusOr<std::string> Delivery::WriteSpoolBatch(
    const std::vector<const v1::NotifyRequest*>& batch, uint64_t number) {
  std::string lines;
  for (const v1::NotifyRequest* r : batch) {
    std::string json;
    if (!google::protobuf::util::MessageToJsonString(*r, &json).ok()) {
      return absl::InternalError("cannot encode a notification");
    }
    lines += json;  // protobuf's JSON has no raw newlines: one line per notification
    lines += '\n';
  }
  const std::string name = absl::StrCat(absl::ToUnixNanos(absl::Now()), "-", number, ".jsonl");
  const std::string path = absl::StrCat(options_.spool_directory, "/", name);
  const std::string tmp = absl::StrCat(options_.spool_directory, "/.", name, ".tmp");
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("spool_directory ", options_.spool_directory, ": ", strerror(errno)));
  }
  bool ok =
      write(fd, lines.data(), lines.size()) == static_cast<ssize_t>(lines.size()) && fsync(fd) == 0;
  ok = (close(fd) == 0) && ok;
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
    unlink(tmp.c_str());
    return absl::UnavailableError(
        absl::StrCat("spool_directory ", options_.spool_directory, ": write failed"));
  }
  // The rename is durable only once the directory itself is synced.
  int dir = open(options_.spool_directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const bool synced = dir >= 0 && fsync(dir) == 0;
  if (dir >= 0) close(dir);
  if (!synced) {
    unlink(path.c_str());
    return absl::UnavailableError(
        absl::StrCat("spool_directory ", options_.spool_directory, ": fsync failed"));
  }
  return path;
}

std::vector<std::string> Delivery::Keys() const {
  MutexLock lock(&mu_);
  return std::vector<std::string>(keys_.order().begin(), keys_.order().end());
}

void Delivery::RememberKeys(const std::vector<std::string>& keys) {
  MutexLock lock(&mu_);
  for (const std::string& k : keys) keys_.Insert(k);
}

absl::StatusOr<int> Delivery::Recover() {
  if (options_.spool_directory.empty()) return 0;
  DIR* dir = opendir(options_.spool_directory.c_str());
  if (dir == nullptr) {
    return absl::UnavailableError(absl::StrCat("spool_directory ", options_.spool_directory,
                                               ": cannot open: ", strerror(errno)));
  }
  std::vector<std::string> names;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.' &&
        (absl::EndsWith(e->d_name, ".json") || absl::EndsWith(e->d_name, ".jsonl"))) {
      names.emplace_back(e->d_name);
    } else if (e->d_name[0] == '.' && absl::EndsWith(e->d_name, ".tmp")) {
      // A write cut short by a crash: never acknowledged, so never accepted.
      unlink(absl::StrCat(options_.spool_directory, "/", e->d_name).c_str());
    }
  }
  closedir(dir);
  // Names start with the acceptance time: sorting restores the order they were accepted in.
  // A .jsonl file holds a batch (a notification per line); a .json file one notification (the
  // format before batches).
  std::sort(names.begin(), names.end());
  int recovered = 0;
  MutexLock lock(&mu_);
  for (const std::string& n : names) {
    const std::string path = absl::StrCat(options_.spool_directory, "/", n);
    absl::StatusOr<std::string> text = ReadRegularFile(path, 256 << 20);
    std::vector<v1::NotifyRequest> requests;
    // Notifications of the batch already finished before the restart.
    absl::flat_hash_set<std::string> finished;
    if (absl::StatusOr<std::string> done = ReadRegularFile(path + ".done", 64 << 20); done.ok()) {
      for (absl::string_view k : absl::StrSplit(*done, '\n', absl::SkipEmpty())) {
        finished.insert(std::string(k));
      }
    }
    size_t unreadable = 0;
    if (text.ok()) {
      std::vector<absl::string_view> lines =
          absl::EndsWith(n, ".jsonl") ? absl::StrSplit(*text, '\n', absl::SkipEmpty())
                                      : std::vector<absl::string_view>{absl::string_view(*text)};
      for (absl::string_view line : lines) {
        v1::NotifyRequest request;
        if (google::protobuf::util::JsonStringToMessage(std::string(line), &request).ok() &&
            !request.idempotency_key().empty()) {
          requests.push_back(std::move(request));
        } else {
          ++unreadable;
        }
      }
    }
    if (requests.empty() || unreadable > 0) {
      // Kept aside for a person to look at, whatever could be read is still delivered.
      log::Error("unreadable spool file or lines; a copy is kept as *.bad",
                 {{"file", path}, {"unreadable_lines", unreadable}});
      if (requests.empty()) {
        rename(path.c_str(), (path + ".bad").c_str());
        continue;
      }
      std::ofstream(path + ".bad", std::ios::binary) << *text;
    }
    std::vector<const v1::NotifyRequest*> pending;
    for (const v1::NotifyRequest& request : requests) {
      keys_.Insert(request.idempotency_key());
      if (finished.count(request.idempotency_key()) == 0) pending.push_back(&request);
    }
    if (pending.empty()) {
      unlink(path.c_str());
      unlink((path + ".done").c_str());
      continue;
    }
    auto file = std::make_shared<SpoolFile>();
    file->path = path;
    file->remaining = pending.size();
    for (const v1::NotifyRequest* request : pending) {
      EnqueueLocked(*request, file);
      ++recovered;
    }
  }
  return recovered;
}

void Delivery::Start() {
  for (int i = 0; i < options_.workers; ++i) threads_.emplace_back([this] { Work(); });
}

void Delivery::Stop() {
  {
    // The spool writer first: it answers what it holds (callers are waiting), then ends.
    MutexLock lock(&mu_);
    spool_stopping_ = true;
    spool_cv_.SignalAll();
  }
  if (spool_thread_.joinable()) spool_thread_.join();
  {
    MutexLock lock(&mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
    work_cv_.SignalAll();
  }
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  MutexLock lock(&mu_);
  if (!queue_.empty() || grouper_.pending() > 0) {
    log::Warn("stopping with undelivered notifications",
              {{"messages", queue_.size()}, {"waiting_in_groups", grouper_.pending()}});
  }
}

size_t Delivery::queued() const {
  MutexLock lock(&mu_);
  return queue_.size() + grouper_.pending();
}

void Delivery::Work() {
  while (true) {
    std::list<Item>::iterator item;
    {
      MutexLock lock(&mu_);
      while (true) {
        if (stopping_) return;
        const absl::Time now = absl::Now();
        absl::Time earliest = FlushGroupsLocked(now);
        item = queue_.end();
        for (auto it = queue_.begin(); it != queue_.end(); ++it) {
          // A channel may hold all workers but one: a hanging receiver never stalls the rest.
          if (it->in_flight || in_flight_[it->receiver] >= max_in_flight_per_channel_) continue;
          if (it->next_attempt <= now) {
            item = it;
            break;
          }
          earliest = std::min(earliest, it->next_attempt);
        }
        if (item != queue_.end()) break;
        // Woken by a new message (one worker each), a new notification, Stop(), or the time the
        // next retry or group falls due.
        work_cv_.WaitWithDeadline(&mu_, std::min(earliest, now + absl::Seconds(10)));
      }
      item->in_flight = true;
      ++in_flight_[item->receiver];
    }
    // Send outside the lock. The item stays in the list (only this thread erases it).
    const Receiver& r = receivers_[item->receiver];
    const int attempts = ++item->attempts;
    const Batch& batch = *item->batch;
    absl::Status s = r.channel->Send(batch);
    MutexLock lock(&mu_);
    item->in_flight = false;
    --in_flight_[item->receiver];
    // The delivery log follows each notification the message carries (a repeat carries none).
    auto log_attempt = [&](const char* status,
                           const std::string& error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (observer_ == nullptr) return;
      for (const Grouper::Token& n : item->flight->members) {
        observer_->Attempted(n->request.idempotency_key(), targets_[item->receiver], status,
                             attempts, error);
      }
    };
    if (s.ok()) {
      deliveries_.Add({{"receiver", r.name}, {"channel", r.kind}, {"result", "sent"}}).Increment();
      // Debug: one line per delivery would cost more than the delivery (the log and the
      // metrics say the same); failures are logged at warn and error.
      log::Debug(batch.repeat ? "repeat delivered" : "notification delivered",
                 {{"key", batch.key},
                  {"receiver", r.name},
                  {"channel", r.kind},
                  {"alerts", batch.alerts.size()},
                  {"attempts", attempts}});
      log_attempt("sent", "");
      ItemDoneLocked(*item);
      queue_.erase(item);
    } else if (s.code() == absl::StatusCode::kInvalidArgument ||
               absl::Now() - item->first_attempt >= options_.give_up_after) {
      deliveries_.Add({{"receiver", r.name}, {"channel", r.kind}, {"result", "gave_up"}})
          .Increment();
      log::Error("notification not delivered; giving up", {{"key", batch.key},
                                                           {"receiver", r.name},
                                                           {"channel", r.kind},
                                                           {"alerts", batch.alerts.size()},
                                                           {"attempts", attempts},
                                                           {"error", s}});
      log_attempt("failed", std::string(s.message()));
      ItemDoneLocked(*item);
      queue_.erase(item);
    } else {
      deliveries_.Add({{"receiver", r.name}, {"channel", r.kind}, {"result", "retry"}}).Increment();
      absl::Duration delay = item->backoff.Next();
      log::Warn("notification delivery failed; will retry",
                {{"key", batch.key},
                 {"receiver", r.name},
                 {"channel", r.kind},
                 {"attempts", attempts},
                 {"retry_in", absl::FormatDuration(delay)},
                 {"error", s}});
      item->next_attempt = absl::Now() + delay;
      log_attempt("retrying", std::string(s.message()));
    }
    UpdateGaugesLocked();
  }
}

}  // namespace vigie::notifier
