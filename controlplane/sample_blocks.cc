#include "controlplane/sample_blocks.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/container/inlined_vector.h"

namespace vigie::controlplane {

std::vector<SampleBlock> SplitIntoBlocks(
    const google::protobuf::RepeatedPtrField<v1::Sample>& samples) {
  std::vector<SampleBlock> blocks;
  SampleBlock* current = nullptr;
  int pos = 0;
  for (const v1::Sample& s : samples) {
    const int64_t ts = s.timestamp_ms();
    const bool fits = current != nullptr &&
                      current->values.size() < static_cast<size_t>(kMaxBlockValues) &&
                      ts >= current->ts_ms && ts - current->ts_ms < kMaxBlockSpreadMs;
    if (!fits) {
      current = &blocks.emplace_back();
      current->ts_ms = ts;
      current->first_pos = pos;
      current->values.reserve(
          std::min<size_t>(kMaxBlockValues, static_cast<size_t>(samples.size() - pos)));
    }
    const auto offset = static_cast<int32_t>(ts - current->ts_ms);
    if (offset != 0 && current->offsets_ms.empty()) {
      current->offsets_ms.assign(current->values.size(), 0);  // the values so far: offset 0
    }
    if (!current->offsets_ms.empty()) current->offsets_ms.push_back(offset);
    current->values.push_back(s.value());
    ++pos;
  }
  return blocks;
}

void SeriesKey(const v1::Sample& sample, std::string* out) {
  out->assign(sample.name());
  // Few labels (at most the agreed limit, 32 by default): a small sort of pointers.
  absl::InlinedVector<const google::protobuf::MapPair<std::string, std::string>*, 16> labels;
  for (const auto& kv : sample.labels()) labels.push_back(&kv);
  std::sort(labels.begin(), labels.end(),
            [](const auto* a, const auto* b) { return a->first < b->first; });
  for (size_t i = 0; i < labels.size(); ++i) {
    out->push_back('\xff');
    out->append(labels[i]->first);
    out->push_back('\xfe');
    out->append(labels[i]->second);
  }
}

int64_t LayoutHash(const std::vector<int64_t>& ids) {
  uint64_t h = 14695981039346656037ull;
  for (int64_t id : ids) {
    auto v = static_cast<uint64_t>(id);
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  }
  return static_cast<int64_t>(h);
}

namespace {

void PutBE32(std::string* out, uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
  out->append(b, 4);
}
void PutBE64(std::string* out, uint64_t v) {
  PutBE32(out, static_cast<uint32_t>(v >> 32));
  PutBE32(out, static_cast<uint32_t>(v));
}

// Header of a one-dimensional array without NULLs: ndim, has-null flag, element type OID,
// then the dimension's length and lower bound (1).
std::string ArrayHeader(uint32_t element_oid, size_t n, size_t element_bytes) {
  std::string out;
  out.reserve(20 + n * (4 + element_bytes));
  PutBE32(&out, 1);
  PutBE32(&out, 0);
  PutBE32(&out, element_oid);
  PutBE32(&out, static_cast<uint32_t>(n));
  PutBE32(&out, 1);
  return out;
}

constexpr uint32_t kFloat8Oid = 701;
constexpr uint32_t kInt4Oid = 23;
constexpr uint32_t kInt8Oid = 20;
constexpr uint32_t kTextOid = 25;

}  // namespace

std::string PgBinaryFloat8Array(const std::vector<double>& values) {
  std::string out = ArrayHeader(kFloat8Oid, values.size(), 8);
  for (double v : values) {
    uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    PutBE32(&out, 8);
    PutBE64(&out, bits);
  }
  return out;
}

std::string PgBinaryInt4Array(const std::vector<int32_t>& values) {
  std::string out = ArrayHeader(kInt4Oid, values.size(), 4);
  for (int32_t v : values) {
    PutBE32(&out, 4);
    PutBE32(&out, static_cast<uint32_t>(v));
  }
  return out;
}

std::string PgBinaryInt8Array(const std::vector<int64_t>& values) {
  std::string out = ArrayHeader(kInt8Oid, values.size(), 8);
  for (int64_t v : values) {
    PutBE32(&out, 8);
    PutBE64(&out, static_cast<uint64_t>(v));
  }
  return out;
}

std::string PgBinaryTextArray(const std::vector<std::string>& values) {
  size_t bytes = 0;
  for (const auto& v : values) bytes += v.size();
  std::string out = ArrayHeader(kTextOid, values.size(), 0);
  out.reserve(out.size() + bytes + 4 * values.size());
  for (const auto& v : values) {
    PutBE32(&out, static_cast<uint32_t>(v.size()));
    out.append(v);
  }
  return out;
}

void RollupBuilder::Add(int64_t series_id, int64_t ts_ms, double value) {
  auto [it, inserted] = index_.try_emplace(series_id, stats_.series_ids.size());
  RollupStats& s = stats_;
  if (inserted) {
    s.series_ids.push_back(series_id);
    const double nan = std::nan("");
    s.mins.push_back(std::isnan(value) ? nan : value);
    s.maxs.push_back(std::isnan(value) ? nan : value);
    s.sums.push_back(value);
    s.lasts.push_back(value);
    s.counts.push_back(1);
    s.last_ts.push_back(ts_ms);
    return;
  }
  const size_t i = it->second;
  if (!std::isnan(value)) {
    if (std::isnan(s.mins[i]) || value < s.mins[i]) s.mins[i] = value;
    if (std::isnan(s.maxs[i]) || value > s.maxs[i]) s.maxs[i] = value;
  }
  s.sums[i] += value;
  ++s.counts[i];
  if (ts_ms >= s.last_ts[i]) {
    s.lasts[i] = value;
    s.last_ts[i] = ts_ms;
  }
}

}  // namespace vigie::controlplane
