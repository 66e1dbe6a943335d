// The agent's bounded buffer of durable messages (MetricBatch, CheckResults, ServiceEvent)
// waiting for the control plane's Ack, with the sequence numbers that make resending safe.
#ifndef VIGIE_AGENT_OUTBOX_H_
#define VIGIE_AGENT_OUTBOX_H_

#include <cstdint>
#include <deque>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "common/mutex.h"
#include "vigie/v1/agent.pb.h"

namespace vigie::agent {

// Sequence numbers: a fresh agent does not know where its numbering should start, so messages
// added before the first Welcome wait unnumbered; the first Welcome's committed sequence C makes
// them C+1, C+2, ... and every later message gets the next number at once. Messages with a
// sequence <= the committed one are never sent again.
//
// Bound: at most `max_pending` messages. Adding beyond it drops the oldest and counts it; that
// is the only way data is lost, and it shows in dropped().
//
// Thread-safe.
class Outbox {
 public:
  explicit Outbox(size_t max_pending) : max_pending_(max_pending) {}

  // Takes a durable message (metrics, checks or service_event payload).
  void Add(v1::AgentMessage message);

  // A new stream got Welcome{committed}: numbers waiting messages if needed, forgets those at or
  // below `committed`, and rewinds the send cursor so everything above it goes out again.
  void OnWelcome(uint64_t committed);
  // Cumulative Ack: forgets every message with sequence <= `sequence`.
  void OnAck(uint64_t sequence);

  // Drops the oldest message waiting for an Ack and counts it in dropped(): for a message the
  // control plane refuses as invalid, which resending cannot fix. False if there is none.
  bool DropOldest();

  // The next numbered message not yet handed to the current stream, if any; advances the cursor.
  std::optional<v1::AgentMessage> NextToSend();

  size_t pending() const;
  uint64_t dropped() const;
  // Highest sequence assigned (0 before the first Welcome) and highest acknowledged.
  uint64_t last_sequence() const;
  uint64_t acked_sequence() const;

 private:
  const size_t max_pending_;
  mutable Mutex mu_;
  std::deque<v1::AgentMessage> pending_ ABSL_GUARDED_BY(mu_);
  bool numbered_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t sent_upto_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t acked_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace vigie::agent

#endif  // VIGIE_AGENT_OUTBOX_H_
