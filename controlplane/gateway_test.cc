#include "controlplane/gateway.h"

#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigie::controlplane {
namespace {

using ::testing::HasSubstr;
using ::vigie::testing::IsOk;
using ::vigie::testing::StatusIs;

v1::AgentMessage Metrics(int samples, int labels) {
  v1::AgentMessage m;
  m.mutable_metrics()->set_sequence(1);
  for (int i = 0; i < samples; ++i) {
    v1::Sample* s = m.mutable_metrics()->add_samples();
    s->set_name("node_load1");
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

}  // namespace
}  // namespace vigie::controlplane
