#include "controlplane/gateway.h"

#include <cmath>

#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigie::controlplane {
namespace {

using ::testing::HasSubstr;
using ::vigie::testing::IsOk;
using ::vigie::testing::StatusIs;

constexpr int64_t kNow = 1764000000000;  // 2025-11-24

v1::AgentMessage Metrics(int samples, int labels) {
  v1::AgentMessage m;
  m.mutable_metrics()->set_sequence(1);
  for (int i = 0; i < samples; ++i) {
    v1::Sample* s = m.mutable_metrics()->add_samples();
    s->set_name("node_load1");
    s->set_timestamp_ms(kNow);
    for (int l = 0; l < labels; ++l) (*s->mutable_labels())["l" + std::to_string(l)] = "v";
  }
  return m;
}

TEST(ValidateAgentMessageTest, LimitsAreEnforcedWithTheFieldNamed) {
  GatewayOptions limits;
  limits.max_samples_per_batch = 3;
  limits.max_labels_per_sample = 2;
  EXPECT_THAT(ValidateAgentMessage(Metrics(3, 2), limits), IsOk());
  EXPECT_THAT(ValidateAgentMessage(Metrics(4, 0), limits),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("metrics.samples: 4 samples exceed the limit of 3")));
  EXPECT_THAT(ValidateAgentMessage(Metrics(1, 3), limits),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("metrics.samples[0].labels: 3 labels exceed the limit of 2")));
}

TEST(ValidateAgentMessageTest, MalformedFieldsAreRejected) {
  GatewayOptions limits;
  v1::AgentMessage m = Metrics(1, 0);
  m.mutable_metrics()->mutable_samples(0)->set_name("bad name");
  EXPECT_THAT(ValidateAgentMessage(m, limits),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("metrics.samples[0].name: \"bad name\"")));
  m = Metrics(1, 0);
  m.mutable_metrics()->set_sequence(0);
  EXPECT_THAT(ValidateAgentMessage(m, limits),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("metrics.sequence")));
  m = Metrics(1, 1);
  (*m.mutable_metrics()->mutable_samples(0)->mutable_labels())["l0"] = std::string("a\0b", 3);
  EXPECT_THAT(ValidateAgentMessage(m, limits),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NUL")));
  m = Metrics(1, 0);
  m.mutable_metrics()->mutable_samples(0)->set_timestamp_ms(-5);
  EXPECT_THAT(ValidateAgentMessage(m, limits),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("metrics.samples[0].timestamp_ms: -5")));
  v1::AgentMessage hello;
  hello.mutable_hello()->set_agent_id("a b");
  EXPECT_THAT(ValidateAgentMessage(hello, limits),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hello.agent_id: \"a b\"")));
  EXPECT_THAT(ValidateAgentMessage(v1::AgentMessage(), limits),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
}

v1::AgentMessage Stamped(int64_t ts, double value) {
  v1::AgentMessage m = Metrics(1, 0);
  m.mutable_metrics()->mutable_samples(0)->set_timestamp_ms(ts);
  m.mutable_metrics()->mutable_samples(0)->set_value(value);
  return m;
}

TEST(ValidateAgentMessageTest, TimestampsIn1970And2100AreRefusedNaNAndInfAreNot) {
  GatewayOptions limits;
  const char* reason = "";
  EXPECT_THAT(ValidateAgentMessage(Stamped(kNow, 1), limits, kNow), IsOk());
  EXPECT_THAT(ValidateAgentMessage(Stamped(0, 1), limits, kNow, &reason),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("metrics.samples[0].timestamp_ms: 0 is before 2000")));
  EXPECT_STREQ(reason, "bad_timestamp");
  EXPECT_THAT(ValidateAgentMessage(Stamped(4102444800000, 1), limits, kNow),  // 2100-01-01
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("4102444800000")));
  EXPECT_THAT(ValidateAgentMessage(Stamped(kNow, std::nan("")), limits, kNow), IsOk());
  EXPECT_THAT(ValidateAgentMessage(Stamped(kNow, -INFINITY), limits, kNow), IsOk());
}

TEST(ValidateAgentMessageTest, SequencesTheDatabaseCannotHoldAreRefused) {
  GatewayOptions limits;
  v1::AgentMessage m = Stamped(kNow, 1);
  m.mutable_metrics()->set_sequence(uint64_t{1} << 63);
  const char* reason = "";
  EXPECT_THAT(ValidateAgentMessage(m, limits, kNow, &reason),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("metrics.sequence: 9223372036854775808 is above the largest")));
  EXPECT_STREQ(reason, "sequence_range");
  m.mutable_metrics()->set_sequence(INT64_MAX);
  EXPECT_THAT(ValidateAgentMessage(m, limits, kNow), IsOk());
}

TEST(ValidateAgentMessageTest, ChecksAndServiceEventsAreCheckedLikeSamples) {
  GatewayOptions limits;
  v1::AgentMessage m;
  m.mutable_checks()->set_sequence(1);
  v1::CheckResult* r = m.mutable_checks()->add_results();
  r->set_name("web");
  r->set_timestamp_ms(kNow);
  EXPECT_THAT(ValidateAgentMessage(m, limits, kNow), IsOk());
  r->set_message(std::string("a\0b", 3));
  EXPECT_THAT(ValidateAgentMessage(m, limits, kNow),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("checks.results[0].message: contains a NUL byte")));
  r->set_message("ok");
  r->set_timestamp_ms(INT64_MAX);
  EXPECT_THAT(ValidateAgentMessage(m, limits, kNow),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("checks.results[0].timestamp_ms: 9223372036854775807")));
  r->set_timestamp_ms(kNow);
  for (double bad : {std::nan(""), static_cast<double>(INFINITY), -1.0}) {
    r->set_latency_seconds(bad);
    EXPECT_THAT(ValidateAgentMessage(m, limits, kNow),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("checks.results[0].latency_seconds: must be a finite number")));
  }
  r->set_latency_seconds(0.5);
  r->set_consecutive_failures(UINT32_MAX);
  EXPECT_THAT(ValidateAgentMessage(m, limits, kNow),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("checks.results[0].consecutive_failures: at most 2147483647")));
  r->set_consecutive_failures(0);
  for (int i = 0; i < 65; ++i) r->add_command_ids("cmd-1");
  EXPECT_THAT(ValidateAgentMessage(m, limits, kNow),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("checks.results[0].command_ids: at most 64, got 65")));
  r->clear_command_ids();
  r->add_command_ids(std::string(200, 'x'));
  EXPECT_THAT(
      ValidateAgentMessage(m, limits, kNow),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("checks.results[0].command_ids[0]")));
  r->clear_command_ids();
  v1::AgentMessage e;
  e.mutable_service_event()->set_sequence(2);
  e.mutable_service_event()->set_service("db");
  e.mutable_service_event()->set_timestamp_ms(0);
  EXPECT_THAT(
      ValidateAgentMessage(e, limits, kNow),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("service_event.timestamp_ms: 0")));
  e.mutable_service_event()->set_timestamp_ms(kNow);
  EXPECT_TRUE(ValidateAgentMessage(e, limits, kNow).ok());
  for (int i = 0; i < 65; ++i) e.mutable_service_event()->add_command_ids("cmd-1");
  EXPECT_THAT(ValidateAgentMessage(e, limits, kNow),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("service_event.command_ids: at most 64, got 65")));
  e.mutable_service_event()->clear_command_ids();
  e.mutable_service_event()->add_command_ids(std::string("cmd-\0", 5));
  EXPECT_THAT(ValidateAgentMessage(e, limits, kNow),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("service_event.command_ids[0]: contains a NUL byte")));
}

// Parses as the gateway does, but from a string.
std::function<bool(google::protobuf::Message*)> From(const std::string& bytes) {
  return [bytes](google::protobuf::Message* m) { return m->ParseFromString(bytes); };
}

TEST(DecodeAgentMessageTest, InvalidUtf8IsRefusedBySequenceWithTheFieldNamed) {
  GatewayOptions limits;
  v1::AgentMessage m = Stamped(kNow, 1);
  m.mutable_metrics()->set_sequence(42);
  (*m.mutable_metrics()->mutable_samples(0)->mutable_labels())["l"] = "\xc3\x28";
  v1::AgentMessage good = Stamped(kNow, 1);
  *m.mutable_metrics()->add_samples() = good.metrics().samples(0);
  const std::string bytes = m.SerializePartialAsString();
  // vigie.v1 itself refuses to parse it: this is what used to stall an agent.
  v1::AgentMessage strict;
  ASSERT_FALSE(strict.ParseFromString(bytes));

  DecodedMessage d = DecodeAgentMessage(From(bytes), bytes.size(), limits, kNow);
  EXPECT_THAT(d.status, StatusIs(absl::StatusCode::kInvalidArgument,
                                 HasSubstr("metrics.samples[0].labels[\"l\"]: value "
                                           "\"\\xc3(\" is not valid UTF-8")));
  EXPECT_EQ(d.sequence, 42u);
  EXPECT_STREQ(d.kind, "metrics");
  EXPECT_STREQ(d.reason, "invalid_utf8");
  // The reason is itself a proto string: it must serialize and parse.
  v1::ControlMessage reject;
  reject.mutable_reject()->set_reason(std::string(d.status.message()));
  v1::ControlMessage back;
  EXPECT_TRUE(back.ParseFromString(reject.SerializeAsString()));
}

TEST(DecodeAgentMessageTest, InvalidUtf8InAMetricNameIsNamed) {
  v1::AgentMessage m = Stamped(kNow, 1);
  m.mutable_metrics()->set_sequence(7);
  m.mutable_metrics()->mutable_samples(0)->set_name("bad\xff");
  const std::string bytes = m.SerializePartialAsString();
  DecodedMessage d = DecodeAgentMessage(From(bytes), bytes.size(), GatewayOptions(), kNow);
  EXPECT_THAT(d.status, StatusIs(absl::StatusCode::kInvalidArgument,
                                 HasSubstr("metrics.samples[0].name: \"bad\\xff\"")));
  EXPECT_EQ(d.sequence, 7u);
}

TEST(DecodeAgentMessageTest, OversizedMessagesAreRefusedBySequence) {
  GatewayOptions limits;
  limits.max_message_bytes = 1024;
  v1::AgentMessage m = Metrics(100, 2);
  m.mutable_metrics()->set_sequence(9);
  const std::string bytes = m.SerializeAsString();
  ASSERT_GT(bytes.size(), 1024u);
  DecodedMessage d = DecodeAgentMessage(From(bytes), bytes.size(), limits, kNow);
  EXPECT_THAT(d.status,
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exceed the limit of 1024")));
  EXPECT_EQ(d.sequence, 9u);
  EXPECT_STREQ(d.reason, "too_large");
}

TEST(DecodeAgentMessageTest, GarbageAndValidMessages) {
  const std::string garbage = "\xff\xff\xff\xff";
  DecodedMessage d = DecodeAgentMessage(From(garbage), garbage.size(), GatewayOptions(), kNow);
  EXPECT_STREQ(d.reason, "unparseable");
  EXPECT_EQ(d.sequence, 0u);  // nothing to refuse by number: the stream ends

  v1::AgentMessage m = Stamped(kNow, 1);
  m.mutable_metrics()->set_sequence(3);
  const std::string bytes = m.SerializeAsString();
  d = DecodeAgentMessage(From(bytes), bytes.size(), GatewayOptions(), kNow);
  EXPECT_THAT(d.status, IsOk());
  EXPECT_EQ(d.sequence, 3u);
  EXPECT_EQ(d.message.metrics().samples_size(), 1);
}

TEST(DecodeAgentMessageTest, UnknownFieldsAreIgnored) {
  v1::AgentMessage m = Stamped(kNow, 1);
  m.mutable_metrics()->set_sequence(3);
  std::string bytes = m.SerializeAsString();
  bytes += std::string("\xa0\x06\x01", 3);  // field 100, varint 1: from a newer agent
  DecodedMessage d = DecodeAgentMessage(From(bytes), bytes.size(), GatewayOptions(), kNow);
  EXPECT_THAT(d.status, IsOk());
}

}  // namespace
}  // namespace vigie::controlplane
