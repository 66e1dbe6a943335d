// Compact sample storage, the pure part (no database): how a durable batch's samples become
// rows of `sample_blocks`, and the binary array encoding those rows travel in.
//
// A batch's samples, in order, define its *layout*: the list of their series ids (stored once
// per distinct list in `series_layouts`; agents send the same series in the same order almost
// every collection). A block holds up to kMaxBlockValues consecutive values of a batch, the
// position of its first value in the layout, one timestamp, and per-value millisecond offsets
// only when the values do not all share that timestamp. A row stays under PostgreSQL's 2 KB
// TOAST threshold, so it is stored inline, uncompressed, about 8 bytes per value.
#ifndef VIGIE_CONTROLPLANE_SAMPLE_BLOCKS_H_
#define VIGIE_CONTROLPLANE_SAMPLE_BLOCKS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "google/protobuf/repeated_field.h"
#include "vigie/v1/agent.pb.h"

namespace vigie::controlplane {

// 240 doubles: 1,920 bytes of values plus the array and tuple headers, under the 2,032-byte
// TOAST threshold, four rows to a page.
inline constexpr int kMaxBlockValues = 240;
// A block spans at most this much time: a value's offset from the block's timestamp is in
// [0, kMaxBlockSpreadMs). Readers look this far before a range's start.
inline constexpr int64_t kMaxBlockSpreadMs = 3600 * 1000;

struct SampleBlock {
  int64_t ts_ms = 0;  // timestamp of values[0]; no value in the block is earlier
  int first_pos = 0;  // 0-based position of values[0] in the batch's layout
  std::vector<double> values;
  std::vector<int32_t> offsets_ms;  // empty: every value is at ts_ms

  int64_t TimestampAt(size_t i) const { return ts_ms + (offsets_ms.empty() ? 0 : offsets_ms[i]); }
};

// Splits a batch's samples (kept in order) into blocks. A new block starts after
// kMaxBlockValues values, or at a sample earlier than the block's timestamp or
// kMaxBlockSpreadMs or more after it.
std::vector<SampleBlock> SplitIntoBlocks(
    const google::protobuf::RepeatedPtrField<v1::Sample>& samples);

// A series' identity as one string: name, then its labels sorted by name, separated by bytes
// that cannot occur in valid UTF-8 (0xFE, 0xFF), so distinct series never collide. Written into
// `out` (reused across calls: no allocation once it is large enough).
void SeriesKey(const v1::Sample& sample, std::string* out);

// FNV-1a over the ids' little-endian bytes: the same value on every replica and release (stored
// in series_layouts.hash).
int64_t LayoutHash(const std::vector<int64_t>& ids);

// PostgreSQL's binary array format (array_send: big-endian header, then length + value per
// element), for one-dimensional arrays without NULLs. Passed as binary parameters, so no value
// goes through text.
std::string PgBinaryFloat8Array(const std::vector<double>& values);
std::string PgBinaryInt4Array(const std::vector<int32_t>& values);
std::string PgBinaryInt8Array(const std::vector<int64_t>& values);
std::string PgBinaryTextArray(const std::vector<std::string>& values);

// The 5-minute bucket holding `ts_ms`.
inline constexpr int64_t kRollupBucketMs = 5 * 60 * 1000;
inline int64_t RollupBucket(int64_t ts_ms) {
  int64_t b = ts_ms - ts_ms % kRollupBucketMs;
  return ts_ms % kRollupBucketMs < 0 ? b - kRollupBucketMs : b;
}

// Per-series statistics of one bucket, in first-appearance order of the series.
struct RollupStats {
  std::vector<int64_t> series_ids;
  std::vector<double> mins, maxs, sums, lasts;
  std::vector<int32_t> counts;
  std::vector<int64_t> last_ts;  // timestamp of `lasts` (not stored)
};
// Accumulates one bucket's samples. NaN values are counted and can be the last value; they
// leave min and max alone and make the sum NaN (as in PromQL's sum_over_time).
class RollupBuilder {
 public:
  void Add(int64_t series_id, int64_t ts_ms, double value);
  const RollupStats& stats() const { return stats_; }
  bool empty() const { return stats_.series_ids.empty(); }

 private:
  RollupStats stats_;
  absl::flat_hash_map<int64_t, size_t> index_;  // series id -> position in stats_
};

}  // namespace vigie::controlplane

#endif  // VIGIE_CONTROLPLANE_SAMPLE_BLOCKS_H_
