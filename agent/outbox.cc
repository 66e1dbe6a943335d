#include "agent/outbox.h"

#include <algorithm>

#include "common/agent_message.h"
#include "common/log.h"
#include "common/mutex.h"

namespace vigie::agent {

Outbox::Outbox(OutboxOptions options) : options_(std::move(options)) {
  MutexLock lock(&mu_);
  limits_ = options_.limits;
}

void Outbox::Restore(Spool::Recovered recovered) {
  MutexLock lock(&mu_);
  if (recovered.next_sequence > 0) {
    numbered_ = true;
    next_sequence_ = recovered.next_sequence;
  }
  // Sequences must increase strictly (the send cursor and Reject binary-search on them). If
  // they do not (unnumbered records beside numbered ones, after a crash in a renumbering), all
  // are numbered afresh at the next Welcome, and the spool rewritten then.
  uint64_t previous = 0;
  bool ordered = true;
  for (const v1::AgentMessage& m : recovered.messages) {
    const uint64_t seq = DurableSequence(m);
    ordered = ordered && (numbered_ ? seq > previous : seq == 0);
    previous = seq;
  }
  for (v1::AgentMessage& m : recovered.messages) {
    if (!ordered) SetDurableSequence(&m, 0);
    PushLocked(std::move(m));
  }
  if (!ordered && numbered_) {
    renumber_at_welcome_ = true;
    spool_stale_ = true;
  }
  EnforceBoundsLocked();
}

void Outbox::PushLocked(v1::AgentMessage m, size_t bytes) {
  if (bytes == 0) bytes = m.ByteSizeLong();
  pending_bytes_ += bytes;
  pending_.push_back(Entry{std::make_shared<v1::AgentMessage>(std::move(m)), bytes});
}

void Outbox::PopFrontLocked(bool count_as_dropped) {
  pending_bytes_ -= pending_.front().bytes;
  pending_.pop_front();
  if (count_as_dropped) ++dropped_;
}

void Outbox::SpoolErrorLocked(const absl::Status& s) {
  ++spool_errors_;
  if (!spool_failing_) {  // once per run of failures, not once per message
    spool_failing_ = true;
    log::Error("spool write failed; messages are kept in memory only until it works again",
               {{"error", s}});
  }
}

std::shared_ptr<const v1::AgentMessage> Outbox::Add(v1::AgentMessage message, size_t bytes) {
  MutexLock lock(&mu_);
  // A size from BuildBatches (bytes != 0) saves walking the batch again; the count and label
  // checks are cheap.
  const bool fits = bytes != 0 ? bytes <= limits_.max_message_bytes && FitsCounts(message, limits_)
                               : WithinLimits(message, limits_);
  if (message.has_metrics() && !fits) {
    // Built under looser limits than a Welcome that arrived meanwhile: split it now.
    std::vector<v1::Sample> samples(
        std::make_move_iterator(message.mutable_metrics()->mutable_samples()->begin()),
        std::make_move_iterator(message.mutable_metrics()->mutable_samples()->end()));
    std::shared_ptr<const v1::AgentMessage> last;
    for (v1::AgentMessage& part : BuildBatches(std::move(samples), limits_, &resplit_drops_)) {
      last = AddLocked(std::move(part), 0);
    }
    return last;
  }
  return AddLocked(std::move(message), bytes);
}

std::shared_ptr<const v1::AgentMessage> Outbox::AddLocked(v1::AgentMessage message, size_t bytes) {
  SetDurableSequence(&message, numbered_ ? next_sequence_++ : 0);
  if (options_.spool != nullptr) {
    if (absl::Status s = options_.spool->Append(message, numbered_ ? next_sequence_ : 0); !s.ok()) {
      SpoolErrorLocked(s);
    } else if (spool_failing_) {
      spool_failing_ = false;
      log::Info("spool writes work again");
    }
  }
  PushLocked(std::move(message), bytes);
  std::shared_ptr<const v1::AgentMessage> added = pending_.back().message;
  EnforceBoundsLocked();
  return added;
}

void Outbox::EnforceBoundsLocked() {
  if (options_.spool != nullptr && options_.spool->bytes() > options_.max_pending_bytes) {
    // Over the spool's bound: drop the oldest eighth from memory, then from disk. Whole
    // segments holding only dropped (or acknowledged) messages are deleted; if the spool is
    // still over (one large segment, as a rewrite leaves), it is rewritten to what memory holds.
    uint64_t highest_dropped = 0;
    while (!pending_.empty() && pending_bytes_ > options_.max_pending_bytes / 8 * 7) {
      highest_dropped = std::max(highest_dropped, DurableSequence(pending_.front().get()));
      PopFrontLocked(/*count_as_dropped=*/true);
    }
    if (!spool_stale_ && highest_dropped > 0) {
      options_.spool->Forget(std::max(acked_, highest_dropped), next_sequence_);
    }
    if (options_.spool->bytes() > options_.max_pending_bytes) RewriteSpoolLocked();
  }
  while (!pending_.empty() &&
         (pending_.size() > options_.max_pending || pending_bytes_ > options_.max_pending_bytes)) {
    PopFrontLocked(/*count_as_dropped=*/true);
  }
}

bool Outbox::ConformLocked() {
  bool fits = true;
  for (const Entry& e : pending_) fits = fits && WithinLimits(e.get(), limits_);
  if (fits) return false;
  std::deque<Entry> old;
  old.swap(pending_);
  pending_bytes_ = 0;
  for (Entry& e : old) {
    if (WithinLimits(e.get(), limits_) || !e.get().has_metrics()) {
      pending_bytes_ += e.bytes;  // kept as it is: no copy, no second size walk
      pending_.push_back(std::move(e));
      continue;
    }
    v1::AgentMessage& m = e.Mutable();
    std::vector<v1::Sample> samples(
        std::make_move_iterator(m.mutable_metrics()->mutable_samples()->begin()),
        std::make_move_iterator(m.mutable_metrics()->mutable_samples()->end()));
    for (v1::AgentMessage& part : BuildBatches(std::move(samples), limits_, &resplit_drops_)) {
      PushLocked(std::move(part));
    }
  }
  return true;
}

void Outbox::RewriteSpoolLocked() {
  if (options_.spool == nullptr) return;
  std::deque<v1::AgentMessage> all;
  for (const Entry& e : pending_) all.push_back(e.get());
  if (absl::Status s = options_.spool->Rewrite(all, numbered_ ? next_sequence_ : 0); !s.ok()) {
    SpoolErrorLocked(s);
    return;
  }
  spool_stale_ = false;
}

void Outbox::OnWelcome(const v1::Welcome& welcome) {
  MutexLock lock(&mu_);
  const uint64_t committed = welcome.committed_sequence();
  limits_ = options_.limits.Tighter(welcome);
  bool renumber = false;
  if (!numbered_ || renumber_at_welcome_) {
    numbered_ = true;
    renumber_at_welcome_ = false;
    renumber = true;
  } else if (next_sequence_ <= committed) {
    // The control plane has committed numbers this agent never assigned (another process used
    // the same agent id, or the spool was lost): nothing held was stored. Number it above
    // them, so it is stored rather than mistaken for a resend: a possible duplicate is better
    // than silent loss.
    renumber = true;
  } else {
    while (!pending_.empty() && DurableSequence(pending_.front().get()) <= committed) {
      PopFrontLocked(/*count_as_dropped=*/false);
    }
  }
  renumber = ConformLocked() || renumber;
  if (renumber) {
    // Everything held is above `committed` and unsent on this stream: number it afresh, in
    // order, from the first held number (or committed + 1).
    uint64_t next = committed + 1;
    if (!pending_.empty() && DurableSequence(pending_.front().get()) > committed) {
      next = DurableSequence(pending_.front().get());
    }
    for (Entry& e : pending_) SetDurableSequence(&e.Mutable(), next++);
    next_sequence_ = std::max(next_sequence_, next);
    spool_stale_ = true;
  }
  if (spool_stale_) RewriteSpoolLocked();
  // Segments are forgotten by the numbers written in them: only once they match memory's.
  if (options_.spool != nullptr && !spool_stale_) {
    options_.spool->Forget(committed, next_sequence_);
  }
  acked_ = committed;
  sent_upto_ = committed;
}

void Outbox::OnAck(uint64_t sequence) {
  MutexLock lock(&mu_);
  while (!pending_.empty() && DurableSequence(pending_.front().get()) <= sequence) {
    PopFrontLocked(/*count_as_dropped=*/false);
  }
  acked_ = std::max(acked_, sequence);
  if (spool_stale_) RewriteSpoolLocked();  // a rewrite that failed (a full disk) is retried
  if (options_.spool != nullptr && !spool_stale_) {
    options_.spool->Forget(acked_, next_sequence_);
  }
}

bool Outbox::OnReject(uint64_t sequence) {
  MutexLock lock(&mu_);
  auto it =
      std::lower_bound(pending_.begin(), pending_.end(), sequence,
                       [](const Entry& e, uint64_t seq) { return DurableSequence(e.get()) < seq; });
  if (it == pending_.end() || DurableSequence(it->get()) != sequence) return false;
  pending_bytes_ -= it->bytes;
  pending_.erase(it);
  ++rejected_;
  return true;
}

bool Outbox::DropOldest() {
  MutexLock lock(&mu_);
  if (pending_.empty()) return false;
  PopFrontLocked(/*count_as_dropped=*/true);
  return true;
}

std::shared_ptr<const v1::AgentMessage> Outbox::NextToSend() {
  MutexLock lock(&mu_);
  if (!numbered_) return nullptr;
  // Sequences in pending_ are increasing: binary-search the first one above the cursor.
  auto it =
      std::upper_bound(pending_.begin(), pending_.end(), sent_upto_,
                       [](uint64_t seq, const Entry& e) { return seq < DurableSequence(e.get()); });
  if (it == pending_.end()) return nullptr;
  sent_upto_ = DurableSequence(it->get());
  return it->message;
}

SendLimits Outbox::limits() const {
  MutexLock lock(&mu_);
  return limits_;
}
size_t Outbox::pending() const {
  MutexLock lock(&mu_);
  return pending_.size();
}
size_t Outbox::pending_bytes() const {
  MutexLock lock(&mu_);
  return pending_bytes_;
}
uint64_t Outbox::dropped() const {
  MutexLock lock(&mu_);
  return dropped_;
}
uint64_t Outbox::rejected() const {
  MutexLock lock(&mu_);
  return rejected_;
}
DropCounts Outbox::resplit_drops() const {
  MutexLock lock(&mu_);
  return resplit_drops_;
}
uint64_t Outbox::spool_bytes() const {
  MutexLock lock(&mu_);
  return options_.spool != nullptr ? options_.spool->bytes() : 0;
}
uint64_t Outbox::spool_errors() const {
  MutexLock lock(&mu_);
  return spool_errors_;
}
uint64_t Outbox::last_sequence() const {
  MutexLock lock(&mu_);
  return numbered_ ? next_sequence_ - 1 : 0;
}
uint64_t Outbox::acked_sequence() const {
  MutexLock lock(&mu_);
  return acked_;
}

}  // namespace vigie::agent
