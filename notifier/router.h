// Which receivers a notification goes to: a route tree in Alertmanager's vocabulary (matchers,
// continue, child routes, active and mute time intervals) and per-receiver rate limits.
// Without a route tree every receiver gets every notification.
//
// A notification enters at the root. A route matches when all its matchers match; a matching
// route hands the notification to the first matching child (and, with `continue` on that
// child, to later matching children too); when no child matches, the route itself delivers
// it to its receiver (inherited from its parent when not set), in the group its grouping
// puts it in. A route outside its active_time_intervals, or inside one of its
// mute_time_intervals, sends nothing while it is so; its groups wait (see Grouper).
#ifndef VIGIE_NOTIFIER_ROUTER_H_
#define VIGIE_NOTIFIER_ROUTER_H_

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "re2/re2.h"
#include "vigie/v1/config.pb.h"
#include "vigie/v1/notifier.pb.h"

namespace vigie::notifier {

// name="value", name!="value", name=~"regex", name!~"regex" (regexes anchored, RE2). The
// name "severity" also matches the notification's severity field when there is no such label.
class Matcher {
 public:
  static absl::StatusOr<Matcher> Parse(const std::string& field, const std::string& text);
  bool Matches(const v1::Notification& n) const;

 private:
  std::string name_, value_;
  bool negate_ = false;
  std::shared_ptr<RE2> re_;
};

// Times of the week in a time zone: any of `times` (HH:MM-HH:MM, an end before the start spans
// midnight) on any of `weekdays` (empty: every day; empty times: all day).
class TimeInterval {
 public:
  static absl::StatusOr<TimeInterval> FromConfig(const std::string& field,
                                                 const v1::TimeInterval& c);
  bool Contains(absl::Time t) const;

 private:
  absl::TimeZone zone_;
  std::vector<std::pair<int, int>> minutes_;  // [start, end) in minutes of the day
  std::set<int> weekdays_;                    // 0 = Monday
};

// How a route groups the alerts it delivers (see Route in config.proto).
struct Grouping {
  // Label names whose values make the group; empty with `each_alert`: one group per alert.
  std::vector<std::string> by;
  bool by_all = false;     // "...": every label
  bool each_alert = true;  // group_by set nowhere on the way from the root
  absl::Duration wait = absl::ZeroDuration();
  absl::Duration interval = absl::ZeroDuration();
  absl::Duration repeat = absl::Hours(4);  // zero: never repeat
};

// A route that delivers: its receiver, how it groups, and when it may send.
struct RoutePolicy {
  int id = 0;  // unique in its tree; names the route's groups
  std::string receiver;
  Grouping grouping;
  std::vector<const TimeInterval*> active, mute;
  // Inside one of the active intervals (if any) and outside every mute interval.
  bool ActiveAt(absl::Time t) const;
};

class Router {
 public:
  // `receivers` are the names configured; every receiver a route names must be among them.
  static absl::StatusOr<std::unique_ptr<Router>> FromConfig(const v1::NotifierConfig& c,
                                                            const std::set<std::string>& receivers);

  // The routes that deliver `request`, each once, in tree order. Whether they may send now is
  // decided when their group is sent (RoutePolicy::ActiveAt), as Alertmanager does.
  std::vector<const RoutePolicy*> Route(const v1::NotifyRequest& request) const;

 private:
  struct Node {
    RoutePolicy policy;
    std::vector<Matcher> matchers;
    bool continue_ = false;
    std::vector<Node> children;
  };
  static absl::Status Build(const std::string& field, const v1::Route& r, const Node* parent,
                            Router& router, const std::set<std::string>& receivers, Node* out);
  // Returns whether `node` matched.
  bool Walk(const Node& node, const v1::Notification& n,
            std::vector<const RoutePolicy*>* out) const;

  bool all_ = true;  // no route tree: everyone
  std::vector<RoutePolicy> all_receivers_;
  std::map<std::string, TimeInterval> intervals_;
  Node root_;
  int next_id_ = 0;
};

// At most `max` notifications per `per` for one receiver (a sliding window). Thread-compatible.
class RateLimiter {
 public:
  RateLimiter(int max, absl::Duration per) : max_(max), per_(per) {}
  bool Allow(absl::Time now);

 private:
  const int max_;
  const absl::Duration per_;
  std::vector<absl::Time> sent_;  // at most max_ entries
};

}  // namespace vigie::notifier

#endif  // VIGIE_NOTIFIER_ROUTER_H_
