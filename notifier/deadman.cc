#include "notifier/deadman.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "notifier/http_request.h"

namespace vigie::notifier {

DeadMan::DeadMan(DeadManOptions options, const DeliveryHolder* delivery,
                 prometheus::Registry* registry)
    : Runnable("deadman"),
      options_(std::move(options)),
      delivery_(delivery),
      last_(absl::Now()),
      last_heartbeat_(prometheus::BuildGauge()
                          .Name("vigie_notifier_last_heartbeat_timestamp_seconds")
                          .Help("When the control plane last called Heartbeat (0: not yet).")
                          .Register(*registry)
                          .Add({})),
      firing_(prometheus::BuildGauge()
                  .Name("vigie_notifier_deadman_firing")
                  .Help("1 while VigieControlPlaneDown is firing (no heartbeat for deadman.after).")
                  .Register(*registry)
                  .Add({})),
      pings_(prometheus::BuildCounter()
                 .Name("vigie_notifier_watchdog_pings_total")
                 .Help("Pings of deadman.watchdog_url, by result.")
                 .Register(*registry)) {
  for (const char* r : {"ok", "failed"}) pings_.Add({{"result", r}});
}

DeadMan::~DeadMan() { Stop(); }

v1::NotifyRequest DeadMan::Transition(bool firing, const std::string& source) const {
  v1::NotifyRequest r;
  r.set_idempotency_key(absl::StrCat("deadman/", absl::ToUnixMillis(firing_since_),
                                     firing ? "/firing" : "/resolved"));
  v1::Notification* n = r.mutable_notification();
  n->set_status(firing ? v1::Notification::STATUS_FIRING : v1::Notification::STATUS_RESOLVED);
  n->set_rule("VigieControlPlaneDown");
  n->set_severity("critical");
  n->set_fingerprint("deadman");
  (*n->mutable_labels())["alertname"] = "VigieControlPlaneDown";
  if (!source.empty()) (*n->mutable_labels())["source"] = source;
  return r;
}

bool DeadMan::Send(const v1::NotifyRequest& r) {
  std::shared_ptr<Delivery> d = delivery_->Get();
  return d && d->Accept(r).ok();
}

void DeadMan::Heartbeat(const std::string& source) {
  const absl::Time now = absl::Now();
  {
    MutexLock lock(&mu_);
    last_ = now;
    source_ = source.substr(0, 256);
  }
  last_heartbeat_.Set(absl::ToDoubleSeconds(now - absl::UnixEpoch()));
  Wake();
}

void DeadMan::Run() {
  do {
    absl::Time last;
    std::string source;
    {
      MutexLock lock(&mu_);
      last = last_;
      source = source_;
    }
    const absl::Time now = absl::Now();
    const bool missing = options_.after > absl::ZeroDuration() && now - last >= options_.after;
    if (missing && firing_since_ == absl::InfinitePast()) {
      firing_since_ = now;
      v1::NotifyRequest r = Transition(true, source);
      v1::Notification* n = r.mutable_notification();
      (*n->mutable_annotations())["summary"] =
          absl::StrCat("No heartbeat from the control plane for ", absl::FormatDuration(now - last),
                       ": it, or its database, is down or cannot reach the notifier");
      n->set_starts_at_ms(absl::ToUnixMillis(last + options_.after));
      if (!Send(r)) {
        firing_since_ = absl::InfinitePast();  // try again at the next check
        continue;
      }
      log::Error("dead-man's switch: no heartbeat from the control plane",
                 {{"since", absl::FormatTime(last)}});
      firing_.Set(1);
    } else if (!missing && firing_since_ != absl::InfinitePast()) {
      v1::NotifyRequest r = Transition(false, source);
      v1::Notification* n = r.mutable_notification();
      (*n->mutable_annotations())["summary"] = "The control plane's heartbeats are back";
      n->set_starts_at_ms(absl::ToUnixMillis(firing_since_));
      n->set_ends_at_ms(absl::ToUnixMillis(last));
      if (!Send(r)) continue;  // still firing; resolve at the next check
      log::Info("dead-man's switch: heartbeats are back");
      firing_since_ = absl::InfinitePast();
      firing_.Set(0);
    }
    if (!options_.watchdog_url.empty() && !missing &&
        now - last_ping_ >= options_.watchdog_interval) {
      HttpRequest ping;
      ping.url = options_.watchdog_url;
      ping.body = "vigie watchdog";
      ping.headers = {"Content-Type: text/plain"};
      ping.timeout = absl::Seconds(10);
      absl::Status s = SendHttp("watchdog", ping);
      pings_.Add({{"result", s.ok() ? "ok" : "failed"}}).Increment();
      if (!s.ok()) log::Warn("watchdog ping failed", {{"error", s}});
      last_ping_ = now;
    }
  } while (WaitFor(options_.check_interval));
}

}  // namespace vigie::notifier
