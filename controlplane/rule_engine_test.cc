#include "controlplane/rule_engine.h"

#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigie::controlplane {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::vigie::testing::StatusIs;

Rule DiskRule(const std::string& for_duration) {
  v1::Rule p;
  p.set_name("disk_low");
  p.set_metric("node_filesystem_avail_bytes");
  (*p.mutable_matchers())["mountpoint"] = "/";
  p.set_op("<");
  p.set_threshold(100);
  p.set_for_(for_duration);
  p.set_severity("critical");
  (*p.mutable_annotations())["summary"] = "disk almost full";
  auto r = RuleFromProto(p, "rules[0]");
  EXPECT_TRUE(r.ok()) << r.status();
  return *r;
}

v1::MetricBatch Batch(double value, int64_t ts_ms, const std::string& mount = "/") {
  v1::MetricBatch b;
  v1::Sample* s = b.add_samples();
  s->set_name("node_filesystem_avail_bytes");
  (*s->mutable_labels())["mountpoint"] = mount;
  s->set_value(value);
  s->set_timestamp_ms(ts_ms);
  return b;
}

// Evaluates and applies, as the gateway does after a commit.
std::vector<Transition> Feed(RuleEngine& e, double value, int64_t ts_ms) {
  auto ev = e.Evaluate("web1", Batch(value, ts_ms));
  e.Apply(ev);
  return ev.transitions;
}

TEST(RuleEngineTest, FiresOnlyAfterForDurationThenResolves) {
  RuleEngine e({DiskRule("30s")});
  EXPECT_THAT(Feed(e, 50, 1'000), IsEmpty()) << "pending, not firing yet";
  EXPECT_THAT(Feed(e, 50, 20'000), IsEmpty());
  auto fired = Feed(e, 40, 31'000);
  ASSERT_THAT(fired, SizeIs(1));
  EXPECT_EQ(fired[0].kind, Transition::kFiring);
  EXPECT_EQ(fired[0].starts_at_ms, 1'000);
  EXPECT_EQ(fired[0].labels.at("agent"), "web1");
  EXPECT_EQ(fired[0].labels.at("alertname"), "disk_low");
  EXPECT_EQ(fired[0].severity, "critical");
  EXPECT_EQ(fired[0].annotations.at("summary"), "disk almost full");
  EXPECT_THAT(Feed(e, 30, 40'000), IsEmpty()) << "already firing: no second notification";
  auto resolved = Feed(e, 500, 50'000);
  ASSERT_THAT(resolved, SizeIs(1));
  EXPECT_EQ(resolved[0].kind, Transition::kResolved);
  EXPECT_EQ(resolved[0].starts_at_ms, 1'000);
  EXPECT_EQ(resolved[0].ends_at_ms, 50'000);
  EXPECT_EQ(resolved[0].fingerprint, fired[0].fingerprint);
  EXPECT_NE(resolved[0].IdempotencyKey(), fired[0].IdempotencyKey());
  EXPECT_THAT(Feed(e, 500, 60'000), IsEmpty());
}

// A series fed sample by sample, and the transitions expected: 'F' firing, 'R' resolved.
TEST(RuleEngineTest, HysteresisTable) {
  struct Case {
    const char* name;
    const char* op;
    double threshold;
    std::optional<double> clear_threshold;
    const char* clear_for;
    std::vector<std::pair<int64_t, double>> samples;  // (seconds, value)
    std::string expected;                             // one character per sample: '.', 'F', 'R'
  } cases[] = {
      {"without hysteresis a value around the threshold flaps",
       ">",
       90,
       std::nullopt,
       "",
       {{0, 91}, {10, 89}, {20, 91}, {30, 89}},
       "FRFR"},
      {"a clear threshold holds it firing until the value is well back",
       ">",
       90,
       80,
       "",
       {{0, 91}, {10, 89}, {20, 91}, {30, 85}, {40, 80}},
       "F...R"},
      {"clear_for: the value must stay back that long",
       ">",
       90,
       80,
       "30s",
       {{0, 95}, {10, 70}, {20, 70}, {30, 85}, {40, 70}, {60, 70}, {70, 70}},
       "F.....R"},
      {"below-thresholds mirror it",
       "<",
       10,
       20,
       "",
       {{0, 5}, {10, 15}, {20, 25}, {30, 5}},
       "F.RF"},
      {"at the clear threshold exactly, >= keeps holding",
       ">=",
       90,
       80,
       "",
       {{0, 90}, {10, 80}, {20, 79.9}},
       "F.R"},
  };
  for (const Case& c : cases) {
    v1::Rule p;
    p.set_name("r");
    p.set_metric("m");
    p.set_op(c.op);
    p.set_threshold(c.threshold);
    if (c.clear_threshold) p.set_clear_threshold(*c.clear_threshold);
    p.set_clear_for(c.clear_for);
    auto rule = RuleFromProto(p, "rules[0]");
    ASSERT_TRUE(rule.ok()) << c.name << ": " << rule.status();
    RuleEngine e({*rule});
    std::string got;
    for (const auto& [sec, value] : c.samples) {
      v1::MetricBatch b;
      v1::Sample* s = b.add_samples();
      s->set_name("m");
      s->set_value(value);
      s->set_timestamp_ms(sec * 1000);
      auto ev = e.Evaluate("web1", b);
      e.Apply(ev);
      got += ev.transitions.empty()                          ? '.'
             : ev.transitions[0].kind == Transition::kFiring ? 'F'
                                                             : 'R';
    }
    EXPECT_EQ(got, c.expected) << c.name;
  }
}

TEST(RuleEngineTest, ClearThresholdMustBeOnTheGoodSide) {
  v1::Rule p;
  p.set_name("r");
  p.set_metric("m");
  p.set_op(">");
  p.set_threshold(90);
  p.set_clear_threshold(95);
  EXPECT_THAT(RuleFromProto(p, "rules[1]"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("rules[1].clear_threshold: 95 must be on the good side of "
                                 "threshold 90 (at or below it)")));
  p.set_op("==");
  EXPECT_THAT(RuleFromProto(p, "rules[1]"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("rules[1].clear_threshold: only for >, >=, <, <=")));
  p.set_op(">");
  p.set_clear_threshold(std::nan(""));
  EXPECT_FALSE(RuleFromProto(p, "rules[1]").ok());
  p.set_clear_threshold(80);
  p.set_clear_for("later");
  EXPECT_THAT(RuleFromProto(p, "rules[1]"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rules[1].clear_for")));
}

TEST(RuleEngineTest, RecoveryDuringPendingResetsTheClock) {
  RuleEngine e({DiskRule("30s")});
  Feed(e, 50, 0);
  EXPECT_THAT(Feed(e, 500, 20'000), IsEmpty()) << "pending -> inactive is silent";
  EXPECT_THAT(Feed(e, 50, 25'000), IsEmpty());
  EXPECT_THAT(Feed(e, 50, 50'000), IsEmpty()) << "only 25s since it went pending again";
  EXPECT_THAT(Feed(e, 50, 55'000), SizeIs(1));
}

TEST(RuleEngineTest, ZeroForFiresOnFirstSample) {
  RuleEngine e({DiskRule("")});
  EXPECT_THAT(Feed(e, 50, 0), SizeIs(1));
}

TEST(RuleEngineTest, EvaluateDoesNotChangeStateUntilApplied) {
  RuleEngine e({DiskRule("")});
  auto first = e.Evaluate("web1", Batch(50, 0));
  ASSERT_THAT(first.transitions, SizeIs(1));
  // Commit failed, nothing applied: the resend evaluates the same and fires again (same key).
  auto again = e.Evaluate("web1", Batch(50, 0));
  ASSERT_THAT(again.transitions, SizeIs(1));
  EXPECT_EQ(again.transitions[0].IdempotencyKey(), first.transitions[0].IdempotencyKey());
}

TEST(RuleEngineTest, MatchersSelectSeriesAndEachSeriesHasItsOwnAlert) {
  RuleEngine e({DiskRule("")});
  EXPECT_THAT(e.Evaluate("web1", Batch(1, 0, "/home")).transitions, IsEmpty());
  auto a = e.Evaluate("web1", Batch(1, 0));
  auto b = e.Evaluate("web2", Batch(1, 0));
  ASSERT_THAT(a.transitions, SizeIs(1));
  ASSERT_THAT(b.transitions, SizeIs(1));
  EXPECT_NE(a.transitions[0].fingerprint, b.transitions[0].fingerprint);
}

TEST(RuleEngineTest, RestoredFiringAlertResolvesWithoutFiringAgain) {
  RuleEngine e({DiskRule("")});
  auto fired = e.Evaluate("web1", Batch(1, 0)).transitions;
  ASSERT_THAT(fired, SizeIs(1));
  RuleEngine restarted({DiskRule("")});
  restarted.Restore({{"disk_low", fired[0].fingerprint, fired[0].labels, 1, 0}});
  EXPECT_THAT(Feed(restarted, 1, 5'000), IsEmpty());
  auto resolved = Feed(restarted, 1000, 6'000);
  ASSERT_THAT(resolved, SizeIs(1));
  EXPECT_EQ(resolved[0].kind, Transition::kResolved);
}

TEST(RuleEngineTest, PendingChangesAreReportedAndARestartResumesTheForClock) {
  RuleEngine e({DiskRule("30s")});
  auto ev = e.Evaluate("web1", Batch(50, 1'000));
  ASSERT_THAT(ev.pending, SizeIs(1));
  EXPECT_EQ(ev.pending[0].since_ms, 1'000) << "started";
  EXPECT_EQ(ev.pending[0].rule, "disk_low");
  e.Apply(ev);
  ev = e.Evaluate("web1", Batch(45, 10'000));
  EXPECT_THAT(ev.pending, IsEmpty()) << "still pending since 1s: nothing to store";
  e.Apply(ev);
  // What the store kept of it.
  const std::map<std::string, std::string> labels = {
      {"agent", "web1"}, {"alertname", "disk_low"}, {"mountpoint", "/"}};
  const std::vector<PendingChange> stored = {{"disk_low", Fingerprint(labels), labels, 1'000, 45}};
  // A new process: the clock resumes from 1s, so the alert fires at 31s, not 30s later.
  RuleEngine restarted({DiskRule("30s")});
  restarted.RestorePending(stored);
  restarted.RestorePending({{"gone_rule", "x", {}, 5'000, 1}});
  EXPECT_EQ(restarted.active(), 1u) << "a rule that no longer exists is skipped";
  EXPECT_EQ(restarted.PendingBySeverity().at("critical"), 1u);
  auto fired = restarted.Evaluate("web1", Batch(40, 31'000));
  ASSERT_THAT(fired.transitions, SizeIs(1));
  EXPECT_EQ(fired.transitions[0].starts_at_ms, 1'000);
  ASSERT_THAT(fired.pending, SizeIs(1));
  EXPECT_EQ(fired.pending[0].since_ms, 0) << "fired: no longer pending";
  // Cancelled: ended too.
  auto cancelled = e.Evaluate("web1", Batch(500, 12'000));
  ASSERT_THAT(cancelled.pending, SizeIs(1));
  EXPECT_EQ(cancelled.pending[0].since_ms, 0);
}

TEST(RuleEngineTest, AnnotationTemplatesAreFilledFromLabelsAndValue) {
  v1::Rule p;
  p.set_name("disk_low");
  p.set_metric("node_filesystem_avail_bytes");
  p.set_op("<");
  p.set_threshold(100);
  (*p.mutable_annotations())["summary"] =
      "{{labels.mountpoint}} on {{labels.agent}}: {{value}} bytes left ({{severity}})";
  (*p.mutable_annotations())["runbook"] = "https://wiki/disk";       // plain: as it is
  (*p.mutable_annotations())["html"] = "{{labels.mountpoint}} <b>";  // no HTML escaping
  auto r = RuleFromProto(p, "rules[0]");
  ASSERT_TRUE(r.ok()) << r.status();
  RuleEngine e({*r});
  auto fired = Feed(e, 42.5, 1'000);
  ASSERT_THAT(fired, SizeIs(1));
  EXPECT_EQ(fired[0].annotations.at("summary"), "/ on web1: 42.5 bytes left (warning)");
  EXPECT_EQ(fired[0].annotations.at("runbook"), "https://wiki/disk");
  EXPECT_EQ(fired[0].annotations.at("html"), "/ <b>");
  auto resolved = Feed(e, 500, 2'000);
  ASSERT_THAT(resolved, SizeIs(1));
  EXPECT_EQ(resolved[0].annotations.at("summary"), "/ on web1: 500 bytes left (warning)")
      << "the value at the resolve";
  (*p.mutable_annotations())["summary"] = "{{#labels}}unclosed";
  EXPECT_THAT(
      RuleFromProto(p, "rules[3]").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rules[3].annotations.summary: ")));
}

TEST(RuleEngineTest, FlapHoldIsValidatedAndCarriedOnTransitions) {
  v1::Rule p = DiskRule("").proto;
  p.set_flap_threshold(4);
  p.set_flap_window("30m");
  auto r = RuleFromProto(p, "rules[0]");
  ASSERT_TRUE(r.ok()) << r.status();
  RuleEngine e({*r});
  auto fired = Feed(e, 50, 1'000);
  ASSERT_THAT(fired, SizeIs(1));
  EXPECT_EQ(fired[0].flap_threshold, 4);
  EXPECT_EQ(fired[0].flap_window_ms, 30 * 60 * 1000);
  struct Case {
    uint32_t threshold;
    std::string window, error;
  } cases[] = {{1, "30m", "rules[0].flap_threshold: between 2 and 100"},
               {101, "30m", "got 101"},
               {0, "30m", "rules[0].flap_threshold"},
               {3, "", "rules[0].flap_window: between 1s and 24h"},
               {3, "2d", "got \"2d\""},
               {3, "soon", "rules[0].flap_window"}};
  for (const Case& c : cases) {
    p.set_flap_threshold(c.threshold);
    p.set_flap_window(c.window);
    EXPECT_THAT(RuleFromProto(p, "rules[0]").status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.error)))
        << c.threshold << " " << c.window;
  }
}

TEST(RuleEngineTest, ActiveAlertsAreBounded) {
  RuleEngine e({DiskRule("")}, /*max_active=*/2);
  for (const char* agent : {"a", "b", "c", "d"}) e.Apply(e.Evaluate(agent, Batch(1, 0)));
  EXPECT_EQ(e.Snapshot().size(), 2u);
  EXPECT_EQ(e.refused(), 2u);
  // Existing alerts still resolve, which makes room again.
  e.Apply(e.Evaluate("a", Batch(1000, 1)));
  EXPECT_EQ(e.Snapshot().size(), 1u);
  e.Apply(e.Evaluate("c", Batch(1, 2)));
  EXPECT_EQ(e.Snapshot().size(), 2u);
}

TEST(RuleEngineTest, ValidationNamesFieldAndValue) {
  v1::Rule p;
  p.set_name("r");
  p.set_metric("m");
  p.set_op("=>");
  EXPECT_THAT(RuleFromProto(p, "rules[3]"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("rules[3].op: must be one of >, >=, <, <=, ==, !=; got \"=>\"")));
  p.set_op(">");
  p.set_for_("ten minutes");
  EXPECT_THAT(RuleFromProto(p, "rules[3]"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rules[3].for")));
  p.set_for_("");
  p.set_metric("not a metric");
  EXPECT_THAT(RuleFromProto(p, "rules[3]"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rules[3].metric")));
  google::protobuf::RepeatedPtrField<v1::Rule> two;
  p.set_metric("m");
  *two.Add() = p;
  *two.Add() = p;
  EXPECT_THAT(RulesFromProto(two), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("rules[1].name: \"r\" is used")));
}

TEST(RuleEngineTest, AbsentRulesAreValidatedAndNeverMatchSamples) {
  v1::Rule p;
  p.set_name("AgentDown");
  p.set_absent_for("2m");
  auto r = RuleFromProto(p, "rules[0]");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->absent_for, absl::Minutes(2));
  p.set_metric("node_load1");
  EXPECT_THAT(RuleFromProto(p, "rules[0]"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("rules[0]: an absent_for rule takes no metric, op or for")));
  p.clear_metric();
  p.set_absent_for("100ms");
  EXPECT_THAT(RuleFromProto(p, "rules[0]"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("rules[0].absent_for: \"100ms\" must be between 1s and 30d")));
  p.set_absent_for("soon");
  EXPECT_THAT(RuleFromProto(p, "rules[0]"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rules[0].absent_for")));
  // An absent rule is left to the timer: no sample, whatever its name, starts it.
  p.set_absent_for("1s");
  RuleEngine e({*RuleFromProto(p, "r")});
  v1::MetricBatch b;
  v1::Sample* s = b.add_samples();
  s->set_name("");
  s->set_value(1);
  s->set_timestamp_ms(1000);
  EXPECT_TRUE(e.Evaluate("web1", b).transitions.empty());
}

TEST(RuleEngineTest, CheckRulesSelectChecksByGlobAndLabelAndCarryTheMessage) {
  v1::Rule p;
  p.set_name("WebDown");
  p.mutable_check()->add_names("web-*");
  p.mutable_check()->add_names("api");
  (*p.mutable_matchers())["team"] = "web";
  absl::StatusOr<Rule> critical = RuleFromProto(p, "rules[0]");
  ASSERT_TRUE(critical.ok()) << critical.status();
  EXPECT_EQ(critical->metric, kCheckStatusMetric);
  EXPECT_EQ(critical->annotations.at("summary"),
            "{{labels.check}} ({{labels.target}}) on {{labels.agent}} is not OK");
  p.set_name("WebWarn");
  p.mutable_check()->set_min_status("warning");
  absl::StatusOr<Rule> warning = RuleFromProto(p, "rules[1]");
  ASSERT_TRUE(warning.ok()) << warning.status();
  RuleEngine e({*critical, *warning});

  auto feed = [&](const std::string& check, const std::string& team, v1::CheckStatus status,
                  int64_t ts) {
    v1::MetricBatch b;
    v1::Sample* s = b.add_samples();
    s->set_name(kCheckStatusMetric);
    (*s->mutable_labels())["check"] = check;
    (*s->mutable_labels())["target"] = "https://" + check;
    (*s->mutable_labels())["team"] = team;
    s->set_value(status == v1::CHECK_STATUS_OK         ? 0
                 : status == v1::CHECK_STATUS_WARNING  ? 1
                 : status == v1::CHECK_STATUS_CRITICAL ? 2
                                                       : 3);
    s->set_timestamp_ms(ts);
    auto ev = e.Evaluate("web1", b);
    AttachCheckMessages(e.rules(), {{check, "HTTP 503 in 4 ms"}}, &ev.transitions);
    e.Apply(ev);
    return ev.transitions;
  };
  EXPECT_THAT(feed("db-main", "web", v1::CHECK_STATUS_CRITICAL, 1000), IsEmpty()) << "not selected";
  EXPECT_THAT(feed("web-front", "db", v1::CHECK_STATUS_CRITICAL, 1000), IsEmpty()) << "label";
  EXPECT_THAT(feed("apiv2", "web", v1::CHECK_STATUS_CRITICAL, 1000), IsEmpty()) << "exact name";
  auto warn = feed("web-front", "web", v1::CHECK_STATUS_WARNING, 1000);
  ASSERT_THAT(warn, SizeIs(1)) << "a warning fires the warning rule only";
  EXPECT_EQ(warn[0].rule, "WebWarn");
  auto down = feed("web-front", "web", v1::CHECK_STATUS_UNKNOWN, 2000);
  ASSERT_THAT(down, SizeIs(1));
  EXPECT_EQ(down[0].rule, "WebDown");
  EXPECT_EQ(down[0].annotations.at("message"), "HTTP 503 in 4 ms");
  EXPECT_EQ(down[0].annotations.at("summary"), "web-front (https://web-front) on web1 is not OK");
  EXPECT_THAT(feed("web-front", "web", v1::CHECK_STATUS_WARNING, 2500), IsEmpty())
      << "CRITICAL to WARNING is not OK yet: nothing resolves";
  auto up = feed("web-front", "web", v1::CHECK_STATUS_OK, 3000);
  ASSERT_THAT(up, SizeIs(2));
  EXPECT_EQ(up[0].kind, Transition::kResolved);
  EXPECT_EQ(up[1].kind, Transition::kResolved);
  EXPECT_THAT(ChecksLackingMessages(e.rules(), up), IsEmpty());
  up[0].annotations.erase("message");
  EXPECT_EQ(ChecksLackingMessages(e.rules(), up), std::vector<std::string>{"web-front"});

  v1::Rule bad;
  bad.set_name("x");
  bad.mutable_check()->set_min_status("unknown");
  EXPECT_THAT(RuleFromProto(bad, "rules[2]"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("rules[2].check.min_status: must be warning or critical; got "
                                 "\"unknown\"")));
  bad.mutable_check()->clear_min_status();
  bad.set_metric("up");
  EXPECT_THAT(RuleFromProto(bad, "rules[2]"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                       HasSubstr("a check rule takes no metric")));
  bad.clear_metric();
  bad.mutable_check()->add_names("");
  EXPECT_THAT(RuleFromProto(bad, "rules[2]"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("check.names[0]")));
}

TEST(RuleEngineTest, ServiceRulesFireOnExitsCrashLoopsAndHealthAndResolveWhenStable) {
  auto rule = [](const std::string& name, const std::string& on, uint32_t n) {
    v1::Rule p;
    p.set_name(name);
    p.mutable_service()->add_names("web*");
    p.mutable_service()->set_on(on);
    if (on == "crash_loop") p.mutable_service()->set_restarts(n);
    if (on == "health") p.mutable_service()->set_failures(n);
    absl::StatusOr<Rule> r = RuleFromProto(p, "rules[0]");
    EXPECT_TRUE(r.ok()) << r.status();
    return *r;
  };
  RuleEngine e({rule("Down", "", 0), rule("Loop", "crash_loop", 2), rule("Sick", "health", 2)});
  int64_t ts = 1000;
  // The series the gateway makes from one event.
  auto feed = [&](const std::string& service, const char* metric, double value) {
    v1::MetricBatch b;
    v1::Sample* s = b.add_samples();
    s->set_name(metric);
    (*s->mutable_labels())["service"] = service;
    s->set_value(value);
    s->set_timestamp_ms(ts += 100);
    auto ev = e.Evaluate("web1", b);
    e.Apply(ev);
    std::vector<std::string> out;
    for (const Transition& t : ev.transitions) {
      out.push_back(absl::StrCat(t.rule, t.kind == Transition::kFiring ? " firing" : " resolved"));
    }
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(feed("db", kServiceStableMetric, 0), V{}) << "not selected";
  EXPECT_EQ(feed("web", kServiceStableMetric, 0), V{"Down firing"});
  EXPECT_EQ(feed("web", kServiceRestartsInARowMetric, 1), V{});
  EXPECT_EQ(feed("web", kServiceStableMetric, 0), V{});
  EXPECT_EQ(feed("web", kServiceRestartsInARowMetric, 2), V{});
  EXPECT_EQ(feed("web", kServiceRestartsInARowMetric, 3), V{"Loop firing"});
  EXPECT_EQ(feed("web", kServiceRestartsInARowMetric, 4), V{}) << "still looping: one alert";
  EXPECT_EQ(feed("web", kServiceHealthFailuresMetric, 1), V{});
  EXPECT_EQ(feed("web", kServiceHealthFailuresMetric, 2), V{"Sick firing"});
  // The stable run (the gateway sends the first two), a health success (the third).
  std::vector<std::string> resolved = feed("web", kServiceStableMetric, 1);
  for (auto& x : feed("web", kServiceRestartsInARowMetric, 0)) resolved.push_back(x);
  for (auto& x : feed("web", kServiceHealthFailuresMetric, 0)) resolved.push_back(x);
  EXPECT_EQ(resolved, (V{"Down resolved", "Loop resolved", "Sick resolved"}));
  EXPECT_EQ(e.rules()[0].annotations.at("summary"),
            "{{labels.service}} exited on {{labels.agent}}");

  v1::Rule bad;
  bad.set_name("x");
  bad.mutable_service()->set_on("reboot");
  EXPECT_THAT(RuleFromProto(bad, "rules[3]"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("rules[3].service.on: must be exit, crash_loop or health; got "
                                 "\"reboot\"")));
  bad.mutable_service()->set_on("health");
  bad.mutable_service()->set_restarts(3);
  EXPECT_THAT(RuleFromProto(bad, "rules[3]"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("rules[3].service.restarts: only with on: crash_loop")));
  bad.mutable_service()->clear_restarts();
  bad.mutable_service()->set_within("10m");
  EXPECT_THAT(RuleFromProto(bad, "rules[3]"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("rules[3].service.within: only with on: crash_loop")));
  bad.mutable_service()->set_on("crash_loop");
  bad.mutable_service()->set_within("forever");
  EXPECT_THAT(RuleFromProto(bad, "rules[3]"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rules[3].service.within")));
  bad.mutable_service()->set_within("10m");
  EXPECT_TRUE(RuleFromProto(bad, "rules[3]").ok());
  bad.mutable_service()->clear_within();
  bad.mutable_service()->set_on("health");
  bad.set_metric("up");
  EXPECT_THAT(RuleFromProto(bad, "rules[3]"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("a service rule takes no check, metric")));
}

TEST(RuleEngineTest, FingerprintIsStableAndOrderIndependent) {
  EXPECT_EQ(Fingerprint({{"a", "1"}, {"b", "2"}}), Fingerprint({{"b", "2"}, {"a", "1"}}));
  EXPECT_NE(Fingerprint({{"a", "1b"}}), Fingerprint({{"a1", "b"}}));
  EXPECT_EQ(Fingerprint({}), "cbf29ce484222325");  // FNV-1a offset basis: no hidden seed
}

}  // namespace
}  // namespace vigie::controlplane
