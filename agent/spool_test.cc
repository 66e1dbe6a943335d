#include "agent/spool.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "agent/outbox.h"
#include "common/agent_message.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigie::agent {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::vigie::testing::IsOk;
using ::vigie::testing::StatusIs;

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vigie-spool-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    options_.directory = dir_ + "/spool";
    options_.fsync = false;  // tests only; the default is on
  }
  void TearDown() override {
    if (mounted_) {
      EXPECT_EQ(system(("umount " + options_.directory).c_str()), 0);
    }
    fs::remove_all(dir_);
  }

  static v1::AgentMessage M(uint64_t seq, double marker = 0) {
    v1::AgentMessage m;
    m.mutable_metrics()->set_sequence(seq);
    v1::Sample* s = m.mutable_metrics()->add_samples();
    s->set_name("m");
    s->set_value(marker);
    return m;
  }
  std::vector<uint64_t> Seqs(const Spool::Recovered& r) {
    std::vector<uint64_t> out;
    for (const auto& m : r.messages) out.push_back(DurableSequence(m));
    return out;
  }
  std::vector<std::string> Segments() {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(options_.directory)) {
      if (e.path().extension() == ".seg") out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  std::string dir_;
  SpoolOptions options_;
  bool mounted_ = false;
};

TEST_F(SpoolTest, WhatIsAppendedComesBackAfterARestartWithTheCounter) {
  {
    Spool::Recovered r;
    auto spool = Spool::Open(options_, &r);
    ASSERT_THAT(spool, IsOk());
    EXPECT_TRUE(r.messages.empty());
    EXPECT_EQ(r.next_sequence, 0u);
    for (uint64_t i = 1; i <= 3; ++i) ASSERT_THAT((*spool)->Append(M(i, i), i + 1), IsOk());
  }
  Spool::Recovered r;
  auto spool = Spool::Open(options_, &r);
  ASSERT_THAT(spool, IsOk());
  EXPECT_EQ(Seqs(r), (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(r.messages[2].metrics().samples(0).value(), 3);
  EXPECT_EQ(r.next_sequence, 4u);
  EXPECT_EQ(r.corrupt, 0u);
}

TEST_F(SpoolTest, TheCounterSurvivesEvenWhenEverythingWasAcknowledged) {
  {
    Spool::Recovered r;
    auto spool = Spool::Open(options_, &r);
    ASSERT_THAT(spool, IsOk());
    for (uint64_t i = 1; i <= 50; ++i) {
      v1::AgentMessage m = M(i);
      m.mutable_metrics()->mutable_samples(0)->set_name(std::string(8000, 'a'));
      ASSERT_THAT((*spool)->Append(m, i + 1), IsOk());
    }
    (*spool)->Forget(50, 51);
    EXPECT_LT((*spool)->bytes(), 64u << 10) << "acknowledged segments are deleted";
  }
  Spool::Recovered r;
  ASSERT_THAT(Spool::Open(options_, &r), IsOk());
  // Whatever records remain are resent and dropped by the Welcome; the numbering goes on.
  EXPECT_EQ(r.next_sequence, 51u);
}

TEST_F(SpoolTest, ATornTailIsSkippedAndCounted) {
  {
    Spool::Recovered r;
    auto spool = Spool::Open(options_, &r);
    for (uint64_t i = 1; i <= 3; ++i) ASSERT_THAT((*spool)->Append(M(i), i + 1), IsOk());
  }
  const std::string seg = Segments().back();
  fs::resize_file(seg, fs::file_size(seg) - 3);  // a power cut in the middle of the last record
  Spool::Recovered r;
  ASSERT_THAT(Spool::Open(options_, &r), IsOk());
  EXPECT_EQ(Seqs(r), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(r.corrupt, 1u);
}

TEST_F(SpoolTest, AFlippedByteLosesOnlyThatRecord) {
  {
    Spool::Recovered r;
    auto spool = Spool::Open(options_, &r);
    for (uint64_t i = 1; i <= 5; ++i) ASSERT_THAT((*spool)->Append(M(i, i), i + 1), IsOk());
  }
  const std::string seg = Segments().back();
  std::string data;
  {
    std::ifstream in(seg, std::ios::binary);
    data.assign(std::istreambuf_iterator<char>(in), {});
  }
  // The third record's payload: header (28) + two records + its 9-byte record header + 3.
  const size_t record = EncodeSpoolRecord(M(1, 1)).size();
  data[28 + 2 * record + 9 + 3] ^= 0x10;
  std::ofstream(seg, std::ios::binary | std::ios::trunc) << data;
  Spool::Recovered r;
  ASSERT_THAT(Spool::Open(options_, &r), IsOk());
  EXPECT_EQ(Seqs(r), (std::vector<uint64_t>{1, 2, 4, 5}));
  EXPECT_EQ(r.corrupt, 1u);
  EXPECT_EQ(r.next_sequence, 6u);
}

TEST_F(SpoolTest, GarbageFilesNeverStopTheAgent) {
  fs::create_directories(options_.directory);
  std::ofstream(options_.directory + "/00000000000000000001.seg") << "not a spool at all";
  std::ofstream(options_.directory + "/00000000000000000002.seg");  // empty
  Spool::Recovered r;
  auto spool = Spool::Open(options_, &r);
  ASSERT_THAT(spool, IsOk());
  EXPECT_TRUE(r.messages.empty());
  EXPECT_EQ(r.corrupt, 2u);
  EXPECT_THAT((*spool)->Append(M(1), 2), IsOk());
}

TEST_F(SpoolTest, OneAgentPerSpool) {
  Spool::Recovered r1, r2;
  auto first = Spool::Open(options_, &r1);
  ASSERT_THAT(first, IsOk());
  EXPECT_THAT(Spool::Open(options_, &r2), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                   HasSubstr("in use by another agent")));
}

TEST_F(SpoolTest, RewriteReplacesEverythingEvenAfterACrashLeftTheOld) {
  {
    Spool::Recovered r;
    auto spool = Spool::Open(options_, &r);
    for (uint64_t i = 0; i < 3; ++i) ASSERT_THAT((*spool)->Append(M(0, i), 0), IsOk());
    std::deque<v1::AgentMessage> renumbered = {M(11, 0), M(12, 1), M(13, 2)};
    ASSERT_THAT((*spool)->Rewrite(renumbered, 14), IsOk());
    ASSERT_THAT((*spool)->Append(M(14, 3), 15), IsOk());
  }
  Spool::Recovered r;
  ASSERT_THAT(Spool::Open(options_, &r), IsOk());
  EXPECT_EQ(Seqs(r), (std::vector<uint64_t>{11, 12, 13, 14}));
  EXPECT_EQ(r.next_sequence, 15u);
}

// The bound is the outbox's: over it, the oldest eighth goes, from memory and from disk, also
// right after a rewrite left everything in one segment (the first Welcome renumbers).
TEST_F(SpoolTest, OverTheBoundOnlyTheOldestGo) {
  options_.max_bytes = 256 << 10;
  Spool::Recovered r;
  auto spool = Spool::Open(options_, &r);
  ASSERT_THAT(spool, IsOk());
  OutboxOptions oo;
  oo.max_pending = 100000;
  oo.max_pending_bytes = options_.max_bytes;
  oo.spool = spool->get();
  Outbox outbox(oo);
  auto big = [](double marker) {
    v1::AgentMessage m = M(0, marker);
    m.mutable_metrics()->mutable_samples(0)->set_name(std::string(1000, 'a'));
    return m;
  };
  for (int i = 0; i < 200; ++i) outbox.Add(big(i));  // ~200 KiB, unnumbered
  v1::Welcome w;
  w.set_committed_sequence(0);
  outbox.OnWelcome(w);  // renumbers 1..200 and rewrites the spool as one segment
  EXPECT_EQ(outbox.pending(), 200u);
  for (int i = 200; i < 300; ++i) {
    outbox.Add(big(i));
    EXPECT_LE((*spool)->bytes(), options_.max_bytes + 4096);
  }
  // Not everything: about an eighth per overflow.
  EXPECT_GT(outbox.pending(), 150u);
  EXPECT_GT(outbox.dropped(), 0u);
  EXPECT_EQ(outbox.pending() + outbox.dropped(), 300u);
  // What the spool holds after a restart is what memory held.
  const size_t held = outbox.pending();
  const uint64_t last = outbox.last_sequence();
  spool->reset();
  Spool::Recovered again;
  ASSERT_THAT(Spool::Open(options_, &again), IsOk());
  uint64_t above = 0;
  for (const auto& m : again.messages) above += DurableSequence(m) > last - held ? 1 : 0;
  EXPECT_EQ(above, held);
  EXPECT_EQ(again.next_sequence, last + 1);
}

// Unnumbered records after numbered ones (a crash while renumbering) are all numbered afresh
// at the next Welcome, so the send order stays strictly increasing.
TEST_F(SpoolTest, OutOfOrderRecordsAreRenumberedAtWelcome) {
  Spool::Recovered r;
  {
    auto spool = Spool::Open(options_, &r);
    ASSERT_THAT((*spool)->Append(M(7, 1), 8), IsOk());
    ASSERT_THAT((*spool)->Append(M(0, 2), 8), IsOk());
    ASSERT_THAT((*spool)->Append(M(5, 3), 8), IsOk());
  }
  Spool::Recovered again;
  auto spool = Spool::Open(options_, &again);
  ASSERT_THAT(spool, IsOk());
  OutboxOptions oo;
  oo.spool = spool->get();
  Outbox outbox(oo);
  outbox.Restore(std::move(again));
  v1::Welcome w;
  w.set_committed_sequence(3);
  outbox.OnWelcome(w);
  std::vector<std::pair<uint64_t, double>> sent;
  while (auto m = outbox.NextToSend()) {
    sent.emplace_back(m->metrics().sequence(), m->metrics().samples(0).value());
  }
  EXPECT_EQ(sent, (std::vector<std::pair<uint64_t, double>>{{4, 1}, {5, 2}, {6, 3}}));
}

TEST_F(SpoolTest, AFullDiskFailsTheAppendAndLeavesNoTornRecord) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to mount a tmpfs";
  fs::create_directories(options_.directory);
  if (system(("mount -t tmpfs -o size=64k tmpfs " + options_.directory).c_str()) != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here";
  }
  mounted_ = true;
  {
    Spool::Recovered r;
    options_.max_bytes = 1 << 30;  // the disk fills before the bound
    auto spool = Spool::Open(options_, &r);
    ASSERT_THAT(spool, IsOk());
    int ok = 0, failed = 0;
    for (uint64_t i = 1; i <= 100; ++i) {
      v1::AgentMessage m = M(i);
      m.mutable_metrics()->mutable_samples(0)->set_name(std::string(3000, 'a'));
      ((*spool)->Append(m, i + 1).ok() ? ok : failed)++;
    }
    EXPECT_GT(ok, 5);
    EXPECT_GT(failed, 0);
  }
  Spool::Recovered r;
  auto spool = Spool::Open(options_, &r);
  ASSERT_THAT(spool, IsOk()) << "a full disk does not stop the agent from starting";
  EXPECT_EQ(r.corrupt, 0u) << "failed appends were cut back";
  EXPECT_GT(r.messages.size(), 5u);
  // Room again (what was held got acknowledged): writing works again.
  (*spool)->Forget(1000, 1001);
  v1::AgentMessage m = M(1001);
  EXPECT_THAT((*spool)->Append(m, 1002), IsOk());
}

}  // namespace
}  // namespace vigie::agent
