// The agent's bounded buffer of durable messages (MetricBatch, CheckResults, ServiceEvent)
// waiting for the control plane's Ack, with the sequence numbers that make resending safe, and
// optionally mirrored in an on-disk spool.
#ifndef VIGIE_AGENT_OUTBOX_H_
#define VIGIE_AGENT_OUTBOX_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "agent/batching.h"
#include "agent/spool.h"
#include "common/mutex.h"
#include "vigie/v1/agent.pb.h"

namespace vigie::agent {

struct OutboxOptions {
  // Bounds: adding beyond either drops the oldest message and counts it.
  size_t max_pending = 1000;
  size_t max_pending_bytes = 64 << 20;
  // The agent's own limits; each Welcome may tighten them.
  SendLimits limits;
  // Optional; must outlive the outbox. Every message is written to it before it can be sent.
  Spool* spool = nullptr;
};

// Sequence numbers: an agent that has never been numbered (no spool, or a new one) does not
// know where its numbering should start, so messages added before the first Welcome wait
// unnumbered; the first Welcome's committed sequence C makes them C+1, C+2, ... and every later
// message gets the next number at once. With a spool the counter is durable: a restarted agent
// goes on from where it was. Messages with a sequence <= the committed one are never sent again.
//
// Refusals: Reject{N} removes exactly message N; everything around it is sent as usual.
//
// Thread-safe.
class Outbox {
 public:
  explicit Outbox(OutboxOptions options);

  // Takes back what the spool held at start (call before anything else).
  void Restore(Spool::Recovered recovered);

  // Takes a durable message (metrics, checks or service_event payload) and returns it, shared:
  // the outbox never changes a message while anyone else holds it (it copies first).
  // `bytes` is its serialized size if the caller knows it (0 = compute it).
  std::shared_ptr<const v1::AgentMessage> Add(v1::AgentMessage message, size_t bytes = 0);

  // A new stream got `welcome`: adopts its limits (re-splitting buffered batches that exceed
  // them), numbers waiting messages if needed, forgets those at or below its committed
  // sequence, and rewinds the send cursor so everything above it goes out again.
  void OnWelcome(const v1::Welcome& welcome);
  // Cumulative Ack: forgets every message with sequence <= `sequence`.
  void OnAck(uint64_t sequence);
  // The control plane refused message `sequence` for good: forgets it and counts it. False if
  // no such message is held.
  bool OnReject(uint64_t sequence);

  // Drops the oldest message waiting for an Ack and counts it in dropped(): for a control
  // plane without Reject that ends the stream with INVALID_ARGUMENT instead. False if none.
  bool DropOldest();

  // The next numbered message not yet handed to the current stream, or null; advances the
  // cursor. Shared, not copied: the outbox never changes a message it has handed out (a
  // renumbering copies it first).
  std::shared_ptr<const v1::AgentMessage> NextToSend();

  // The limits in force: the agent's own, tightened by the last Welcome.
  SendLimits limits() const;

  size_t pending() const;
  size_t pending_bytes() const;
  // Messages dropped because a bound was reached, and refused by the control plane.
  uint64_t dropped() const;
  uint64_t rejected() const;
  // Samples dropped when buffered batches were re-split for a tighter Welcome, by reason.
  DropCounts resplit_drops() const;
  // Failed spool writes (the message is still sent from memory), and the spool's size.
  uint64_t spool_errors() const;
  uint64_t spool_bytes() const;
  // Highest sequence assigned (0 before the first numbering) and highest acknowledged.
  uint64_t last_sequence() const;
  uint64_t acked_sequence() const;

 private:
  struct Entry {
    std::shared_ptr<v1::AgentMessage> message;
    size_t bytes;
    const v1::AgentMessage& get() const { return *message; }
    // For changing the message (renumbering or re-splitting at a Welcome, which is rare): always
    // a private copy, as a stream or /metrics may still be reading the shared one, and a
    // use_count() of 1 would not order their last reads before these writes.
    v1::AgentMessage& Mutable() {
      message = std::make_shared<v1::AgentMessage>(*message);
      return *message;
    }
  };
  void PushLocked(v1::AgentMessage m, size_t bytes = 0) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<const v1::AgentMessage> AddLocked(v1::AgentMessage message, size_t bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PopFrontLocked(bool count_as_dropped) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EnforceBoundsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Splits buffered batches that exceed limits_; true if anything changed.
  bool ConformLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RewriteSpoolLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SpoolErrorLocked(const absl::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const OutboxOptions options_;
  mutable Mutex mu_;
  std::deque<Entry> pending_ ABSL_GUARDED_BY(mu_);
  size_t pending_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  SendLimits limits_ ABSL_GUARDED_BY(mu_);
  bool numbered_ ABSL_GUARDED_BY(mu_) = false;
  bool spool_stale_ ABSL_GUARDED_BY(mu_) = false;  // the spool's numbering differs from memory
  bool renumber_at_welcome_ ABSL_GUARDED_BY(mu_) = false;  // restored out of order
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t sent_upto_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t acked_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t rejected_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t spool_errors_ ABSL_GUARDED_BY(mu_) = 0;
  bool spool_failing_ ABSL_GUARDED_BY(mu_) = false;
  DropCounts resplit_drops_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vigie::agent

#endif  // VIGIE_AGENT_OUTBOX_H_
