#include "agent/batching.h"

#include <algorithm>

#include "common/agent_message.h"

namespace vigie::agent {
namespace {

// Upper bounds of the framing protobuf adds: a tag and a length of at most 5 bytes around each
// sample, and around the batch plus its sequence field (1 + 10 bytes).
constexpr size_t kPerSampleFraming = 1 + 5;
constexpr size_t kMessageFraming = (1 + 5) + (1 + 10);

size_t Tighter(size_t own, uint32_t stated) {
  return stated == 0 ? own : std::min(own, static_cast<size_t>(stated));
}

}  // namespace

SendLimits SendLimits::Tighter(const v1::Welcome& w) const {
  SendLimits l;
  l.max_samples_per_batch = agent::Tighter(max_samples_per_batch, w.max_samples_per_batch());
  l.max_message_bytes = agent::Tighter(max_message_bytes, w.max_message_bytes());
  l.max_labels_per_sample = agent::Tighter(max_labels_per_sample, w.max_labels_per_sample());
  return l;
}

std::vector<v1::AgentMessage> BuildBatches(std::vector<v1::Sample> samples,
                                           const SendLimits& limits, DropCounts* drops,
                                           std::vector<size_t>* sizes) {
  std::vector<v1::AgentMessage> out;
  v1::MetricBatch* batch = nullptr;
  size_t bytes = 0;
  const size_t budget =
      limits.max_message_bytes > kMessageFraming ? limits.max_message_bytes - kMessageFraming : 0;
  for (v1::Sample& s : samples) {
    if (static_cast<size_t>(s.labels_size()) > limits.max_labels_per_sample) {
      ++(*drops)[kReasonTooManyLabels];
      continue;
    }
    const size_t cost = s.ByteSizeLong() + kPerSampleFraming;
    if (cost > budget) {
      ++(*drops)[kReasonTooLarge];
      continue;
    }
    if (batch == nullptr || bytes + cost > budget ||
        static_cast<size_t>(batch->samples_size()) >= limits.max_samples_per_batch) {
      if (sizes != nullptr && batch != nullptr) sizes->push_back(bytes + kMessageFraming);
      batch = out.emplace_back().mutable_metrics();
      bytes = 0;
    }
    bytes += cost;
    *batch->add_samples() = std::move(s);
  }
  if (sizes != nullptr && batch != nullptr) sizes->push_back(bytes + kMessageFraming);
  return out;
}

bool WithinLimits(const v1::AgentMessage& m, const SendLimits& limits) {
  return m.ByteSizeLong() <= limits.max_message_bytes && FitsCounts(m, limits);
}

bool FitsCounts(const v1::AgentMessage& m, const SendLimits& limits) {
  if (!m.has_metrics()) return true;
  if (static_cast<size_t>(m.metrics().samples_size()) > limits.max_samples_per_batch) {
    return false;
  }
  for (const v1::Sample& s : m.metrics().samples()) {
    if (static_cast<size_t>(s.labels_size()) > limits.max_labels_per_sample) return false;
  }
  return true;
}

}  // namespace vigie::agent
