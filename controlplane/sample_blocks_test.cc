#include "controlplane/sample_blocks.h"

#include <cmath>
#include <cstring>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigie::controlplane {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

google::protobuf::RepeatedPtrField<v1::Sample> Samples(const std::vector<int64_t>& timestamps) {
  google::protobuf::RepeatedPtrField<v1::Sample> out;
  double v = 0;
  for (int64_t ts : timestamps) {
    v1::Sample* s = out.Add();
    s->set_name("m");
    s->set_timestamp_ms(ts);
    s->set_value(v++);
  }
  return out;
}

TEST(SplitIntoBlocksTest, OneTimestampNeedsNoOffsets) {
  auto blocks = SplitIntoBlocks(Samples({1000, 1000, 1000}));
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_EQ(blocks[0].ts_ms, 1000);
  EXPECT_EQ(blocks[0].first_pos, 0);
  EXPECT_THAT(blocks[0].values, ElementsAre(0, 1, 2));
  EXPECT_THAT(blocks[0].offsets_ms, IsEmpty());
}

TEST(SplitIntoBlocksTest, LaterTimestampsGetOffsetsFromTheFirst) {
  auto blocks = SplitIntoBlocks(Samples({1000, 1000, 1500, 1001}));
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_THAT(blocks[0].offsets_ms, ElementsAre(0, 0, 500, 1));
  EXPECT_EQ(blocks[0].TimestampAt(2), 1500);
}

TEST(SplitIntoBlocksTest, EarlierOrFarLaterSampleStartsANewBlock) {
  // 999 is before the block's timestamp; 1000 + 1h is beyond its spread.
  auto blocks = SplitIntoBlocks(Samples({1000, 999, 999 + kMaxBlockSpreadMs, 1000}));
  // The last 1000 is before the third block's timestamp: a fourth block.
  ASSERT_EQ(blocks.size(), 4u);
  EXPECT_EQ(blocks[0].first_pos, 0);
  EXPECT_EQ(blocks[1].first_pos, 1);
  EXPECT_EQ(blocks[1].ts_ms, 999);
  EXPECT_THAT(blocks[1].values, ElementsAre(1));
  EXPECT_EQ(blocks[2].first_pos, 2);
  EXPECT_EQ(blocks[2].ts_ms, 999 + kMaxBlockSpreadMs);
  EXPECT_EQ(blocks[3].first_pos, 3);
  EXPECT_EQ(blocks[3].ts_ms, 1000);
}

TEST(SplitIntoBlocksTest, SplitsAtTheValueLimitAndKeepsPositions) {
  std::vector<int64_t> ts(kMaxBlockValues * 2 + 3, 5000);
  auto blocks = SplitIntoBlocks(Samples(ts));
  ASSERT_EQ(blocks.size(), 3u);
  EXPECT_EQ(blocks[1].first_pos, kMaxBlockValues);
  EXPECT_EQ(blocks[2].first_pos, 2 * kMaxBlockValues);
  EXPECT_EQ(blocks[2].values.size(), 3u);
  EXPECT_EQ(blocks[2].values[0], 2.0 * kMaxBlockValues);
}

TEST(SplitIntoBlocksTest, EmptyBatchHasNoBlocks) {
  EXPECT_THAT(SplitIntoBlocks(Samples({})), IsEmpty());
}

TEST(SeriesKeyTest, LabelOrderDoesNotMatterAndNamesCannotCollide) {
  v1::Sample a, b, c;
  a.set_name("m");
  (*a.mutable_labels())["x"] = "1";
  (*a.mutable_labels())["y"] = "2";
  b.set_name("m");
  (*b.mutable_labels())["y"] = "2";
  (*b.mutable_labels())["x"] = "1";
  // The same characters split differently between label name and value.
  c.set_name("m");
  (*c.mutable_labels())["x1"] = "";
  (*c.mutable_labels())["y"] = "2";
  std::string ka, kb, kc;
  SeriesKey(a, &ka);
  SeriesKey(b, &kb);
  SeriesKey(c, &kc);
  EXPECT_EQ(ka, kb);
  EXPECT_NE(ka, kc);
  v1::Sample d;
  d.set_name("mx");
  std::string kd;
  SeriesKey(d, &kd);
  EXPECT_NE(kd, ka);
}

TEST(LayoutHashTest, StableAndOrderSensitive) {
  // A fixed value: the hash is stored, so it must never change between releases.
  EXPECT_EQ(LayoutHash({}), static_cast<int64_t>(14695981039346656037ull));
  EXPECT_EQ(LayoutHash({1, 2}), LayoutHash({1, 2}));
  EXPECT_NE(LayoutHash({1, 2}), LayoutHash({2, 1}));
}

uint32_t BE32(const std::string& s, size_t at) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(s[at])) << 24) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[at + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[at + 2])) << 8) |
         static_cast<uint32_t>(static_cast<uint8_t>(s[at + 3]));
}

TEST(PgBinaryArrayTest, Float8LayoutMatchesArraySend) {
  std::string a = PgBinaryFloat8Array({1.5, -std::numeric_limits<double>::infinity()});
  ASSERT_EQ(a.size(), 20u + 2 * 12);
  EXPECT_EQ(BE32(a, 0), 1u);    // dimensions
  EXPECT_EQ(BE32(a, 4), 0u);    // no NULLs
  EXPECT_EQ(BE32(a, 8), 701u);  // float8
  EXPECT_EQ(BE32(a, 12), 2u);   // length
  EXPECT_EQ(BE32(a, 16), 1u);   // lower bound
  EXPECT_EQ(BE32(a, 20), 8u);   // element length
  uint64_t bits = (static_cast<uint64_t>(BE32(a, 24)) << 32) | BE32(a, 28);
  double v;
  std::memcpy(&v, &bits, 8);
  EXPECT_EQ(v, 1.5);
}

TEST(PgBinaryArrayTest, TextAndIntegers) {
  std::string t = PgBinaryTextArray({"ab", ""});
  EXPECT_EQ(BE32(t, 8), 25u);
  EXPECT_EQ(BE32(t, 20), 2u);
  EXPECT_EQ(t.substr(24, 2), "ab");
  EXPECT_EQ(BE32(t, 26), 0u);
  EXPECT_EQ(t.size(), 30u);
  std::string i4 = PgBinaryInt4Array({-1});
  EXPECT_EQ(BE32(i4, 8), 23u);
  EXPECT_EQ(BE32(i4, 24), 0xffffffffu);
  std::string i8 = PgBinaryInt8Array({1});
  EXPECT_EQ(BE32(i8, 8), 20u);
  EXPECT_EQ(BE32(i8, 28), 1u);
}

TEST(RollupBucketTest, FloorsToFiveMinutes) {
  EXPECT_EQ(RollupBucket(0), 0);
  EXPECT_EQ(RollupBucket(kRollupBucketMs - 1), 0);
  EXPECT_EQ(RollupBucket(kRollupBucketMs), kRollupBucketMs);
  EXPECT_EQ(RollupBucket(-1), -kRollupBucketMs);
}

TEST(RollupBuilderTest, MinMaxSumLastCountPerSeries) {
  RollupBuilder b;
  b.Add(7, 2000, 5);
  b.Add(9, 1000, 1);
  b.Add(7, 1000, 3);  // earlier: not the last
  b.Add(7, 3000, 4);
  const RollupStats& s = b.stats();
  EXPECT_THAT(s.series_ids, ElementsAre(7, 9));
  EXPECT_THAT(s.mins, ElementsAre(3, 1));
  EXPECT_THAT(s.maxs, ElementsAre(5, 1));
  EXPECT_THAT(s.sums, ElementsAre(12, 1));
  EXPECT_THAT(s.lasts, ElementsAre(4, 1));
  EXPECT_THAT(s.counts, ElementsAre(3, 1));
}

TEST(RollupBuilderTest, NaNCountsButLeavesMinMaxAlone) {
  RollupBuilder b;
  b.Add(1, 1000, std::nan(""));
  b.Add(1, 2000, 2);
  b.Add(1, 3000, std::numeric_limits<double>::infinity());
  const RollupStats& s = b.stats();
  EXPECT_EQ(s.mins[0], 2);
  EXPECT_EQ(s.maxs[0], std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(s.sums[0]));
  EXPECT_EQ(s.counts[0], 3);
}

}  // namespace
}  // namespace vigie::controlplane
