#include "controlplane/series_cache.h"

#include "gtest/gtest.h"

namespace vigie::controlplane {
namespace {

std::unique_ptr<AgentSeries> Entry(int series) {
  auto e = std::make_unique<AgentSeries>();
  std::vector<std::string> keys;
  std::vector<int64_t> ids;
  for (int i = 0; i < series; ++i) {
    keys.push_back(
        "node_some_metric_name\xff"
        "label\xfevalue-" +
        std::to_string(i));
    ids.push_back(i + 1);
    e->Add(keys.back(), i + 1);
  }
  e->SetLayout(keys, ids, 42);
  return e;
}

TEST(SeriesCacheTest, TakeReturnsWhatWasPutAndRemovesIt) {
  SeriesCache cache(1 << 20);
  cache.Put("a", Entry(3));
  EXPECT_EQ(cache.agents(), 1u);
  auto e = cache.Take("a");
  EXPECT_EQ(e->layout_id, 42);
  ASSERT_EQ(e->layout.size(), 3u);
  EXPECT_EQ(e->layout[2]->second, 3);
  EXPECT_EQ(cache.agents(), 0u);
  EXPECT_EQ(cache.bytes(), 0u);
  // Unknown agent: an empty entry.
  EXPECT_EQ(cache.Take("b")->layout_id, 0);
}

TEST(SeriesCacheTest, StaysWithinItsBoundEvictingLeastRecentlyUsed) {
  const size_t one = Entry(100)->Bytes();
  SeriesCache cache(one * 3 + 500);
  for (const char* a : {"a", "b", "c"}) cache.Put(a, Entry(100));
  cache.Put("a", cache.Take("a"));  // a is now the most recent
  cache.Put("d", Entry(100));       // evicts b
  EXPECT_LE(cache.bytes(), one * 3 + 500);
  EXPECT_EQ(cache.evictions(), 1u);
  EXPECT_EQ(cache.Take("b")->layout_id, 0);
  EXPECT_EQ(cache.Take("a")->layout_id, 42);
}

TEST(SeriesCacheTest, AnEntryLargerThanTheBoundIsDropped) {
  SeriesCache cache(1 << 20);
  cache.Put("huge", Entry(20000));
  EXPECT_EQ(cache.agents(), 0u);
  EXPECT_EQ(cache.evictions(), 1u);
}

TEST(SeriesCacheTest, BytesGrowWithSeries) {
  EXPECT_GT(Entry(1000)->Bytes(), 10 * Entry(10)->Bytes());
  // About 100 bytes per series of this shape, not kilobytes.
  EXPECT_LT(Entry(1000)->Bytes(), 1000u * 200);
}

}  // namespace
}  // namespace vigie::controlplane
