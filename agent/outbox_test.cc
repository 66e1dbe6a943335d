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

v1::Welcome W(uint64_t committed) {
  v1::Welcome w;
  w.set_committed_sequence(committed);
  return w;
}

OutboxOptions Max(size_t n) {
  OutboxOptions o;
  o.max_pending = n;
  return o;
}

TEST(OutboxTest, MessagesBeforeFirstWelcomeWaitAndAreNumberedAfterCommitted) {
  Outbox o(Max(10));
  o.Add(Batch(1));
  o.Add(Batch(2));
  EXPECT_EQ(o.NextToSend(), nullptr) << "nothing is sent before Welcome";
  o.OnWelcome(W(41));  // a restarted agent: the control plane has 1..41 already
  EXPECT_EQ(Drain(o), (Sent{{42, 1}, {43, 2}}));
  o.Add(Batch(3));
  EXPECT_EQ(Drain(o), (Sent{{44, 3}}));
  EXPECT_EQ(o.last_sequence(), 44u);
}

TEST(OutboxTest, AckIsCumulativeAndForgets) {
  Outbox o(Max(10));
  o.OnWelcome(W(0));
  for (int i = 1; i <= 4; ++i) o.Add(Batch(i));
  Drain(o);
  o.OnAck(3);
  EXPECT_EQ(o.pending(), 1u);
  EXPECT_EQ(o.acked_sequence(), 3u);
}

TEST(OutboxTest, ReconnectResendsEverythingAboveCommittedInOrder) {
  Outbox o(Max(10));
  o.OnWelcome(W(0));
  for (int i = 1; i <= 5; ++i) o.Add(Batch(i));
  EXPECT_EQ(Drain(o).size(), 5u);
  o.OnAck(2);
  // Stream breaks; batch 3 was committed but its Ack was lost. The new stream says so.
  o.OnWelcome(W(3));
  EXPECT_EQ(Drain(o), (Sent{{4, 4}, {5, 5}}));
  EXPECT_EQ(o.pending(), 2u);
}

TEST(OutboxTest, ReconnectToAControlPlaneThatLostDataResendsWhatIsStillHeld) {
  Outbox o(Max(10));
  o.OnWelcome(W(0));
  for (int i = 1; i <= 3; ++i) o.Add(Batch(i));
  Drain(o);
  o.OnWelcome(W(1));
  EXPECT_EQ(Drain(o), (Sent{{2, 2}, {3, 3}}));
}

TEST(OutboxTest, BoundDropsOldestAndCounts) {
  Outbox o(Max(3));
  o.OnWelcome(W(0));
  for (int i = 1; i <= 5; ++i) o.Add(Batch(i));
  EXPECT_EQ(o.pending(), 3u);
  EXPECT_EQ(o.dropped(), 2u);
  EXPECT_EQ(Drain(o), (Sent{{3, 3}, {4, 4}, {5, 5}}));
}

TEST(OutboxTest, DropOldestSkipsARefusedMessageAndCountsIt) {
  Outbox o(Max(10));
  o.OnWelcome(W(0));
  for (int i = 1; i <= 3; ++i) o.Add(Batch(i));
  Drain(o);
  EXPECT_TRUE(o.DropOldest());
  EXPECT_EQ(o.dropped(), 1u);
  o.OnWelcome(W(0));  // the next stream resends from the message after the refused one
  EXPECT_EQ(Drain(o), (Sent{{2, 2}, {3, 3}}));
}

TEST(OutboxTest, CommittedAheadOfTheAgentShiftsNumbering) {
  Outbox o(Max(10));
  o.OnWelcome(W(0));
  o.Add(Batch(1));
  o.Add(Batch(2));
  // Another process with the same agent id got to 10: new data must not look like a resend.
  o.OnWelcome(W(10));
  EXPECT_EQ(Drain(o), (Sent{{11, 1}, {12, 2}}));
}

TEST(OutboxTest, OtherPayloadsShareTheSequence) {
  Outbox o(Max(10));
  o.OnWelcome(W(5));
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

TEST(OutboxTest, RejectDropsExactlyThatMessage) {
  Outbox o(Max(10));
  o.OnWelcome(W(0));
  for (int i = 1; i <= 4; ++i) o.Add(Batch(i));
  EXPECT_EQ(Drain(o).size(), 4u);
  EXPECT_TRUE(o.OnReject(2));
  EXPECT_FALSE(o.OnReject(2)) << "already gone";
  EXPECT_FALSE(o.OnReject(99));
  EXPECT_EQ(o.rejected(), 1u);
  o.OnWelcome(W(0));  // a reconnect resends everything else, and not the refused one
  EXPECT_EQ(Drain(o), (Sent{{1, 1}, {3, 3}, {4, 4}}));
}

TEST(OutboxTest, ByteBoundDropsOldest) {
  OutboxOptions opt;
  opt.max_pending_bytes = 3 * Batch(1).ByteSizeLong() + 5;  // room for three (numbered: a bit more)
  Outbox o(opt);
  for (int i = 1; i <= 5; ++i) o.Add(Batch(i));
  EXPECT_LE(o.pending_bytes(), opt.max_pending_bytes);
  EXPECT_EQ(o.dropped() + o.pending(), 5u);
  EXPECT_GE(o.dropped(), 2u);
}

v1::AgentMessage BigBatch(int samples, int labels) {
  v1::AgentMessage m;
  for (int i = 0; i < samples; ++i) {
    v1::Sample* s = m.mutable_metrics()->add_samples();
    s->set_name("m");
    s->set_value(i);
    for (int l = 0; l < labels; ++l) (*s->mutable_labels())["l" + std::to_string(l)] = "v";
  }
  return m;
}

TEST(OutboxTest, WelcomeWithTighterLimitsResplitsWhatIsBuffered) {
  Outbox o(Max(100));
  o.Add(BigBatch(10, 0));  // built under the agent's own limits, before any Welcome
  o.Add(BigBatch(3, 5));
  v1::Welcome w = W(7);
  w.set_max_samples_per_batch(4);
  w.set_max_labels_per_sample(4);
  o.OnWelcome(w);
  EXPECT_EQ(o.limits().max_samples_per_batch, 4u);
  std::vector<int> sizes;
  uint64_t expect = 8;
  while (auto m = o.NextToSend()) {
    EXPECT_EQ(m->metrics().sequence(), expect++);
    sizes.push_back(m->metrics().samples_size());
  }
  // 10 -> 4 + 4 + 2; the 3 samples with 5 labels each exceed the limit and are dropped.
  EXPECT_EQ(sizes, (std::vector<int>{4, 4, 2}));
  EXPECT_EQ(o.resplit_drops().at("too_many_labels"), 3u);
  EXPECT_EQ(o.last_sequence(), 10u);
}

TEST(OutboxTest, WelcomeWithASmallerMessageSizeSplitsByBytes) {
  Outbox o(Max(100));
  o.Add(BigBatch(100, 3));
  v1::Welcome w = W(0);
  w.set_max_message_bytes(1024);
  o.OnWelcome(w);
  int total = 0, messages = 0;
  while (auto m = o.NextToSend()) {
    EXPECT_LE(m->ByteSizeLong(), 1024u);
    total += m->metrics().samples_size();
    ++messages;
  }
  EXPECT_EQ(total, 100);
  EXPECT_GT(messages, 2);
}

}  // namespace
}  // namespace vigie::agent
