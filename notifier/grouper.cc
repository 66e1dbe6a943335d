#include "notifier/grouper.h"

#include <openssl/sha.h>

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace vigie::notifier {
namespace {

bool IsFiring(const v1::NotifyRequest& r) {
  return r.notification().status() != v1::Notification::STATUS_RESOLVED;
}

// The alert's identity in a group: its fingerprint (the control plane's), else its key.
const std::string& AlertId(const v1::NotifyRequest& r) {
  return r.notification().fingerprint().empty() ? r.idempotency_key()
                                                : r.notification().fingerprint();
}

// A message key of the group's own: stable for the same group and changes, short, header-safe.
std::string MessageKey(const std::string& group, const std::vector<Grouper::Token>& members,
                       bool repeat, absl::Time now) {
  std::string text = group;
  std::vector<std::string> keys;
  for (const Grouper::Token& m : members) keys.push_back(m->request.idempotency_key());
  std::sort(keys.begin(), keys.end());
  for (const std::string& k : keys) absl::StrAppend(&text, "\n", k);
  if (repeat) absl::StrAppend(&text, "\nrepeat ", absl::ToUnixSeconds(now));
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  return absl::StrCat(
      repeat ? "repeat-" : "group-",
      absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), 16)));
}

absl::Time NextMinute(absl::Time t) {
  return absl::FromUnixSeconds((absl::ToUnixSeconds(t) / 60 + 1) * 60);
}

}  // namespace

bool Grouper::Entry::Repeatable() const {
  return IsFiring(latest) && notified && latest.notification().acknowledged_by().empty() &&
         latest.notification().silenced_by().empty();
}

std::pair<std::string, std::map<std::string, std::string>> GroupOf(const RoutePolicy& policy,
                                                                   const v1::Notification& n) {
  std::map<std::string, std::string> labels;
  std::string key = absl::StrCat("route", policy.id, ":");
  const Grouping& g = policy.grouping;
  if (g.each_alert) {
    // One group per alert: named by the alert itself.
    absl::StrAppend(&key, n.fingerprint().empty() ? "" : n.fingerprint());
    return {key, labels};
  }
  if (g.by_all) {
    labels.insert(n.labels().begin(), n.labels().end());
  } else {
    for (const std::string& name : g.by) {
      auto it = n.labels().find(name);
      labels[name] = it == n.labels().end() ? "" : it->second;
    }
  }
  key += "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    absl::StrAppend(&key, first ? "" : ",", k, "=\"", absl::CEscape(v), "\"");
    first = false;
  }
  key += "}";
  return {key, labels};
}

std::vector<Grouper::Token> Grouper::Add(const RoutePolicy& policy, Token n, absl::Time now) {
  std::vector<Token> superseded;
  auto [key, labels] = GroupOf(policy, n->request.notification());
  if (policy.grouping.each_alert && n->request.notification().fingerprint().empty()) {
    key += n->request.idempotency_key();  // no identity: a group of its own
  }
  auto [it, created] = groups_.try_emplace(key);
  Group& g = it->second;
  if (created) {
    g.policy = &policy;
    g.labels = std::move(labels);
  }
  const std::string& id = AlertId(n->request);
  auto [entry_it, new_entry] = g.alerts.try_emplace(id);
  Entry& e = entry_it->second;
  if (new_entry) {
    ++alerts_;
    order_.emplace_back(key, id);
  }
  if (e.pending) {
    superseded.push_back(std::move(e.pending));
  } else {
    ++pending_;
  }
  if (IsFiring(n->request)) e.fired_here = true;
  e.latest = n->request;
  e.pending = std::move(n);
  if (created) {
    Schedule(key, g, now + policy.grouping.wait);
  } else if (!g.in_flight) {
    // A change: at the latest group_interval after the last message (before any message,
    // group_wait already runs).
    const absl::Time at =
        g.messages == 0 ? g.due : std::max(now, g.last_sent + policy.grouping.interval);
    if (at < g.due) Schedule(key, g, at);
  }
  if (new_entry && alerts_ > max_alerts_) ForgetOldest();
  return superseded;
}

void Grouper::Schedule(const std::string& key, Group& g, absl::Time at) {
  if (g.due != absl::InfiniteFuture()) due_.erase({g.due, key});
  g.due = at;
  if (at != absl::InfiniteFuture()) due_.emplace(at, key);
}

void Grouper::Reschedule(const std::string& key, Group& g, absl::Time now) {
  if (g.alerts.empty() && !g.in_flight) {
    Schedule(key, g, absl::InfiniteFuture());
    groups_.erase(key);
    return;
  }
  if (g.in_flight) return;  // Done() decides
  bool changed = false, firing = false;
  for (const auto& [id, e] : g.alerts) {
    changed |= e.pending != nullptr;
    firing |= e.Repeatable();
  }
  absl::Time at = absl::InfiniteFuture();
  if (changed) {
    at = g.messages == 0 ? now : std::max(now, g.last_sent + g.policy->grouping.interval);
  } else if (firing && g.policy->grouping.repeat > absl::ZeroDuration()) {
    at = g.last_sent + g.policy->grouping.repeat;
  }
  Schedule(key, g, at);
}

std::vector<Grouper::Flush> Grouper::Due(absl::Time now) {
  std::vector<Flush> out;
  while (!due_.empty() && due_.begin()->first <= now) {
    const std::string key = due_.begin()->second;
    due_.erase(due_.begin());
    Group& g = groups_.at(key);
    g.due = absl::InfiniteFuture();
    if (g.in_flight) continue;
    bool changed = false, firing = false;
    for (const auto& [id, e] : g.alerts) {
      changed |= e.pending != nullptr;
      firing |= e.Repeatable();
    }
    const Grouping& grouping = g.policy->grouping;
    const bool repeat = !changed && firing && grouping.repeat > absl::ZeroDuration() &&
                        now >= g.last_sent + grouping.repeat;
    if (!changed && !repeat) {
      Reschedule(key, g, now);
      continue;
    }
    Flush f;
    f.policy = g.policy;
    f.group = key;
    const bool active = g.policy->ActiveAt(now);
    auto batch = std::make_shared<Batch>();
    std::vector<v1::NotifyRequest> resolved;
    for (auto e = g.alerts.begin(); e != g.alerts.end();) {
      const bool is_firing = IsFiring(e->second.latest);
      // Fired and resolved here before its firing was ever sent: nothing to tell.
      const bool silent = !is_firing && e->second.fired_here && !e->second.notified;
      if (silent || !active) {
        if (silent) {
          if (e->second.pending) {
            f.dropped.push_back(std::move(e->second.pending));
            --pending_;
          }
          e = g.alerts.erase(e);
          --alerts_;
        } else {
          ++e;
        }
        continue;
      }
      if (e->second.pending) {
        f.members.push_back(std::move(e->second.pending));
        e->second.pending = nullptr;
        --pending_;
      }
      if (is_firing) {
        batch->alerts.push_back(e->second.latest);
        e->second.notified = true;
        ++e;
      } else {
        resolved.push_back(std::move(e->second.latest));
        e = g.alerts.erase(e);
        --alerts_;
      }
    }
    if (!active) {
      f.muted = true;
      out.push_back(std::move(f));
      if (g.alerts.empty()) {
        Reschedule(key, g, now);
      } else {
        // Looked at again when the mute may have ended.
        Schedule(key, g, std::max(NextMinute(now), now + grouping.interval));
      }
      continue;
    }
    for (v1::NotifyRequest& r : resolved) batch->alerts.push_back(std::move(r));
    if (batch->alerts.empty()) {
      out.push_back(std::move(f));
      Reschedule(key, g, now);
      continue;
    }
    batch->receiver = g.policy->receiver;
    batch->group_key = key;
    batch->group_labels = g.labels;
    batch->repeat = f.members.empty();
    if (!batch->repeat && batch->alerts.size() == 1 && f.members.size() == 1 &&
        f.members[0]->request.idempotency_key() == batch->alerts[0].idempotency_key()) {
      batch->key = batch->alerts[0].idempotency_key();  // as without grouping
    } else {
      batch->key = MessageKey(key, f.members, batch->repeat, now);
    }
    f.batch = std::move(batch);
    g.in_flight = true;
    g.last_sent = now;
    ++g.messages;
    out.push_back(std::move(f));
  }
  return out;
}

void Grouper::Done(const std::string& key, absl::Time now) {
  auto it = groups_.find(key);
  if (it == groups_.end()) return;
  it->second.in_flight = false;
  Reschedule(key, it->second, now);
}

absl::Time Grouper::NextDue() const {
  return due_.empty() ? absl::InfiniteFuture() : due_.begin()->first;
}

void Grouper::ForgetOldest() {
  // Drop stale references now and then, so order_ stays within twice the live alerts.
  if (order_.size() > 2 * std::max<size_t>(alerts_, 1024)) {
    std::deque<std::pair<std::string, std::string>> live;
    for (auto& ref : order_) {
      auto g = groups_.find(ref.first);
      if (g != groups_.end() && g->second.alerts.count(ref.second)) live.push_back(std::move(ref));
    }
    order_.swap(live);
  }
  for (int tries = 0; tries < 64 && !order_.empty() && alerts_ > max_alerts_; ++tries) {
    auto ref = std::move(order_.front());
    order_.pop_front();
    auto g = groups_.find(ref.first);
    if (g == groups_.end()) continue;
    auto e = g->second.alerts.find(ref.second);
    if (e == g->second.alerts.end()) continue;
    if (e->second.pending || g->second.in_flight) {
      order_.push_back(std::move(ref));  // still to be sent: not forgotten
      continue;
    }
    g->second.alerts.erase(e);
    --alerts_;
    ++forgotten_;
    if (g->second.alerts.empty()) {
      Schedule(ref.first, g->second, absl::InfiniteFuture());
      groups_.erase(g);
    }
  }
}

}  // namespace vigie::notifier
