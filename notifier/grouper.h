// Alert groups, in Alertmanager's sense: the alerts a route delivers, grouped by the values of
// its group_by labels, sent together in one message per receiver and paced by group_wait,
// group_interval and repeat_interval. Every time is passed in (tests drive a clock of their
// own); not thread-safe (Delivery calls it under its lock).
//
// A group's life:
//  - The first alert creates it; its first message goes out group_wait later, with every alert
//    that joined meanwhile.
//  - Changes after a message (a new alert, a resolve) go out group_interval after it.
//  - With no change, a group with firing alerts is sent again repeat_interval after its last
//    message; alerts acknowledged or silenced (Notification.acknowledged_by, silenced_by) do not
//    count: a group whose firing alerts are all acknowledged is not repeated.
//  - A change of an alert that replaces a change not yet sent supersedes it (one message says
//    the latest). An alert that fires and resolves before its firing was sent is not sent at
//    all: nobody needs to hear about a problem that fixed itself within group_wait.
//  - While the route is muted (time intervals) nothing is sent; what is waiting goes out at
//    the first group_interval tick after the mute ends (an alert resolved meanwhile, whose
//    firing was never sent, is dropped as above).
//  - One message of a group at a time: the next waits until the previous one is delivered or
//    given up on, so a resolve never overtakes its firing.
//  - A resolved alert leaves the group once sent; an empty group is forgotten.
#ifndef VIGIE_NOTIFIER_GROUPER_H_
#define VIGIE_NOTIFIER_GROUPER_H_

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "notifier/batch.h"
#include "notifier/router.h"

namespace vigie::notifier {

class Grouper {
 public:
  using Token = std::shared_ptr<AcceptedNotification>;

  // Keeps at most about `max_alerts` alerts whose changes were all sent (the oldest first
  // forgotten: it is not repeated, and its resolve is still sent).
  explicit Grouper(size_t max_alerts) : max_alerts_(max_alerts) {}

  // Puts `n` in its group of `policy` (which must outlive the Grouper). Returns notifications
  // of the same alert that were waiting in that group and that `n` supersedes: they will never
  // be sent there.
  std::vector<Token> Add(const RoutePolicy& policy, Token n, absl::Time now);

  struct Flush {
    const RoutePolicy* policy = nullptr;
    std::string group;
    // Null when nothing is sent (muted, or every change dropped).
    std::shared_ptr<const Batch> batch;
    // Notifications this message carries (its changes; none for a repeat). Done once the
    // message is delivered or given up on, through Done(group).
    std::vector<Token> members;
    // Notifications that will never be sent by this group (resolved before their firing was
    // sent): finished now.
    std::vector<Token> dropped;
    bool muted = false;
  };
  // Groups due at `now`. For each flush with a batch, call Done(group) when it is finished.
  std::vector<Flush> Due(absl::Time now);
  void Done(const std::string& group, absl::Time now);

  // When the next group falls due; InfiniteFuture when none.
  absl::Time NextDue() const;
  // Notifications waiting in groups (not yet in a message).
  size_t pending() const { return pending_; }
  size_t groups() const { return groups_.size(); }
  size_t alerts() const { return alerts_; }
  // Alerts forgotten to stay within max_alerts.
  uint64_t forgotten() const { return forgotten_; }

 private:
  struct Entry {
    v1::NotifyRequest latest;
    Token pending;            // the change not yet sent, if any
    bool notified = false;    // its firing was sent (or may have been)
    bool fired_here = false;  // a firing of it reached this group
    // Firing, its firing sent, and neither acknowledged nor silenced: repeat_interval applies.
    bool Repeatable() const;
  };
  struct Group {
    const RoutePolicy* policy = nullptr;
    std::map<std::string, std::string> labels;
    std::map<std::string, Entry> alerts;  // by fingerprint, for a stable message order
    absl::Time due = absl::InfiniteFuture();
    absl::Time last_sent = absl::InfinitePast();
    bool in_flight = false;
    uint64_t messages = 0;
  };
  void Schedule(const std::string& key, Group& g, absl::Time at);
  // After a message or a change: when the group must be looked at next (or forgotten).
  void Reschedule(const std::string& key, Group& g, absl::Time now);
  void ForgetOldest();

  const size_t max_alerts_;
  absl::flat_hash_map<std::string, Group> groups_;
  std::set<std::pair<absl::Time, std::string>> due_;
  // (group, fingerprint) in the order alerts were added, to forget the oldest (lazily: entries
  // already gone are skipped).
  std::deque<std::pair<std::string, std::string>> order_;
  size_t alerts_ = 0;
  size_t pending_ = 0;
  uint64_t forgotten_ = 0;
};

// The group an alert belongs to under `g`, and its labels; exposed for tests.
std::pair<std::string, std::map<std::string, std::string>> GroupOf(const RoutePolicy& policy,
                                                                   const v1::Notification& n);

}  // namespace vigie::notifier

#endif  // VIGIE_NOTIFIER_GROUPER_H_
