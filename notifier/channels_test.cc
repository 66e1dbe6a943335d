// The channels' pure parts: templates, the email subject encoding, SMS requests, Slack and
// webhook payloads. Sending is tested against real servers in tests/e2e/notifier_channels_test.py.
#include "absl/strings/str_split.h"
#include "common/yaml_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "notifier/email.h"
#include "notifier/options.h"
#include "notifier/slack.h"
#include "notifier/sms.h"
#include "notifier/template.h"
#include "notifier/webhook.h"

namespace vigie::notifier {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

v1::NotifyRequest Alert(bool resolved = false) {
  v1::NotifyRequest r;
  r.set_idempotency_key("disk_low/abc/1700000000000/firing");
  v1::Notification* n = r.mutable_notification();
  n->set_status(resolved ? v1::Notification::STATUS_RESOLVED : v1::Notification::STATUS_FIRING);
  n->set_rule("disk_low");
  n->set_severity("critical");
  n->set_fingerprint("0123456789abcdef");
  (*n->mutable_labels())["alertname"] = "disk_low";
  (*n->mutable_labels())["agent"] = "web1";
  (*n->mutable_annotations())["summary"] = "Disque presque plein — été 🔥";
  n->set_value(3.5);
  n->set_starts_at_ms(1700000000123);
  if (resolved) n->set_ends_at_ms(1700000060000);
  n->set_generator_url("http://vigie.example/");
  return r;
}

std::shared_ptr<Template> T(const std::string& text,
                            Template::Escape escape = Template::Escape::kNone) {
  auto t = Template::Parse("t", text, escape);
  EXPECT_TRUE(t.ok()) << t.status();
  return std::make_shared<Template>(std::move(*t));
}

TEST(TemplateTest, FieldsSectionsAndEscaping) {
  EXPECT_EQ(T("{{STATUS}} {{alertname}} on {{labels.agent}} = {{value}} since {{starts_at}}")
                ->Render(Alert()),
            "FIRING disk_low on web1 = 3.5 since 2023-11-14T22:13:20.123Z");
  EXPECT_EQ(
      T("{{#firing}}F{{/firing}}{{#resolved}}R {{ends_at}}{{/resolved}}")->Render(Alert(true)),
      "R 2023-11-14T22:14:20.000Z");
  EXPECT_EQ(T("{{#label_list}}{{name}}={{value}};{{/label_list}}")->Render(Alert()),
            "agent=web1;alertname=disk_low;");
  // Text templates keep values as they are; HTML templates escape them.
  v1::NotifyRequest r = Alert();
  (*r.mutable_notification()->mutable_labels())["agent"] = "<b>&";
  EXPECT_EQ(T("{{labels.agent}}")->Render(r), "<b>&");
  EXPECT_EQ(T("{{labels.agent}}", Template::Escape::kHtml)->Render(r), "&lt;b&gt;&amp;");
  EXPECT_EQ(T("{{summary}}")->Render(Alert()), "Disque presque plein — été 🔥");
}

TEST(TemplateTest, AcknowledgementAndSilenceAreShownByTheDefaultTemplates) {
  v1::NotifyRequest r = Alert();
  r.mutable_notification()->set_acknowledged_by("alice");
  r.mutable_notification()->set_acknowledgement_comment("replacing the disk");
  EXPECT_EQ(T("{{#acknowledged_by}}ack {{acknowledged_by}}: {{acknowledgement_comment}}"
              "{{/acknowledged_by}}")
                ->Render(r),
            "ack alice: replacing the disk");
  EXPECT_THAT(T(kDefaultEmailText)->Render(r),
              ::testing::HasSubstr("Acknowledged by alice: replacing the disk\n"));
  EXPECT_THAT(T(kDefaultSmsText)->Render(r), ::testing::HasSubstr("[ack: alice]"));
  EXPECT_THAT(T(kDefaultSlackText)->Render(r), ::testing::HasSubstr("Acknowledged by alice"));
  EXPECT_THAT(T(kDefaultEmailText)->Render(Alert()),
              ::testing::Not(::testing::HasSubstr("Acknowledged")));
  r.mutable_notification()->clear_acknowledged_by();
  r.mutable_notification()->set_silenced_by("silence 0123456789abcdef");
  EXPECT_THAT(T(kDefaultEmailText)->Render(r),
              ::testing::HasSubstr("Silenced (silence 0123456789abcdef)"));
}

TEST(TemplateTest, ABadTemplateIsRefusedWithItsPosition) {
  auto t = Template::Parse("receivers[0].email_configs[0].subject", "ok {{#firing}} no end");
  EXPECT_FALSE(t.ok());
  EXPECT_THAT(std::string(t.status().message()),
              HasSubstr("receivers[0].email_configs[0].subject: Unclosed section \"firing\" at 3"));
  t = Template::Parse("x", "{{unclosed");
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("Unclosed tag at 0"));
  // Partials and lambdas come only from data, which has none: inert.
  EXPECT_EQ(T("a{{> /etc/passwd}}b")->Render(Alert()), "ab");
}

TEST(EmailTest, SubjectIsEncodedOnlyWhenNotAscii) {
  EXPECT_EQ(EncodeHeaderWord("plain subject"), "plain subject");
  EXPECT_EQ(EncodeHeaderWord("inject\r\nBcc: x@y"), "injectBcc: x@y");
  const std::string e = EncodeHeaderWord("Disque plein — été 🔥");
  EXPECT_THAT(e, StartsWith("=?UTF-8?B?"));
  // Long values fold into words of at most 75 characters, never splitting a character.
  const std::string long_value(100, 'x');
  const std::string folded = EncodeHeaderWord(long_value + "é");
  for (absl::string_view word : absl::StrSplit(folded, "\r\n ")) {
    EXPECT_LE(word.size(), 75u);
  }
}

TEST(EmailTest, PlainAddresses) {
  EXPECT_TRUE(IsPlainAddress("ops@example.com"));
  EXPECT_FALSE(IsPlainAddress("Ops <ops@example.com>"));
  EXPECT_FALSE(IsPlainAddress("a@b.com, c@d.com"));
  EXPECT_FALSE(IsPlainAddress("a@b.com\r\nBcc: c@d.com"));
  EXPECT_FALSE(IsPlainAddress("nobody"));
}

TEST(SmsTest, CutMessageCountsCharactersNotBytes) {
  EXPECT_EQ(CutMessage("short", 20), "short");
  EXPECT_EQ(CutMessage("ééééééééééééééééééééééé", 20), "ééééééééééééééééééé…");
  EXPECT_EQ(CutMessage(std::string(20, 'a'), 20), std::string(20, 'a'));
  EXPECT_EQ(CutMessage(std::string(21, 'a'), 20), std::string(19, 'a') + "…");
}

TEST(SmsTest, PresetsBuildTheGatewaysRequests) {
  SmsOptions o;
  o.text = T("{{STATUS}} {{summary}}");
  o.preset = SmsOptions::Preset::kFreeMobile;
  o.url = "http://127.0.0.1:1/sendmsg";
  o.user = "12345678";
  o.password = "s3cr&t";
  auto reqs = SmsRequests(o, Batch::Of(Alert()));
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].method, "GET");
  EXPECT_EQ(reqs[0].url,
            "http://127.0.0.1:1/sendmsg?user=12345678&pass=s3cr%26t&msg=FIRING%20Disque%20presque"
            "%20plein%20%E2%80%94%20%C3%A9t%C3%A9%20%F0%9F%94%A5");
  o.preset = SmsOptions::Preset::kTwilio;
  o.url = "http://127.0.0.1:1";
  o.user = "AC123";
  o.from = "+15550001";
  o.to = {"+33600000001", "+33600000002"};
  reqs = SmsRequests(o, Batch::Of(Alert()));
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[1].url, "http://127.0.0.1:1/2010-04-01/Accounts/AC123/Messages.json");
  EXPECT_EQ(reqs[1].basic_auth_username, "AC123");
  EXPECT_THAT(reqs[1].body, StartsWith("To=%2B33600000002&From=%2B15550001&Body=FIRING%20"));
  o.preset = SmsOptions::Preset::kHttp;
  o.method = "PUT";
  o.url_template = T("http://gw/send?to={{labels.agent}}&m={{message_url}}");
  o.headers["X-Key"] = T("k-{{severity}}");
  o.body = T("{\"text\": \"{{message_json}}\"}");
  o.max_length = 20;
  reqs = SmsRequests(o, Batch::Of(Alert()));
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].method, "PUT");
  EXPECT_EQ(reqs[0].url, "http://gw/send?to=web1&m=FIRING%20Disque%20presq%E2%80%A6");
  EXPECT_EQ(reqs[0].headers[0], "X-Key: k-critical");
  EXPECT_EQ(reqs[0].body, "{\"text\": \"FIRING Disque presq…\"}");
}

TEST(SlackTest, PayloadHasColourTitleLinkAndLabelFields) {
  SlackOptions o;
  o.title = T(kDefaultSlackTitle);
  o.text = T(kDefaultSlackText);
  o.channel = "#ops";
  auto j = nlohmann::json::parse(SlackPayload(o, Batch::Of(Alert())));
  EXPECT_EQ(j["channel"], "#ops");
  const auto& a = j["attachments"][0];
  EXPECT_EQ(a["color"], "#d00000");
  EXPECT_EQ(a["title"], "[FIRING] disk_low: Disque presque plein — été 🔥");
  EXPECT_EQ(a["title_link"], "http://vigie.example/");
  EXPECT_EQ(a["fields"][0]["title"], "agent");
  EXPECT_EQ(a["fields"][0]["value"], "web1");
  EXPECT_EQ(j["text"], a["title"]);
  EXPECT_EQ(
      nlohmann::json::parse(SlackPayload(o, Batch::Of(Alert(true))))["attachments"][0]["color"],
      "#2eb886");
  // Invalid UTF-8 in a label does not break the JSON.
  v1::NotifyRequest bad = Alert();
  (*bad.mutable_notification()->mutable_labels())["agent"] = "\xff\xfe";
  nlohmann::json parsed;
  EXPECT_NO_THROW(parsed = nlohmann::json::parse(SlackPayload(o, Batch::Of(bad))));
  EXPECT_TRUE(parsed.is_object());
}

TEST(WebhookTest, SignatureIsHmacSha256OfTheBody) {
  // RFC 4231 test case 2.
  EXPECT_EQ(WebhookSignature("Jefe", "what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

absl::StatusOr<NotifierOptions> FromYaml(const std::string& receivers) {
  setenv("VIGIE_TEST_CLIENT_TOKEN", "vigie_0123456789abcdef0123456789abcdef", 1);
  v1::NotifierConfig c;
  absl::Status s =
      ParseYamlConfig("client_token: {env: VIGIE_TEST_CLIENT_TOKEN}\nreceivers:\n" + receivers, &c);
  if (!s.ok()) return s;
  return NotifierOptionsFromConfig(c);
}

TEST(NotifierOptionsTest, ChannelsAreValidatedWithTheirPath) {
  setenv("VIGIE_TEST_SLACK", "https://hooks.slack.test/services/x", 1);
  auto o = FromYaml(
      "  - name: ops\n"
      "    email_configs: [{to: [ops@example.com], from: vigie@example.com, "
      "smarthost: 'smtp.example.com:587'}]\n"
      "    slack_configs: [{api_url: {env: VIGIE_TEST_SLACK}}]\n"
      "    sms_configs: [{preset: free_mobile, user: '1', password: {env: HOME}}]\n"
      "    webhook: {url: 'http://127.0.0.1:1/'}\n");
  ASSERT_TRUE(o.ok()) << o.status().message();
  ASSERT_EQ(o->channels.size(), 4u);
  EXPECT_EQ(o->channels[0].kind, "webhook");
  EXPECT_EQ(o->channels[1].kind, "email");
  struct Case {
    const char* yaml;
    const char* error;
  } cases[] = {
      {"  - {name: a, email_configs: [{to: ['x y'], from: a@b.c, smarthost: 'h:25'}]}",
       "receivers[0].email_configs[0].to[0]: \"x y\" is not a plain address"},
      {"  - {name: a, email_configs: [{to: [a@b.c], from: a@b.c, smarthost: h}]}",
       "receivers[0].email_configs[0].smarthost: \"h\" must be host:port"},
      {"  - {name: a, email_configs: [{to: [a@b.c], from: a@b.c, smarthost: 'h:25', tls: none}]}",
       "in clear beyond loopback"},
      {"  - {name: a, email_configs: [{to: [a@b.c], from: a@b.c, smarthost: 'h:25', "
       "subject: '{{#x}}'}]}",
       "receivers[0].email_configs[0].subject: Unclosed section \"x\" at 0"},
      {"  - {name: a, sms_configs: [{preset: carrier_pigeon}]}",
       "receivers[0].sms_configs[0].preset: \"carrier_pigeon\""},
      {"  - {name: a, sms_configs: [{preset: twilio, user: u, password: {env: HOME}}]}",
       "twilio preset needs from and to"},
      {"  - {name: a, sms_configs: [{preset: http, url: 'http://gw/', method: DELETE}]}",
       "receivers[0].sms_configs[0].method: \"DELETE\""},
      {"  - {name: a, sms_configs: [{preset: http, url: 'http://gw/', max_length: 5}]}",
       "max_length: between 20 and 1600"},
      {"  - {name: a, slack_configs: [{channel: x}]}",
       "receivers[0].slack_configs[0].api_url: required"},
      {"  - {name: a}", "receivers[0]: needs a channel"},
  };
  for (const Case& c : cases) {
    auto r = FromYaml(std::string(c.yaml) + "\n");
    EXPECT_FALSE(r.ok()) << c.yaml;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.error)) << c.yaml;
  }
}

}  // namespace
}  // namespace vigie::notifier
