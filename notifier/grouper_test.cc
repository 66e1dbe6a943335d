// Grouping, group_wait, group_interval, repeat_interval and mute timing, with the clock in the
// test's hands: every call gets its time.
#include "notifier/grouper.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigie::notifier {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::testing::StartsWith;

const absl::Time kT0 = absl::FromUnixSeconds(1796083200);  // 2026-12-01 00:00 UTC, a Tuesday

Grouper::Token Alert(const std::string& key, const std::string& name, const std::string& instance,
                     bool resolved = false) {
  auto n = std::make_shared<AcceptedNotification>();
  n->request.set_idempotency_key(key);
  v1::Notification* a = n->request.mutable_notification();
  a->set_status(resolved ? v1::Notification::STATUS_RESOLVED : v1::Notification::STATUS_FIRING);
  a->set_fingerprint(name + "/" + instance);
  (*a->mutable_labels())["alertname"] = name;
  (*a->mutable_labels())["instance"] = instance;
  return n;
}

RoutePolicy ByAlertname() {
  RoutePolicy p;
  p.id = 3;
  p.receiver = "ops";
  p.grouping.each_alert = false;
  p.grouping.by = {"alertname"};
  p.grouping.wait = absl::Seconds(30);
  p.grouping.interval = absl::Minutes(5);
  p.grouping.repeat = absl::Hours(4);
  return p;
}

std::vector<std::string> Instances(const Batch& b) {
  std::vector<std::string> out;
  for (const v1::NotifyRequest& r : b.alerts) {
    out.push_back(
        r.notification().labels().at("instance") +
        (r.notification().status() == v1::Notification::STATUS_RESOLVED ? " resolved" : ""));
  }
  return out;
}

std::vector<std::string> Keys(const std::vector<Grouper::Token>& tokens) {
  std::vector<std::string> out;
  for (const auto& t : tokens) out.push_back(t->request.idempotency_key());
  return out;
}

TEST(GrouperTest, GroupWaitGathersAlertsIntoOneMessage) {
  const RoutePolicy p = ByAlertname();
  Grouper g(100);
  EXPECT_THAT(g.Add(p, Alert("k1", "DiskFull", "a"), kT0), IsEmpty());
  g.Add(p, Alert("k2", "DiskFull", "b"), kT0 + absl::Seconds(10));
  g.Add(p, Alert("k3", "HighLoad", "a"), kT0 + absl::Seconds(20));
  EXPECT_EQ(g.NextDue(), kT0 + absl::Seconds(30));
  EXPECT_THAT(g.Due(kT0 + absl::Seconds(29)), IsEmpty()) << "group_wait not over";
  auto flushes = g.Due(kT0 + absl::Seconds(30));
  ASSERT_THAT(flushes, SizeIs(1)) << "HighLoad's group waits until its own group_wait ends";
  const Grouper::Flush& f = flushes[0];
  ASSERT_TRUE(f.batch);
  EXPECT_THAT(Instances(*f.batch), ElementsAre("a", "b"));
  EXPECT_THAT(Keys(f.members), ElementsAre("k1", "k2"));
  EXPECT_EQ(f.batch->group_key, "route3:{alertname=\"DiskFull\"}");
  EXPECT_EQ(f.batch->group_labels.at("alertname"), "DiskFull");
  EXPECT_EQ(f.batch->receiver, "ops");
  EXPECT_THAT(f.batch->key, StartsWith("group-"));
  EXPECT_FALSE(f.batch->repeat);
  EXPECT_EQ(g.pending(), 1u);
  auto high = g.Due(kT0 + absl::Seconds(50));
  ASSERT_THAT(high, SizeIs(1));
  EXPECT_THAT(Instances(*high[0].batch), ElementsAre("a"));
  EXPECT_EQ(high[0].batch->group_key, "route3:{alertname=\"HighLoad\"}");
}

TEST(GrouperTest, ChangesWaitForGroupIntervalAndOneMessageIsInFlightAtATime) {
  const RoutePolicy p = ByAlertname();
  Grouper g(100);
  g.Add(p, Alert("k1", "DiskFull", "a"), kT0);
  auto first = g.Due(kT0 + absl::Seconds(30));
  ASSERT_THAT(first, SizeIs(1));
  // b joins while the first message is still being delivered.
  g.Add(p, Alert("k2", "DiskFull", "b"), kT0 + absl::Seconds(40));
  EXPECT_THAT(g.Due(kT0 + absl::Hours(1)), IsEmpty()) << "the first message is not done";
  g.Done(first[0].group, kT0 + absl::Seconds(45));
  // group_interval counts from the first message (sent at 0:30).
  EXPECT_EQ(g.NextDue(), kT0 + absl::Seconds(30) + absl::Minutes(5));
  EXPECT_THAT(g.Due(kT0 + absl::Minutes(5)), IsEmpty());
  auto second = g.Due(kT0 + absl::Seconds(330));
  ASSERT_THAT(second, SizeIs(1));
  // Every firing alert of the group, the new one included; only the change is a member.
  EXPECT_THAT(Instances(*second[0].batch), ElementsAre("a", "b"));
  EXPECT_THAT(Keys(second[0].members), ElementsAre("k2"));
  g.Done(second[0].group, kT0 + absl::Seconds(331));
  // a resolves: sent at the next tick, firing alerts first, then it leaves the group.
  g.Add(p, Alert("k1r", "DiskFull", "a", true), kT0 + absl::Minutes(6));
  auto third = g.Due(kT0 + absl::Seconds(630));
  ASSERT_THAT(third, SizeIs(1));
  EXPECT_THAT(Instances(*third[0].batch), ElementsAre("b", "a resolved"));
  EXPECT_TRUE(third[0].batch->Firing());
  g.Done(third[0].group, kT0 + absl::Seconds(631));
  EXPECT_EQ(g.alerts(), 1u);
  // b resolves: the last message; the group is then forgotten.
  g.Add(p, Alert("k2r", "DiskFull", "b", true), kT0 + absl::Minutes(11));
  auto last = g.Due(kT0 + absl::Seconds(930));
  ASSERT_THAT(last, SizeIs(1));
  EXPECT_THAT(Instances(*last[0].batch), ElementsAre("b resolved"));
  EXPECT_FALSE(last[0].batch->Firing());
  g.Done(last[0].group, kT0 + absl::Seconds(931));
  EXPECT_EQ(g.groups(), 0u);
  EXPECT_EQ(g.NextDue(), absl::InfiniteFuture());
}

TEST(GrouperTest, AGroupStillFiringIsRepeatedAfterRepeatInterval) {
  const RoutePolicy p = ByAlertname();
  Grouper g(100);
  g.Add(p, Alert("k1", "DiskFull", "a"), kT0);
  auto first = g.Due(kT0 + absl::Seconds(30));
  ASSERT_THAT(first, SizeIs(1));
  g.Done(first[0].group, kT0 + absl::Seconds(31));
  EXPECT_EQ(g.NextDue(), kT0 + absl::Seconds(30) + absl::Hours(4));
  EXPECT_THAT(g.Due(kT0 + absl::Hours(4)), IsEmpty());
  auto repeat = g.Due(kT0 + absl::Seconds(30) + absl::Hours(4));
  ASSERT_THAT(repeat, SizeIs(1));
  EXPECT_TRUE(repeat[0].batch->repeat);
  EXPECT_THAT(repeat[0].members, IsEmpty());
  EXPECT_THAT(repeat[0].batch->key, StartsWith("repeat-"));
  EXPECT_THAT(Instances(*repeat[0].batch), ElementsAre("a"));
  g.Done(repeat[0].group, kT0 + absl::Hours(5));
  EXPECT_EQ(g.NextDue(), kT0 + absl::Seconds(30) + absl::Hours(8));
}

TEST(GrouperTest, AcknowledgedOrSilencedAlertsAreNotRepeatedUntilThatEnds) {
  const RoutePolicy p = ByAlertname();
  Grouper g(100);
  g.Add(p, Alert("k1", "DiskFull", "a"), kT0);
  auto first = g.Due(kT0 + absl::Seconds(30));
  ASSERT_THAT(first, SizeIs(1));
  g.Done(first[0].group, kT0 + absl::Seconds(31));
  // Acknowledged: one message says so, then no repeat.
  Grouper::Token ack = Alert("k1/ack", "DiskFull", "a");
  ack->request.mutable_notification()->set_acknowledged_by("alice");
  g.Add(p, ack, kT0 + absl::Minutes(10));
  auto acked = g.Due(kT0 + absl::Minutes(10));
  ASSERT_THAT(acked, SizeIs(1));
  ASSERT_TRUE(acked[0].batch);
  EXPECT_EQ(acked[0].batch->alerts[0].notification().acknowledged_by(), "alice");
  g.Done(acked[0].group, kT0 + absl::Minutes(10));
  EXPECT_EQ(g.NextDue(), absl::InfiniteFuture()) << "nothing to repeat";
  EXPECT_THAT(g.Due(kT0 + absl::Hours(9)), IsEmpty());
  // Another alert of the group fires: the group repeats for it alone, listing both.
  g.Add(p, Alert("k2", "DiskFull", "b"), kT0 + absl::Hours(9));
  auto second = g.Due(kT0 + absl::Hours(9));
  ASSERT_THAT(second, SizeIs(1));
  g.Done(second[0].group, kT0 + absl::Hours(9));
  EXPECT_EQ(g.NextDue(), kT0 + absl::Hours(13));
  // Silenced too: no repeat; the silence ends (a firing without it): repeats resume.
  Grouper::Token silenced = Alert("k2/s", "DiskFull", "b");
  silenced->request.mutable_notification()->set_silenced_by("silence 0123");
  g.Add(p, silenced, kT0 + absl::Hours(10));
  auto s = g.Due(kT0 + absl::Hours(10));
  ASSERT_THAT(s, SizeIs(1));
  g.Done(s[0].group, kT0 + absl::Hours(10));
  EXPECT_EQ(g.NextDue(), absl::InfiniteFuture());
  g.Add(p, Alert("k2/u", "DiskFull", "b"), kT0 + absl::Hours(11));
  auto u = g.Due(kT0 + absl::Hours(11));
  ASSERT_THAT(u, SizeIs(1));
  g.Done(u[0].group, kT0 + absl::Hours(11));
  EXPECT_EQ(g.NextDue(), kT0 + absl::Hours(15));
}

TEST(GrouperTest, AnAlertThatResolvesBeforeItsFiringIsSentIsNeverSent) {
  const RoutePolicy p = ByAlertname();
  Grouper g(100);
  g.Add(p, Alert("k1", "DiskFull", "a"), kT0);
  auto superseded = g.Add(p, Alert("k1r", "DiskFull", "a", true), kT0 + absl::Seconds(5));
  EXPECT_THAT(Keys(superseded), ElementsAre("k1"));
  auto flushes = g.Due(kT0 + absl::Seconds(30));
  ASSERT_THAT(flushes, SizeIs(1));
  EXPECT_FALSE(flushes[0].batch);
  EXPECT_THAT(Keys(flushes[0].dropped), ElementsAre("k1r"));
  EXPECT_EQ(g.groups(), 0u);
  EXPECT_EQ(g.pending(), 0u);
}

TEST(GrouperTest, AResolveForAnAlertItDoesNotKnowIsSent) {
  // After a notifier restart the group has no memory of the firing: the resolve must go out.
  RoutePolicy p;  // defaults: each alert its own group, no wait
  p.receiver = "ops";
  Grouper g(100);
  g.Add(p, Alert("k1r", "DiskFull", "a", true), kT0);
  auto flushes = g.Due(kT0);
  ASSERT_THAT(flushes, SizeIs(1));
  ASSERT_TRUE(flushes[0].batch);
  EXPECT_EQ(flushes[0].batch->key, "k1r") << "one alert, no grouping: the alert's own key";
  EXPECT_THAT(Instances(*flushes[0].batch), ElementsAre("a resolved"));
}

TEST(GrouperTest, WithoutGroupByEachAlertGoesAtOnceOnItsOwn) {
  RoutePolicy p;
  p.receiver = "ops";
  Grouper g(100);
  g.Add(p, Alert("k1", "DiskFull", "a"), kT0);
  g.Add(p, Alert("k2", "DiskFull", "b"), kT0);
  auto flushes = g.Due(kT0);
  ASSERT_THAT(flushes, SizeIs(2));
  EXPECT_EQ(flushes[0].batch->key == "k1" ? flushes[1].batch->key : flushes[0].batch->key, "k2");
  for (const auto& f : flushes) g.Done(f.group, kT0 + absl::Seconds(1));
  // The resolve follows at once (group_interval 0).
  g.Add(p, Alert("k1r", "DiskFull", "a", true), kT0 + absl::Seconds(2));
  auto resolved = g.Due(kT0 + absl::Seconds(2));
  ASSERT_THAT(resolved, SizeIs(1));
  EXPECT_EQ(resolved[0].batch->key, "k1r");
}

TEST(GrouperTest, MutedGroupsWaitForTheEndOfTheMuteAndDropWhatFixedItself) {
  v1::TimeInterval night_config;
  auto* range = night_config.add_times();
  range->set_start_time("22:00");
  range->set_end_time("07:00");
  auto night = TimeInterval::FromConfig("night", night_config);
  ASSERT_TRUE(night.ok()) << night.status();
  RoutePolicy p;
  p.receiver = "sms";
  p.mute = {&*night};
  Grouper g(100);
  const absl::Time evening = kT0 + absl::Hours(23);  // 23:00 UTC
  g.Add(p, Alert("disk", "DiskFull", "a"), evening);
  g.Add(p, Alert("load", "HighLoad", "a"), evening);
  auto muted = g.Due(evening);
  ASSERT_THAT(muted, SizeIs(2));
  for (const auto& f : muted) {
    EXPECT_TRUE(f.muted);
    EXPECT_FALSE(f.batch);
  }
  // HighLoad fixes itself during the night: nobody is woken, nothing is sent in the morning.
  g.Add(p, Alert("load-r", "HighLoad", "a", true), evening + absl::Hours(2));
  std::vector<std::string> sent, dropped;
  for (absl::Time t = evening + absl::Minutes(1); t <= evening + absl::Hours(9);
       t += absl::Minutes(1)) {
    for (const auto& f : g.Due(t)) {
      for (const auto& d : f.dropped) dropped.push_back(d->request.idempotency_key());
      if (!f.batch) continue;
      EXPECT_GE(t, kT0 + absl::Hours(31)) << "sent during the night";
      sent.push_back(f.batch->key);
      g.Done(f.group, t);
    }
  }
  EXPECT_THAT(sent, ElementsAre("disk")) << "still firing at 07:00: sent then";
  EXPECT_THAT(dropped, ElementsAre("load-r"));
}

TEST(GrouperTest, RememberedAlertsAreBounded) {
  RoutePolicy p;
  p.receiver = "ops";
  Grouper g(10);
  for (int i = 0; i < 100; ++i) {
    g.Add(p, Alert("k" + std::to_string(i), "A", std::to_string(i)), kT0);
    for (const auto& f : g.Due(kT0)) g.Done(f.group, kT0);
  }
  EXPECT_LE(g.alerts(), 11u);
  EXPECT_EQ(g.forgotten(), 90u);
  EXPECT_LE(g.groups(), 11u);
}

TEST(GrouperTest, GroupByEveryLabelAndMissingLabels) {
  RoutePolicy p = ByAlertname();
  p.grouping.by = {"alertname", "cluster"};
  v1::Notification n;
  (*n.mutable_labels())["alertname"] = "Down";
  auto [key, labels] = GroupOf(p, n);
  EXPECT_EQ(key, "route3:{alertname=\"Down\",cluster=\"\"}");
  p.grouping.by.clear();
  p.grouping.by_all = true;
  (*n.mutable_labels())["zone"] = "a\"b";
  std::tie(key, labels) = GroupOf(p, n);
  EXPECT_EQ(key, "route3:{alertname=\"Down\",zone=\"a\\\"b\"}");
}

}  // namespace
}  // namespace vigie::notifier
