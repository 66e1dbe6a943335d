#include "agent/batching.h"

#include "gtest/gtest.h"

namespace vigie::agent {
namespace {

v1::Sample S(const std::string& name, int labels, size_t value_bytes = 1) {
  v1::Sample s;
  s.set_name(name);
  for (int i = 0; i < labels; ++i) {
    (*s.mutable_labels())["l" + std::to_string(i)] = std::string(value_bytes, 'x');
  }
  return s;
}

TEST(BuildBatchesTest, SplitsByCountAndKeepsOrder) {
  std::vector<v1::Sample> in;
  for (int i = 0; i < 7; ++i) in.push_back(S("m" + std::to_string(i), 0));
  SendLimits l;
  l.max_samples_per_batch = 3;
  DropCounts drops;
  auto out = BuildBatches(in, l, &drops);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].metrics().samples_size(), 3);
  EXPECT_EQ(out[2].metrics().samples_size(), 1);
  EXPECT_EQ(out[2].metrics().samples(0).name(), "m6");
  EXPECT_TRUE(drops.empty());
}

TEST(BuildBatchesTest, SplitsByBytesEvenWithASequenceSet) {
  std::vector<v1::Sample> in;
  for (int i = 0; i < 50; ++i) in.push_back(S("metric", 2, 40));
  SendLimits l;
  l.max_message_bytes = 1000;
  DropCounts drops;
  std::vector<size_t> sizes;
  auto out = BuildBatches(in, l, &drops, &sizes);
  ASSERT_EQ(sizes.size(), out.size());
  int total = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    auto& m = out[i];
    m.mutable_metrics()->set_sequence(UINT64_MAX);  // the largest a sequence can add
    EXPECT_LE(m.ByteSizeLong(), sizes[i]) << "the reported size is an upper bound";
    EXPECT_LE(sizes[i], 1000u);
    EXPECT_LE(m.ByteSizeLong(), 1000u);
    EXPECT_TRUE(WithinLimits(m, l));
    total += m.metrics().samples_size();
  }
  EXPECT_EQ(total, 50);
}

TEST(BuildBatchesTest, DropsWhatCannotFitAndCountsIt) {
  SendLimits l;
  l.max_message_bytes = 1024;
  l.max_labels_per_sample = 2;
  DropCounts drops;
  auto out = BuildBatches({S("ok", 1), S("huge", 1, 2000), S("labels", 3), S("ok2", 0)}, l, &drops);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].metrics().samples_size(), 2);
  EXPECT_EQ(drops["too_large"], 1u);
  EXPECT_EQ(drops["too_many_labels"], 1u);
}

TEST(SendLimitsTest, TheTighterWinsAndZeroMeansUnstated) {
  SendLimits own;
  v1::Welcome w;
  w.set_max_samples_per_batch(100);
  w.set_max_message_bytes(8 << 20);  // looser than the agent's own 1 MiB
  SendLimits l = own.Tighter(w);
  EXPECT_EQ(l.max_samples_per_batch, 100u);
  EXPECT_EQ(l.max_message_bytes, size_t{1} << 20);
  EXPECT_EQ(l.max_labels_per_sample, 32u);
}

}  // namespace
}  // namespace vigie::agent
