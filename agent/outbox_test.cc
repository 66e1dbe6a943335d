#include "agent/outbox.h"

#include <vector>

#include "gtest/gtest.h"

namespace vigie::agent {
namespace {

v1::AgentMessage Batch(double marker) {
  v1::AgentMessage m;
  m.mutable_metrics()->add_samples()->set_value(marker);
  return m;
}

// Drains everything the outbox would send on the current stream: (sequence, marker) pairs.
std::vector<std::pair<uint64_t, double>> Drain(Outbox& o) {
  std::vector<std::pair<uint64_t, double>> out;
  while (auto m = o.NextToSend()) {
    out.emplace_back(m->metrics().sequence(), m->metrics().samples(0).value());
  }
  return out;
}

using Sent = std::vector<std::pair<uint64_t, double>>;

TEST(OutboxTest, MessagesBeforeFirstWelcomeWaitAndAreNumberedAfterCommitted) {
  Outbox o(10);
  o.Add(Batch(1));
  o.Add(Batch(2));
  EXPECT_EQ(o.NextToSend(), std::nullopt) << "nothing is sent before Welcome";
  o.OnWelcome(/*committed=*/41);  // a restarted agent: the control plane has 1..41 already
  EXPECT_EQ(Drain(o), (Sent{{42, 1}, {43, 2}}));
  o.Add(Batch(3));
  EXPECT_EQ(Drain(o), (Sent{{44, 3}}));
  EXPECT_EQ(o.last_sequence(), 44u);
}

TEST(OutboxTest, AckIsCumulativeAndForgets) {
  Outbox o(10);
  o.OnWelcome(0);
  for (int i = 1; i <= 4; ++i) o.Add(Batch(i));
  Drain(o);
  o.OnAck(3);
  EXPECT_EQ(o.pending(), 1u);
  EXPECT_EQ(o.acked_sequence(), 3u);
}

TEST(OutboxTest, ReconnectResendsEverythingAboveCommittedInOrder) {
  Outbox o(10);
  o.OnWelcome(0);
  for (int i = 1; i <= 5; ++i) o.Add(Batch(i));
  EXPECT_EQ(Drain(o).size(), 5u);
  o.OnAck(2);
  // Stream breaks; batch 3 was committed but its Ack was lost. The new stream says so.
  o.OnWelcome(3);
  EXPECT_EQ(Drain(o), (Sent{{4, 4}, {5, 5}}));
  EXPECT_EQ(o.pending(), 2u);
}

TEST(OutboxTest, ReconnectToAControlPlaneThatLostDataResendsWhatIsStillHeld) {
  Outbox o(10);
  o.OnWelcome(0);
  for (int i = 1; i <= 3; ++i) o.Add(Batch(i));
  Drain(o);
  o.OnWelcome(1);
  EXPECT_EQ(Drain(o), (Sent{{2, 2}, {3, 3}}));
}

TEST(OutboxTest, BoundDropsOldestAndCounts) {
  Outbox o(3);
  o.OnWelcome(0);
  for (int i = 1; i <= 5; ++i) o.Add(Batch(i));
  EXPECT_EQ(o.pending(), 3u);
  EXPECT_EQ(o.dropped(), 2u);
  EXPECT_EQ(Drain(o), (Sent{{3, 3}, {4, 4}, {5, 5}}));
}

TEST(OutboxTest, DropOldestSkipsARefusedMessageAndCountsIt) {
  Outbox o(10);
  o.OnWelcome(0);
  for (int i = 1; i <= 3; ++i) o.Add(Batch(i));
  Drain(o);
  EXPECT_TRUE(o.DropOldest());
  EXPECT_EQ(o.dropped(), 1u);
  o.OnWelcome(0);  // the next stream resends from the message after the refused one
  EXPECT_EQ(Drain(o), (Sent{{2, 2}, {3, 3}}));
}

TEST(OutboxTest, CommittedAheadOfTheAgentShiftsNumbering) {
  Outbox o(10);
  o.OnWelcome(0);
  o.Add(Batch(1));
  o.Add(Batch(2));
  // Another process with the same agent id got to 10: new data must not look like a resend.
  o.OnWelcome(10);
  EXPECT_EQ(Drain(o), (Sent{{11, 1}, {12, 2}}));
}

TEST(OutboxTest, OtherPayloadsShareTheSequence) {
  Outbox o(10);
  o.OnWelcome(5);
  o.Add(Batch(1));
  v1::AgentMessage ev;
  ev.mutable_service_event()->set_service("web");
  o.Add(ev);
  auto a = o.NextToSend();
  auto b = o.NextToSend();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->metrics().sequence(), 6u);
  EXPECT_EQ(b->service_event().sequence(), 7u);
}

}  // namespace
}  // namespace vigie::agent
