#include "notifier/router.h"

#include "absl/time/civil_time.h"
#include "common/yaml_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigie::notifier {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

absl::StatusOr<std::unique_ptr<Router>> FromYaml(const std::string& yaml) {
  v1::NotifierConfig c;
  if (absl::Status s = ParseYamlConfig(yaml, &c); !s.ok()) return s;
  return Router::FromConfig(c, {"email", "sms", "slack", "default"});
}

v1::NotifyRequest Alert(const std::string& severity, const std::string& team = "ops") {
  v1::NotifyRequest r;
  r.set_idempotency_key("k");
  r.mutable_notification()->set_severity(severity);
  (*r.mutable_notification()->mutable_labels())["team"] = team;
  (*r.mutable_notification()->mutable_labels())["alertname"] = "DiskFull";
  return r;
}

// The receivers whose routes match and may send at `t`, as the delivery sees them.
struct Decision {
  std::set<std::string> receivers;
  int muted = 0;
};
Decision Route(const Router& r, const v1::NotifyRequest& alert, absl::Time t) {
  Decision d;
  for (const RoutePolicy* p : r.Route(alert)) {
    if (p->ActiveAt(t)) {
      d.receivers.insert(p->receiver);
    } else {
      ++d.muted;
    }
  }
  return d;
}

// A time in Paris (UTC+1 in winter).
absl::Time Paris(int y, int mo, int d, int h, int mi) {
  absl::TimeZone tz;
  EXPECT_TRUE(absl::LoadTimeZone("Europe/Paris", &tz));
  return absl::FromCivil(absl::CivilMinute(y, mo, d, h, mi), tz);
}

// "SMS only for critical alerts at night, otherwise email", with Slack for team web.
constexpr char kQuietHours[] = R"(
time_intervals:
  - name: night
    location: Europe/Paris
    times: [{start_time: "22:00", end_time: "07:00"}]
  - name: weekend
    location: Europe/Paris
    weekdays: ["saturday:sunday"]
route:
  receiver: email
  routes:
    - receiver: sms
      matchers: ['severity="critical"']
      active_time_intervals: [night]
      continue: true
    - receiver: email
      matchers: ['team!="web"']
      mute_time_intervals: [weekend]
    - receiver: slack
      matchers: ['team=~"web|front"']
)";

TEST(RouterTest, QuietHoursSendSmsOnlyForCriticalAtNight) {
  auto r = FromYaml(kQuietHours);
  ASSERT_TRUE(r.ok()) << r.status();
  // Monday 2026-11-30.
  const absl::Time monday_night = Paris(2026, 11, 30, 23, 30);
  const absl::Time monday_noon = Paris(2026, 11, 30, 12, 0);
  const absl::Time monday_early = Paris(2026, 11, 30, 6, 59);
  EXPECT_EQ(Route(**r, Alert("critical"), monday_night).receivers,
            (std::set<std::string>{"sms", "email"}));
  EXPECT_EQ(Route(**r, Alert("critical"), monday_early).receivers,
            (std::set<std::string>{"sms", "email"}));
  // Daytime: the SMS route matches but is not active; the alert goes on to email.
  Decision day = Route(**r, Alert("critical"), monday_noon);
  EXPECT_EQ(day.receivers, (std::set<std::string>{"email"}));
  EXPECT_EQ(day.muted, 1);
  EXPECT_EQ(Route(**r, Alert("warning"), monday_night).receivers, (std::set<std::string>{"email"}));
  // Saturday: email muted; a web alert goes to Slack whatever the day.
  const absl::Time saturday = Paris(2026, 12, 5, 12, 0);
  EXPECT_THAT(Route(**r, Alert("warning"), saturday).receivers, IsEmpty());
  EXPECT_EQ(Route(**r, Alert("warning", "web"), saturday).receivers,
            (std::set<std::string>{"slack"}));
}

TEST(RouterTest, NoChildMatchesTheParentDeliversAndReceiversInherit) {
  auto r = FromYaml(R"(
route:
  receiver: default
  routes:
    - matchers: ['team="db"']
      routes: [{receiver: sms, matchers: ['severity="critical"']}]
)");
  ASSERT_TRUE(r.ok()) << r.status();
  const absl::Time t = absl::Now();
  EXPECT_EQ(Route(**r, Alert("warning", "web"), t).receivers, (std::set<std::string>{"default"}));
  // team=db matches the child, which inherits "default" when its own child does not match.
  EXPECT_EQ(Route(**r, Alert("warning", "db"), t).receivers, (std::set<std::string>{"default"}));
  EXPECT_EQ(Route(**r, Alert("critical", "db"), t).receivers, (std::set<std::string>{"sms"}));
}

TEST(RouterTest, TimeZonesAreHonoured) {
  v1::TimeInterval c;
  c.set_location("America/New_York");
  auto* range = c.add_times();
  range->set_start_time("09:00");
  range->set_end_time("17:00");
  c.add_weekdays("monday:friday");
  auto t = TimeInterval::FromConfig("ti", c);
  ASSERT_TRUE(t.ok()) << t.status();
  // 15:00 UTC on a Monday is 10:00 in New York; 23:00 UTC is 18:00.
  EXPECT_TRUE(
      t->Contains(absl::FromCivil(absl::CivilMinute(2026, 11, 30, 15, 0), absl::UTCTimeZone())));
  EXPECT_FALSE(
      t->Contains(absl::FromCivil(absl::CivilMinute(2026, 11, 30, 23, 0), absl::UTCTimeZone())));
  EXPECT_FALSE(
      t->Contains(absl::FromCivil(absl::CivilMinute(2026, 12, 5, 15, 0), absl::UTCTimeZone())));
}

TEST(RouterTest, WithoutARouteEveryoneGetsEverything) {
  auto r = FromYaml("");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Route(**r, Alert("x"), absl::Now()).receivers.size(), 4u);
}

TEST(RouterTest, MatchersParseAndMatch) {
  auto eq = Matcher::Parse("m", R"(team="a\"b")");
  ASSERT_TRUE(eq.ok());
  v1::Notification n;
  (*n.mutable_labels())["team"] = "a\"b";
  EXPECT_TRUE(eq->Matches(n));
  auto re = Matcher::Parse("m", R"(team!~"a.*")");
  ASSERT_TRUE(re.ok());
  EXPECT_FALSE(re->Matches(n));
  // A missing label is the empty string, as in Alertmanager.
  auto empty = Matcher::Parse("m", R"(zone="")");
  EXPECT_TRUE(empty->Matches(n));
  EXPECT_THAT(std::string(Matcher::Parse("m", "team=a").status().message()),
              HasSubstr("m: \"team=a\" is not a matcher"));
  EXPECT_THAT(std::string(Matcher::Parse("m", R"(team=~"(")").status().message()),
              HasSubstr("m: regex \"(\""));
}

TEST(RouterTest, ConfigErrorsNameTheField) {
  struct Case {
    const char* yaml;
    const char* error;
  } cases[] = {
      {"route: {receiver: nobody}", "route.receiver: \"nobody\" is not a configured receiver"},
      {"route: {}", "route.receiver: required at the root"},
      {"route: {receiver: email, routes: [{matchers: ['x']}]}",
       "route.routes[0].matchers[0]: \"x\" is not a matcher"},
      {"route: {receiver: email, routes: [{active_time_intervals: [nope]}]}",
       "route.routes[0].active_time_intervals[0]: \"nope\" is not in time_intervals"},
      {"time_intervals: [{name: a, location: Mars/Olympus}]",
       "time_intervals[0].location: \"Mars/Olympus\" is not a known time zone"},
      {"time_intervals: [{name: a, times: [{start_time: '25:00', end_time: '01:00'}]}]",
       "time_intervals[0].times[0].start_time: \"25:00\""},
      {"time_intervals: [{name: a, weekdays: [funday]}]",
       "time_intervals[0].weekdays[0]: \"funday\" is not a weekday"},
      {"time_intervals: [{name: a}, {name: a}]", "time_intervals[1].name: \"a\" is used"},
      {"route: {receiver: email, group_by: [a, a]}", "route.group_by[1]: \"a\" is listed twice"},
      {"route: {receiver: email, group_by: [a, '...']}",
       "route.group_by[1]: \"...\" must be alone"},
      {"route: {receiver: email, group_by: ['a-b']}", "route.group_by[0]: \"a-b\" is not a label"},
      {"route: {receiver: email, group_wait: 2d}", "route.group_wait: \"2d\" must be between 0s"},
      {"route: {receiver: email, routes: [{repeat_interval: banana}]}",
       "route.routes[0].repeat_interval"},
  };
  for (const Case& c : cases) {
    auto r = FromYaml(c.yaml);
    EXPECT_FALSE(r.ok()) << c.yaml;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.error)) << c.yaml;
  }
}

TEST(RouterTest, GroupingIsInheritedAndDefaultsFollowAlertmanagerOnceGroupByIsSet) {
  auto r = FromYaml(R"(
route:
  receiver: default
  repeat_interval: 1h
  routes:
    - matchers: ['team="db"']
      group_by: [alertname, cluster]
      routes:
        - receiver: sms
          matchers: ['severity="critical"']
          group_wait: 10s
    - receiver: slack
      matchers: ['team="web"']
)");
  ASSERT_TRUE(r.ok()) << r.status();
  auto policy = [&](const v1::NotifyRequest& a) {
    auto routes = (*r)->Route(a);
    EXPECT_EQ(routes.size(), 1u);
    return *routes[0];
  };
  const RoutePolicy web = policy(Alert("warning", "web"));
  EXPECT_TRUE(web.grouping.each_alert) << "no group_by on the way: one group per alert";
  EXPECT_EQ(web.grouping.wait, absl::ZeroDuration());
  EXPECT_EQ(web.grouping.repeat, absl::Hours(1)) << "inherited from the root";
  const RoutePolicy db = policy(Alert("warning", "db"));
  EXPECT_FALSE(db.grouping.each_alert);
  EXPECT_THAT(db.grouping.by, ElementsAre("alertname", "cluster"));
  EXPECT_EQ(db.grouping.wait, absl::Seconds(30));
  EXPECT_EQ(db.grouping.interval, absl::Minutes(5));
  const RoutePolicy sms = policy(Alert("critical", "db"));
  EXPECT_EQ(sms.receiver, "sms");
  EXPECT_THAT(sms.grouping.by, ElementsAre("alertname", "cluster"));
  EXPECT_EQ(sms.grouping.wait, absl::Seconds(10));
  EXPECT_EQ(sms.grouping.repeat, absl::Hours(1));
  EXPECT_NE(sms.id, db.id);
}

TEST(RateLimiterTest, SlidingWindow) {
  RateLimiter l(2, absl::Minutes(1));
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  EXPECT_TRUE(l.Allow(t0));
  EXPECT_TRUE(l.Allow(t0 + absl::Seconds(10)));
  EXPECT_FALSE(l.Allow(t0 + absl::Seconds(20)));
  EXPECT_TRUE(l.Allow(t0 + absl::Seconds(61)));  // the first left the window
  EXPECT_FALSE(l.Allow(t0 + absl::Seconds(62)));
}

}  // namespace
}  // namespace vigie::notifier
