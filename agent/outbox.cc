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
  for (v1::AgentMessage& m : recovered.messages) {
    if (numbered_ && DurableSequence(m) == 0) {
      // Damage mixed numbered and unnumbered records: number these, and rewrite the spool at
      // the next Welcome so a second restart does not number them again.
      SetDurableSequence(&m, next_sequence_++);
      spool_stale_ = true;
    }
    PushLocked(std::move(m));
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
  if (options_.spool != nullptr) {
    // The spool drops whole segments; drop the same messages from memory.
    for (Spool::Dropped d = options_.spool->DropOldestIfOver(); d.records > 0;
         d = options_.spool->DropOldestIfOver()) {
      for (uint64_t i = 0; i < d.records && !pending_.empty(); ++i) {
        const uint64_t seq = DurableSequence(pending_.front().get());
        if (d.max_sequence != 0 && seq > d.max_sequence) break;  // already acknowledged ones
        PopFrontLocked(/*count_as_dropped=*/true);
      }
    }
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
      PushLocked(std::move(e.Mutable()));
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
  if (!numbered_) {
    numbered_ = true;
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
  if (options_.spool != nullptr) options_.spool->Forget(committed, next_sequence_);
  acked_ = committed;
  sent_upto_ = committed;
}

void Outbox::OnAck(uint64_t sequence) {
  MutexLock lock(&mu_);
  while (!pending_.empty() && DurableSequence(pending_.front().get()) <= sequence) {
    PopFrontLocked(/*count_as_dropped=*/false);
  }
  acked_ = std::max(acked_, sequence);
  if (options_.spool != nullptr) options_.spool->Forget(acked_, next_sequence_);
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
