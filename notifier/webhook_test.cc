#include "notifier/webhook.h"

#include <limits>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace vigie::notifier {
namespace {

TEST(WebhookPayloadTest, MatchesAlertmanagerWebhookShape) {
  v1::NotifyRequest r;
  r.set_idempotency_key("disk_low/abc/1700000000000/firing");
  v1::Notification* n = r.mutable_notification();
  n->set_status(v1::Notification::STATUS_FIRING);
  n->set_rule("disk_low");
  n->set_fingerprint("0123456789abcdef");
  (*n->mutable_labels())["alertname"] = "disk_low";
  (*n->mutable_labels())["agent"] = "web1";
  (*n->mutable_annotations())["summary"] = "Disque presque plein — été";
  n->set_starts_at_ms(1700000000123);
  n->set_generator_url("http://127.0.0.1:9102/");
  auto j = nlohmann::json::parse(WebhookPayload(Batch::Of(r), "ops", "http://vigie.example"));
  EXPECT_EQ(j["version"], "4");
  EXPECT_EQ(j["receiver"], "ops");
  EXPECT_EQ(j["status"], "firing");
  EXPECT_EQ(j["externalURL"], "http://vigie.example");
  EXPECT_EQ(j["groupKey"], "{}:{alertname=\"disk_low\"}");
  EXPECT_EQ(j["truncatedAlerts"], 0);
  ASSERT_EQ(j["alerts"].size(), 1u);
  const auto& a = j["alerts"][0];
  EXPECT_EQ(a["status"], "firing");
  EXPECT_EQ(a["labels"]["agent"], "web1");
  EXPECT_EQ(a["annotations"]["summary"], "Disque presque plein — été");
  EXPECT_EQ(a["startsAt"], "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(a["endsAt"], "0001-01-01T00:00:00Z");
  EXPECT_EQ(a["fingerprint"], "0123456789abcdef");
  EXPECT_EQ(j["idempotencyKey"], "disk_low/abc/1700000000000/firing");
}

TEST(WebhookPayloadTest, ResolvedHasEndsAt) {
  v1::NotifyRequest r;
  r.mutable_notification()->set_status(v1::Notification::STATUS_RESOLVED);
  r.mutable_notification()->set_ends_at_ms(1700000060000);
  auto j = nlohmann::json::parse(WebhookPayload(Batch::Of(r), "ops", ""));
  EXPECT_EQ(j["status"], "resolved");
  EXPECT_EQ(j["alerts"][0]["endsAt"], "2023-11-14T22:14:20.000Z");
}

TEST(WebhookPayloadTest, AGroupIsOneAlertmanagerPayloadWithCommonLabels) {
  Batch b;
  b.receiver = "ops";
  b.group_labels = {{"alertname", "DiskFull"}};
  b.key = "group-abc";
  for (const char* instance : {"a", "b"}) {
    v1::NotifyRequest r;
    r.set_idempotency_key(std::string("k-") + instance);
    v1::Notification* n = r.mutable_notification();
    n->set_status(instance[0] == 'a' ? v1::Notification::STATUS_FIRING
                                     : v1::Notification::STATUS_RESOLVED);
    (*n->mutable_labels())["alertname"] = "DiskFull";
    (*n->mutable_labels())["instance"] = instance;
    (*n->mutable_annotations())["runbook"] = "http://wiki/disk";
    b.alerts.push_back(r);
  }
  auto j = nlohmann::json::parse(WebhookPayload(b, "ops", ""));
  EXPECT_EQ(j["status"], "firing");
  EXPECT_EQ(j["alerts"].size(), 2u);
  EXPECT_EQ(j["alerts"][1]["status"], "resolved");
  EXPECT_EQ(j["alerts"][1]["idempotencyKey"], "k-b");
  EXPECT_EQ(j["groupLabels"], nlohmann::json({{"alertname", "DiskFull"}}));
  EXPECT_EQ(j["commonLabels"], nlohmann::json({{"alertname", "DiskFull"}}));
  EXPECT_EQ(j["commonAnnotations"], nlohmann::json({{"runbook", "http://wiki/disk"}}));
  EXPECT_EQ(j["groupKey"], "{}:{alertname=\"DiskFull\"}");
  EXPECT_EQ(j["idempotencyKey"], "group-abc");
}

TEST(WebhookPayloadTest, BadValuesNeverBreakThePayload) {
  v1::NotifyRequest r;
  r.set_idempotency_key("k");
  v1::Notification* n = r.mutable_notification();
  n->set_status(v1::Notification::STATUS_FIRING);
  (*n->mutable_labels())["path"] = "caf\xc3";  // invalid UTF-8 (cut mid-character)
  (*n->mutable_labels())["huge"] = std::string(1 << 20, 'x');
  n->set_value(std::numeric_limits<double>::quiet_NaN());
  n->set_starts_at_ms(0);            // 1970
  n->set_ends_at_ms(4102444800000);  // 2100
  nlohmann::json j;
  ASSERT_NO_THROW(j = nlohmann::json::parse(WebhookPayload(Batch::Of(r), "ops", "")));
  EXPECT_EQ(j["alerts"][0]["labels"]["path"], "caf\xef\xbf\xbd") << "replaced, not thrown";
  EXPECT_EQ(j["alerts"][0]["endsAt"], "2100-01-01T00:00:00.000Z");
}

}  // namespace
}  // namespace vigie::notifier
