// Building durable metric messages within the limits agreed with the control plane.
#ifndef VIGIE_AGENT_BATCHING_H_
#define VIGIE_AGENT_BATCHING_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "vigie/v1/agent.pb.h"

namespace vigie::agent {

// What one durable message may hold. The agent starts from its own config and takes the
// tighter of that and each Welcome's limits.
struct SendLimits {
  size_t max_samples_per_batch = 5000;
  size_t max_message_bytes = 1 << 20;
  size_t max_labels_per_sample = 32;

  // The tighter of these and the ones `welcome` states (0 there = not stated).
  SendLimits Tighter(const v1::Welcome& welcome) const;
  bool operator==(const SendLimits& o) const {
    return max_samples_per_batch == o.max_samples_per_batch &&
           max_message_bytes == o.max_message_bytes &&
           max_labels_per_sample == o.max_labels_per_sample;
  }
};

// Samples dropped, by reason (the kReason* values of common/agent_message.h, or "too_large"
// for a sample that cannot fit in any message on its own).
using DropCounts = std::map<std::string, uint64_t>;
inline constexpr char kReasonTooLarge[] = "too_large";

// Splits `samples` into MetricBatch messages (sequence unset), in order, each within
// `limits` by sample count and by serialized size. Samples with more labels than the limit or
// too large on their own are dropped and counted in `drops`.
// `sizes`, if given, receives each batch's serialized size (an upper bound, to the byte
// framing), so nobody walks the samples again to learn it.
std::vector<v1::AgentMessage> BuildBatches(std::vector<v1::Sample> samples,
                                           const SendLimits& limits, DropCounts* drops,
                                           std::vector<size_t>* sizes = nullptr);

// True if durable message `m` is within `limits` (count, size and labels per sample).
bool WithinLimits(const v1::AgentMessage& m, const SendLimits& limits);
// The same without the size (which takes a walk over every sample).
bool FitsCounts(const v1::AgentMessage& m, const SendLimits& limits);

}  // namespace vigie::agent

#endif  // VIGIE_AGENT_BATCHING_H_
