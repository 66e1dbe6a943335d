#include "notifier/router.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/civil_time.h"
#include "common/status.h"
#include "common/yaml_config.h"

namespace vigie::notifier {

absl::StatusOr<Matcher> Matcher::Parse(const std::string& field, const std::string& text) {
  static const RE2 kMatcher(
      R"re(\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*)re");
  std::string name, op, value;
  if (!RE2::FullMatch(text, kMatcher, &name, &op, &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": \"", text,
                     "\" is not a matcher; write name=\"value\", name!=\"value\", "
                     "name=~\"regex\" or name!~\"regex\""));
  }
  std::string unescaped;
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '\\' && i + 1 < value.size()) ++i;
    unescaped.push_back(value[i]);
  }
  Matcher m;
  m.name_ = name;
  m.value_ = unescaped;
  m.negate_ = op[0] == '!';
  if (op.back() == '~') {
    m.re_ = std::make_shared<RE2>(unescaped);
    if (!m.re_->ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": regex \"", unescaped, "\": ", m.re_->error()));
    }
  }
  return m;
}

bool Matcher::Matches(const v1::Notification& n) const {
  std::string v;
  auto it = n.labels().find(name_);
  if (it != n.labels().end()) {
    v = it->second;
  } else if (name_ == "severity") {
    v = n.severity();
  }
  const bool hit = re_ ? RE2::FullMatch(v, *re_) : v == value_;
  return hit != negate_;
}

namespace {

absl::StatusOr<int> Minutes(const std::string& field, const std::string& hhmm) {
  int h = 0, m = 0;
  std::vector<std::string> parts = absl::StrSplit(hhmm, ':');
  if (parts.size() != 2 || parts[0].size() != 2 || parts[1].size() != 2 ||
      !absl::SimpleAtoi(parts[0], &h) || !absl::SimpleAtoi(parts[1], &m) || h < 0 || h > 24 ||
      m < 0 || m > 59 || (h == 24 && m != 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": \"", hhmm, "\" is not a time of day (HH:MM, 00:00-24:00)"));
  }
  return h * 60 + m;
}

absl::StatusOr<int> Weekday(const std::string& field, const std::string& name) {
  static const char* kDays[] = {"monday", "tuesday",  "wednesday", "thursday",
                                "friday", "saturday", "sunday"};
  const std::string lower = absl::AsciiStrToLower(name);
  for (int i = 0; i < 7; ++i) {
    if (lower == kDays[i]) return i;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": \"", name, "\" is not a weekday (monday ... sunday)"));
}

}  // namespace

absl::StatusOr<TimeInterval> TimeInterval::FromConfig(const std::string& field,
                                                      const v1::TimeInterval& c) {
  TimeInterval t;
  const std::string location = c.location().empty() ? "UTC" : c.location();
  if (!absl::LoadTimeZone(location, &t.zone_)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".location: \"", location, "\" is not a known time zone"));
  }
  for (int i = 0; i < c.times_size(); ++i) {
    const std::string f = absl::StrCat(field, ".times[", i, "]");
    VIGIE_ASSIGN_OR_RETURN(int start, Minutes(f + ".start_time", c.times(i).start_time()));
    VIGIE_ASSIGN_OR_RETURN(int end, Minutes(f + ".end_time", c.times(i).end_time()));
    if (start == end) {
      return absl::InvalidArgumentError(absl::StrCat(f, ": start_time equals end_time"));
    }
    if (start < end) {
      t.minutes_.emplace_back(start, end);
    } else {  // spans midnight
      t.minutes_.emplace_back(start, 24 * 60);
      t.minutes_.emplace_back(0, end);
    }
  }
  for (int i = 0; i < c.weekdays_size(); ++i) {
    const std::string f = absl::StrCat(field, ".weekdays[", i, "]");
    // "monday" or a range "monday:friday".
    std::vector<std::string> range = absl::StrSplit(c.weekdays(i), ':');
    if (range.size() > 2) {
      return absl::InvalidArgumentError(absl::StrCat(f, ": \"", c.weekdays(i), "\""));
    }
    VIGIE_ASSIGN_OR_RETURN(int from, Weekday(f, range[0]));
    VIGIE_ASSIGN_OR_RETURN(int to, Weekday(f, range.back()));
    for (int d = from;; d = (d + 1) % 7) {
      t.weekdays_.insert(d);
      if (d == to) break;
    }
  }
  return t;
}

bool TimeInterval::Contains(absl::Time t) const {
  const absl::CivilSecond local = absl::ToCivilSecond(t, zone_);
  const absl::Weekday wd = absl::GetWeekday(local);
  // absl::Weekday: monday = 0 ... sunday = 6, as here.
  if (!weekdays_.empty() && weekdays_.count(static_cast<int>(wd)) == 0) {
    // A range spanning midnight belongs to the day it started on; keep it simple: the day
    // of the moment itself decides.
    return false;
  }
  if (minutes_.empty()) return true;
  const int minute = local.hour() * 60 + local.minute();
  for (const auto& [start, end] : minutes_) {
    if (minute >= start && minute < end) return true;
  }
  return false;
}

bool RoutePolicy::ActiveAt(absl::Time t) const {
  bool on = active.empty();
  for (const TimeInterval* i : active) on |= i->Contains(t);
  for (const TimeInterval* i : mute) on &= !i->Contains(t);
  return on;
}

absl::StatusOr<std::unique_ptr<Router>> Router::FromConfig(const v1::NotifierConfig& c,
                                                           const std::set<std::string>& receivers) {
  std::unique_ptr<Router> r(new Router());
  for (const std::string& name : receivers) {
    RoutePolicy p;
    p.id = r->next_id_++;
    p.receiver = name;
    r->all_receivers_.push_back(std::move(p));
  }
  static const RE2 kName("[A-Za-z0-9._-]{1,64}");
  for (int i = 0; i < c.time_intervals_size(); ++i) {
    const std::string field = absl::StrCat("time_intervals[", i, "]");
    const v1::TimeInterval& ti = c.time_intervals(i);
    if (!RE2::FullMatch(ti.name(), kName)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".name: \"", ti.name(), "\" must be 1-64 of A-Z a-z 0-9 . _ -"));
    }
    VIGIE_ASSIGN_OR_RETURN(TimeInterval parsed, TimeInterval::FromConfig(field, ti));
    if (!r->intervals_.emplace(ti.name(), std::move(parsed)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".name: \"", ti.name(), "\" is used by an earlier interval"));
    }
  }
  if (!c.has_route()) return r;
  r->all_ = false;
  if (c.route().receiver().empty()) {
    return absl::InvalidArgumentError("route.receiver: required at the root");
  }
  if (!c.route().matchers().empty() || c.route().continue_()) {
    return absl::InvalidArgumentError("route: the root takes no matchers and no continue");
  }
  VIGIE_RETURN_IF_ERROR(Build("route", c.route(), nullptr, *r, receivers, &r->root_));
  return r;
}

namespace {

absl::Status ParseGrouping(const std::string& field, const v1::Route& c, Grouping* g) {
  if (!c.group_by().empty()) {
    static const RE2 kLabel("[A-Za-z_][A-Za-z0-9_]{0,127}");
    g->by.clear();
    g->by_all = false;
    g->each_alert = false;
    std::set<std::string> seen;
    for (int i = 0; i < c.group_by_size(); ++i) {
      const std::string& l = c.group_by(i);
      const std::string f = absl::StrCat(field, ".group_by[", i, "]");
      if (l == "...") {
        if (c.group_by_size() != 1) {
          return absl::InvalidArgumentError(absl::StrCat(f, ": \"...\" must be alone"));
        }
        g->by_all = true;
      } else if (!RE2::FullMatch(l, kLabel)) {
        return absl::InvalidArgumentError(
            absl::StrCat(f, ": \"", absl::CHexEscape(l), "\" is not a label name"));
      } else if (!seen.insert(l).second) {
        return absl::InvalidArgumentError(absl::StrCat(f, ": \"", l, "\" is listed twice"));
      } else {
        g->by.push_back(l);
      }
    }
    // Alertmanager's pacing, unless set below.
    g->wait = absl::Seconds(30);
    g->interval = absl::Minutes(5);
  }
  auto duration = [&](const char* name, const std::string& value, absl::Duration max,
                      absl::Duration* out) -> absl::Status {
    const std::string f = absl::StrCat(field, ".", name);
    VIGIE_ASSIGN_OR_RETURN(*out, ParseConfigDuration(f, value, *out));
    if (*out < absl::ZeroDuration() || *out > max) {
      return absl::InvalidArgumentError(
          absl::StrCat(f, ": \"", value, "\" must be between 0s and ", absl::FormatDuration(max)));
    }
    return absl::OkStatus();
  };
  VIGIE_RETURN_IF_ERROR(duration("group_wait", c.group_wait(), absl::Hours(24), &g->wait));
  VIGIE_RETURN_IF_ERROR(
      duration("group_interval", c.group_interval(), absl::Hours(24), &g->interval));
  VIGIE_RETURN_IF_ERROR(
      duration("repeat_interval", c.repeat_interval(), absl::Hours(24 * 30), &g->repeat));
  return absl::OkStatus();
}

}  // namespace

absl::Status Router::Build(const std::string& field, const v1::Route& c, const Node* parent,
                           Router& router, const std::set<std::string>& receivers, Node* out) {
  RoutePolicy& p = out->policy;
  p.id = router.next_id_++;
  p.receiver = c.receiver().empty() && parent != nullptr ? parent->policy.receiver : c.receiver();
  if (receivers.count(p.receiver) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".receiver: \"", p.receiver, "\" is not a configured receiver"));
  }
  if (parent != nullptr) p.grouping = parent->policy.grouping;
  VIGIE_RETURN_IF_ERROR(ParseGrouping(field, c, &p.grouping));
  for (int i = 0; i < c.matchers_size(); ++i) {
    VIGIE_ASSIGN_OR_RETURN(
        Matcher m, Matcher::Parse(absl::StrCat(field, ".matchers[", i, "]"), c.matchers(i)));
    out->matchers.push_back(std::move(m));
  }
  out->continue_ = c.continue_();
  auto intervals = [&](const char* what,
                       const google::protobuf::RepeatedPtrField<std::string>& names,
                       std::vector<const TimeInterval*>* to) -> absl::Status {
    for (int i = 0; i < names.size(); ++i) {
      auto it = router.intervals_.find(names[i]);
      if (it == router.intervals_.end()) {
        return absl::InvalidArgumentError(absl::StrCat(field, ".", what, "[", i, "]: \"", names[i],
                                                       "\" is not in time_intervals"));
      }
      to->push_back(&it->second);
    }
    return absl::OkStatus();
  };
  VIGIE_RETURN_IF_ERROR(intervals("active_time_intervals", c.active_time_intervals(), &p.active));
  VIGIE_RETURN_IF_ERROR(intervals("mute_time_intervals", c.mute_time_intervals(), &p.mute));
  out->children.resize(c.routes_size());
  for (int i = 0; i < c.routes_size(); ++i) {
    VIGIE_RETURN_IF_ERROR(Build(absl::StrCat(field, ".routes[", i, "]"), c.routes(i), out, router,
                                receivers, &out->children[i]));
  }
  return absl::OkStatus();
}

bool Router::Walk(const Node& node, const v1::Notification& n,
                  std::vector<const RoutePolicy*>* out) const {
  for (const Matcher& m : node.matchers) {
    if (!m.Matches(n)) return false;
  }
  bool child_matched = false;
  for (const Node& child : node.children) {
    if (Walk(child, n, out)) {
      child_matched = true;
      if (!child.continue_) break;
    }
  }
  if (child_matched) return true;
  if (std::find(out->begin(), out->end(), &node.policy) == out->end()) {
    out->push_back(&node.policy);
  }
  return true;
}

std::vector<const RoutePolicy*> Router::Route(const v1::NotifyRequest& request) const {
  std::vector<const RoutePolicy*> out;
  if (all_) {
    for (const RoutePolicy& p : all_receivers_) out.push_back(&p);
    return out;
  }
  Walk(root_, request.notification(), &out);
  return out;
}

bool RateLimiter::Allow(absl::Time now) {
  sent_.erase(
      std::remove_if(sent_.begin(), sent_.end(), [&](absl::Time t) { return now - t >= per_; }),
      sent_.end());
  if (static_cast<int>(sent_.size()) >= max_) return false;
  sent_.push_back(now);
  return true;
}

}  // namespace vigie::notifier
