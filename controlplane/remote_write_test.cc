#include "controlplane/remote_write.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigie::controlplane {
namespace {

TEST(BuildWriteRequestsTest, LabelsSortedWithInstanceAndJobSamplesInTimeOrder) {
  ForwardChunk chunk;
  chunk.agent_id = "web1";
  chunk.series = {{1, {{2000, 2.0}, {1000, 1.0}}}, {2, {{1000, 5.0}}}, {3, {{1000, 7.0}}}};
  absl::flat_hash_map<int64_t, std::map<std::string, std::string>> labels;
  labels[1] = {{"__name__", "node_load1"}};
  labels[2] = {{"__name__", "m"}, {"instance", "own"}, {"zone", "a"}};
  // Series 3 has no labels (deleted with its agent): left out.
  auto requests = BuildWriteRequests(chunk, 1, labels);
  ASSERT_EQ(requests.size(), 1u);
  ASSERT_EQ(requests[0].timeseries_size(), 2);
  const auto& a = requests[0].timeseries(0);
  ASSERT_EQ(a.labels_size(), 3);
  EXPECT_EQ(a.labels(0).name(), "__name__");
  EXPECT_EQ(a.labels(1).name(), "instance");
  EXPECT_EQ(a.labels(1).value(), "web1");
  EXPECT_EQ(a.labels(2).name(), "job");
  EXPECT_EQ(a.labels(2).value(), "vigie");
  ASSERT_EQ(a.samples_size(), 2);
  EXPECT_EQ(a.samples(0).timestamp(), 1000);
  EXPECT_EQ(a.samples(1).value(), 2.0);
  // The series' own instance label wins.
  const auto& b = requests[0].timeseries(1);
  EXPECT_EQ(b.labels(1).value(), "own");
  EXPECT_EQ(b.labels(3).name(), "zone");
}

TEST(BuildWriteRequestsTest, ShardsSplitBySeriesAndKeepEachSeriesWhole) {
  ForwardChunk chunk;
  chunk.agent_id = "a";
  absl::flat_hash_map<int64_t, std::map<std::string, std::string>> labels;
  for (int64_t id = 1; id <= 100; ++id) {
    chunk.series.push_back({id, {{1000, 1.0}, {2000, 2.0}}});
    labels[id] = {{"__name__", "m"}, {"i", std::to_string(id)}};
  }
  auto requests = BuildWriteRequests(chunk, 4, labels);
  ASSERT_EQ(requests.size(), 4u);
  int total = 0;
  for (const auto& r : requests) {
    EXPECT_GT(r.timeseries_size(), 5);  // spread, not all on one shard
    for (const auto& ts : r.timeseries()) EXPECT_EQ(ts.samples_size(), 2);
    total += r.timeseries_size();
  }
  EXPECT_EQ(total, 100);
  // The same series always lands on the same shard.
  auto again = BuildWriteRequests(chunk, 4, labels);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(again[i].SerializeAsString(), requests[i].SerializeAsString());
  }
}

}  // namespace
}  // namespace vigie::controlplane
