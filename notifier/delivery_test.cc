#include "notifier/delivery.h"

#include <atomic>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/mutex.h"
#include "common/status_matchers.h"
#include "common/yaml_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigie::notifier {
namespace {

using ::testing::ElementsAre;
using ::vigie::testing::StatusIs;

// Records what it was asked to send; fails the first `failures` attempts.
class FakeChannel : public Channel {
 public:
  explicit FakeChannel(int failures) : failures_(failures) {}
  absl::Status Send(const Batch& b) override {
    MutexLock lock(&mu_);
    ++attempts_;
    if (failures_ > 0) {
      --failures_;
      return absl::UnavailableError("receiver down");
    }
    sent_.push_back(b.key);
    alerts_.push_back(b.alerts.size());
    return absl::OkStatus();
  }
  std::vector<std::string> sent() {
    MutexLock lock(&mu_);
    return sent_;
  }
  int attempts() {
    MutexLock lock(&mu_);
    return attempts_;
  }
  // How many alerts each message sent carried.
  std::vector<size_t> alerts() {
    MutexLock lock(&mu_);
    return alerts_;
  }

 private:
  Mutex mu_;
  int failures_;
  int attempts_ = 0;
  std::vector<size_t> alerts_;
  std::vector<std::string> sent_;
};

v1::NotifyRequest Request(const std::string& key, bool resolved = false) {
  v1::NotifyRequest r;
  r.set_idempotency_key(key);
  r.mutable_notification()->set_status(resolved ? v1::Notification::STATUS_RESOLVED
                                                : v1::Notification::STATUS_FIRING);
  r.mutable_notification()->set_fingerprint("fp");
  return r;
}

DeliveryOptions FastRetries() {
  DeliveryOptions o;
  o.backoff = {absl::Milliseconds(5), absl::Milliseconds(20), 2.0, 0.0};
  o.workers = 2;
  return o;
}

// One receiver backed by a FakeChannel failing `failures` times; `*fake` observes it.
std::vector<Receiver> OneReceiver(int failures, FakeChannel** fake) {
  auto channel = std::make_unique<FakeChannel>(failures);
  *fake = channel.get();
  std::vector<Receiver> receivers;
  receivers.push_back({"hook", "webhook", std::move(channel)});
  return receivers;
}

template <typename F>
void WaitUntil(F done) {
  for (int i = 0; i < 2000 && !done(); ++i) absl::SleepFor(absl::Milliseconds(5));
}

TEST(DeliveryTest, RetriesUntilTheReceiverAcceptsAndSendsOnce) {
  FakeChannel* fake;
  prometheus::Registry registry;
  Delivery d(FastRetries(), OneReceiver(3, &fake), &registry);
  d.Start();
  ASSERT_TRUE(d.Accept(Request("k1")).ok());
  WaitUntil([&] { return !fake->sent().empty() && d.queued() == 0; });
  d.Stop();
  EXPECT_THAT(fake->sent(), ElementsAre("k1"));
  EXPECT_EQ(fake->attempts(), 4);
}

TEST(DeliveryTest, DuplicateKeysAreAcknowledgedButNotSentAgain) {
  FakeChannel* fake;
  prometheus::Registry registry;
  Delivery d(FastRetries(), OneReceiver(0, &fake), &registry);
  d.Start();
  EXPECT_EQ(*d.Accept(Request("k1")), Delivery::Accepted::kQueued);
  EXPECT_EQ(*d.Accept(Request("k1")), Delivery::Accepted::kDuplicate);
  WaitUntil([&] { return d.queued() == 0; });
  EXPECT_EQ(*d.Accept(Request("k1")), Delivery::Accepted::kDuplicate) << "even after delivery";
  absl::SleepFor(absl::Milliseconds(50));
  d.Stop();
  EXPECT_THAT(fake->sent(), ElementsAre("k1"));
}

TEST(DeliveryTest, ResolvedNeverOvertakesAFiringThatIsRetrying) {
  FakeChannel* fake;
  prometheus::Registry registry;
  Delivery d(FastRetries(), OneReceiver(2, &fake), &registry);
  d.Start();
  ASSERT_TRUE(d.Accept(Request("firing")).ok());
  ASSERT_TRUE(d.Accept(Request("resolved", true)).ok());
  WaitUntil([&] { return fake->sent().size() == 2; });
  d.Stop();
  EXPECT_THAT(fake->sent(), ElementsAre("firing", "resolved"));
}

TEST(DeliveryTest, FullQueueIsResourceExhaustedAndTheKeyIsNotRemembered) {
  std::vector<Receiver> receivers;
  receivers.push_back({"hook", "webhook", std::make_unique<FakeChannel>(0)});
  prometheus::Registry registry;
  DeliveryOptions o = FastRetries();
  o.max_queue = 1;
  Delivery d(o, std::move(receivers), &registry);  // not started: nothing drains
  ASSERT_TRUE(d.Accept(Request("a")).ok());
  EXPECT_THAT(d.Accept(Request("b")), StatusIs(absl::StatusCode::kResourceExhausted));
  d.Start();
  WaitUntil([&] { return d.queued() == 0; });
  EXPECT_EQ(*d.Accept(Request("b")), Delivery::Accepted::kQueued);
  d.Stop();
}

TEST(DeliveryTest, MalformedRequestsNameTheField) {
  prometheus::Registry registry;
  Delivery d(FastRetries(), {}, &registry);
  EXPECT_THAT(d.Accept(Request("")), StatusIs(absl::StatusCode::kInvalidArgument,
                                              ::testing::HasSubstr("idempotency_key")));
  v1::NotifyRequest r = Request("k");
  r.mutable_notification()->set_status(v1::Notification::STATUS_UNSPECIFIED);
  EXPECT_THAT(d.Accept(r), StatusIs(absl::StatusCode::kInvalidArgument,
                                    ::testing::HasSubstr("notification.status")));
}

TEST(DeliveryTest, SpooledNotificationsSurviveARestartAndAreSentOnce) {
  char tmpl[] = "/tmp/vigie-spool-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  DeliveryOptions o = FastRetries();
  o.spool_directory = tmpl;
  prometheus::Registry registry;
  {
    std::vector<Receiver> receivers;
    receivers.push_back({"hook", "webhook", std::make_unique<FakeChannel>(0)});
    Delivery first(o, std::move(receivers), &registry);  // never started: "crashes" queued
    ASSERT_EQ(*first.Accept(Request("firing")), Delivery::Accepted::kQueued);
    ASSERT_EQ(*first.Accept(Request("resolved", true)), Delivery::Accepted::kQueued);
  }
  auto channel = std::make_unique<FakeChannel>(0);
  FakeChannel* fake = channel.get();
  std::vector<Receiver> receivers;
  receivers.push_back({"hook", "webhook", std::move(channel)});
  prometheus::Registry registry2;
  Delivery second(o, std::move(receivers), &registry2);
  ASSERT_EQ(*second.Recover(), 2);
  EXPECT_EQ(*second.Accept(Request("firing")), Delivery::Accepted::kDuplicate)
      << "recovered keys are remembered";
  second.Start();
  WaitUntil([&] { return fake->sent().size() == 2 && second.queued() == 0; });
  second.Stop();
  EXPECT_THAT(fake->sent(), ElementsAre("firing", "resolved"));
  Delivery third(o, {}, &registry2);
  EXPECT_EQ(*third.Recover(), 0) << "delivered notifications leave the spool";
  rmdir(tmpl);
}

TEST(DeliveryTest, GivesUpAfterTheLimitAndDoesNotRetryClientErrors) {
  class Refusing : public Channel {
   public:
    explicit Refusing(absl::StatusCode code) : code_(code) {}
    absl::Status Send(const Batch&) override {
      ++attempts;
      return absl::Status(code_, "refused");
    }
    std::atomic<int> attempts{0};

   private:
    absl::StatusCode code_;
  };
  auto down = std::make_unique<Refusing>(absl::StatusCode::kUnavailable);
  auto bad_request = std::make_unique<Refusing>(absl::StatusCode::kInvalidArgument);
  Refusing* down_ptr = down.get();
  Refusing* bad_ptr = bad_request.get();
  std::vector<Receiver> receivers;
  receivers.push_back({"down", "webhook", std::move(down)});
  receivers.push_back({"bad", "webhook", std::move(bad_request)});
  prometheus::Registry registry;
  DeliveryOptions o = FastRetries();
  o.give_up_after = absl::Milliseconds(100);
  Delivery d(o, std::move(receivers), &registry);
  d.Start();
  ASSERT_TRUE(d.Accept(Request("k")).ok());
  WaitUntil([&] { return d.queued() == 0; });
  d.Stop();
  EXPECT_EQ(d.queued(), 0u) << "both deliveries ended";
  EXPECT_GT(down_ptr->attempts.load(), 1) << "a down receiver is retried until the limit";
  EXPECT_EQ(bad_ptr->attempts.load(), 1) << "a 4xx-like refusal is not retried";
}

TEST(KeyMemoryTest, ForgetsTheOldestBeyondCapacity) {
  KeyMemory m(2);
  m.Insert("a");
  m.Insert("b");
  m.Insert("c");
  EXPECT_FALSE(m.Contains("a"));
  EXPECT_TRUE(m.Contains("b"));
  EXPECT_TRUE(m.Contains("c"));
  EXPECT_EQ(m.size(), 2u);
}

TEST(DeliveryTest, RoutesAndRateLimitsDecideWhichReceiversGetANotification) {
  v1::NotifierConfig c;
  ASSERT_TRUE(
      ParseYamlConfig("route: {receiver: email, routes: [{receiver: sms, "
                      "matchers: ['severity=\"critical\"'], continue: true}, {receiver: email}]}",
                      &c)
          .ok());
  auto router = Router::FromConfig(c, {"email", "sms"});
  ASSERT_TRUE(router.ok()) << router.status();
  auto email = std::make_unique<FakeChannel>(0);
  auto sms = std::make_unique<FakeChannel>(0);
  FakeChannel* email_fake = email.get();
  FakeChannel* sms_fake = sms.get();
  std::vector<Receiver> receivers;
  receivers.push_back({"email", "email", std::move(email)});
  receivers.push_back({"sms", "sms", std::move(sms)});
  DeliveryOptions o = FastRetries();
  o.rate_limits["sms"] = {2, absl::Hours(1)};
  prometheus::Registry registry;
  Delivery d(o, std::move(receivers), &registry, nullptr, router->get());
  d.Start();
  for (int i = 0; i < 4; ++i) {
    v1::NotifyRequest r = Request(absl::StrCat("crit", i));
    r.mutable_notification()->set_fingerprint(absl::StrCat("fp", i));
    r.mutable_notification()->set_severity("critical");
    ASSERT_TRUE(d.Accept(r).ok());
  }
  v1::NotifyRequest warn = Request("warn");
  warn.mutable_notification()->set_severity("warning");
  ASSERT_TRUE(d.Accept(warn).ok());
  WaitUntil([&] { return d.queued() == 0; });
  // Critical: SMS (two, then the rate limit) and, through continue, the email sibling;
  // warning: email.
  EXPECT_EQ(sms_fake->sent().size(), 2u);
  EXPECT_EQ(email_fake->sent().size(), 5u);
  d.Stop();
}

// Records the delivery log's events: "key target status".
class RecordingObserver : public DeliveryObserver {
 public:
  void Accepted(const v1::NotifyRequest&, const std::vector<std::string>&) override {}
  void Attempted(const std::string& key, const std::string& target, const std::string& status, int,
                 const std::string&) override {
    MutexLock lock(&mu_);
    events_.push_back(absl::StrCat(key, " ", target, " ", status));
  }
  std::vector<std::string> events() {
    MutexLock lock(&mu_);
    return events_;
  }

 private:
  Mutex mu_;
  std::vector<std::string> events_;
};

TEST(DeliveryTest, GroupedAlertsGoOutAsOneMessageAndLeaveTheSpool) {
  char tmpl[] = "/tmp/vigie-spool-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  v1::NotifierConfig c;
  ASSERT_TRUE(ParseYamlConfig("route: {receiver: hook, group_by: [alertname], "
                              "group_wait: 300ms, group_interval: 300ms}",
                              &c)
                  .ok());
  auto router = Router::FromConfig(c, {"hook"});
  ASSERT_TRUE(router.ok()) << router.status();
  FakeChannel* fake;
  DeliveryOptions o = FastRetries();
  o.spool_directory = tmpl;
  RecordingObserver log;
  prometheus::Registry registry;
  auto alert = [](const std::string& key, const std::string& name, const std::string& instance,
                  bool resolved = false) {
    v1::NotifyRequest r = Request(key, resolved);
    r.mutable_notification()->set_fingerprint(name + instance);
    (*r.mutable_notification()->mutable_labels())["alertname"] = name;
    return r;
  };
  std::vector<std::string> sent;
  std::vector<size_t> alerts;
  {
    Delivery d(o, OneReceiver(0, &fake), &registry, &log, router->get());
    d.Start();
    ASSERT_TRUE(d.Accept(alert("disk-a", "DiskFull", "a")).ok());
    ASSERT_TRUE(d.Accept(alert("disk-b", "DiskFull", "b")).ok());
    ASSERT_TRUE(d.Accept(alert("load-a", "HighLoad", "a")).ok());
    // Fires and resolves within group_wait: never sent.
    ASSERT_TRUE(d.Accept(alert("disk-c", "DiskFull", "c")).ok());
    ASSERT_TRUE(d.Accept(alert("disk-c-resolved", "DiskFull", "c", true)).ok());
    WaitUntil([&] { return d.queued() == 0; });
    EXPECT_EQ(d.queued(), 0u);
    d.Stop();
    sent = fake->sent();
    alerts = fake->alerts();
  }
  ASSERT_EQ(sent.size(), 2u);
  std::map<std::string, size_t> by_key;
  for (size_t i = 0; i < sent.size(); ++i) by_key[sent[i]] = alerts[i];
  EXPECT_EQ(by_key["load-a"], 1u) << "a group of one keeps its alert's key";
  by_key.erase("load-a");
  ASSERT_EQ(by_key.size(), 1u);
  EXPECT_THAT(by_key.begin()->first, ::testing::StartsWith("group-"));
  EXPECT_EQ(by_key.begin()->second, 2u) << "DiskFull a and b in one message";
  EXPECT_THAT(log.events(), ::testing::IsSupersetOf({
                                "disk-a hook/webhook[0] sent",
                                "disk-b hook/webhook[0] sent",
                                "disk-c hook/webhook[0] skipped",
                                "disk-c-resolved hook/webhook[0] skipped",
                            }));
  // Everything finished: a restart finds nothing to deliver.
  prometheus::Registry registry2;
  Delivery again(o, OneReceiver(0, &fake), &registry2, nullptr, router->get());
  EXPECT_EQ(*again.Recover(), 0);
  again.Stop();
  rmdir(tmpl);
}

TEST(DeliveryTest, AHangingChannelNeverHoldsEveryWorker) {
  class Hanging : public Channel {
   public:
    absl::Status Send(const Batch&) override {
      MutexLock lock(&mu_);
      ++calls_;
      mu_.Await([this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return released_; });
      return absl::OkStatus();
    }
    void Release() {
      MutexLock lock(&mu_);
      released_ = true;
    }
    int calls() {
      MutexLock lock(&mu_);
      return calls_;
    }

   private:
    Mutex mu_;
    bool released_ ABSL_GUARDED_BY(mu_) = false;
    int calls_ ABSL_GUARDED_BY(mu_) = 0;
  };
  auto hanging = std::make_unique<Hanging>();
  Hanging* hang = hanging.get();
  auto ok = std::make_unique<FakeChannel>(0);
  FakeChannel* ok_fake = ok.get();
  std::vector<Receiver> receivers;
  receivers.push_back({"smtp", "email", std::move(hanging)});
  receivers.push_back({"hook", "webhook", std::move(ok)});
  prometheus::Registry registry;
  Delivery d(FastRetries(), std::move(receivers), &registry);  // 2 workers
  d.Start();
  for (int i = 0; i < 5; ++i) {
    v1::NotifyRequest r = Request(absl::StrCat("k", i));
    r.mutable_notification()->set_fingerprint(absl::StrCat("fp", i));  // no ordering between them
    ASSERT_TRUE(d.Accept(r).ok());
  }
  // The webhook gets all five while the SMTP server hangs on its first.
  WaitUntil([&] { return ok_fake->sent().size() == 5; });
  EXPECT_EQ(ok_fake->sent().size(), 5u);
  EXPECT_EQ(hang->calls(), 1);
  hang->Release();
  WaitUntil([&] { return d.queued() == 0; });
  EXPECT_EQ(hang->calls(), 5);
  d.Stop();
}

}  // namespace
}  // namespace vigie::notifier
