#include "agent/outbox.h"

#include <algorithm>

#include "common/agent_message.h"
#include "common/mutex.h"

namespace vigie::agent {

void Outbox::Add(v1::AgentMessage message) {
  MutexLock lock(&mu_);
  SetDurableSequence(&message, numbered_ ? next_sequence_++ : 0);
  pending_.push_back(std::move(message));
  while (pending_.size() > max_pending_) {
    pending_.pop_front();
    ++dropped_;
  }
}

void Outbox::OnWelcome(uint64_t committed) {
  MutexLock lock(&mu_);
  if (!numbered_) {
    numbered_ = true;
    next_sequence_ = committed + 1;
    for (v1::AgentMessage& m : pending_) SetDurableSequence(&m, next_sequence_++);
  } else if (next_sequence_ <= committed) {
    // The control plane has committed numbers this agent never assigned (another process used
    // the same agent id). Renumber what is held above them, so it is stored rather than
    // mistaken for a resend: a possible duplicate is better than silent loss.
    uint64_t first = pending_.empty() ? next_sequence_ : DurableSequence(pending_.front());
    uint64_t shift = committed + 1 - first;
    for (v1::AgentMessage& m : pending_) SetDurableSequence(&m, DurableSequence(m) + shift);
    next_sequence_ += shift;
  }
  while (!pending_.empty() && DurableSequence(pending_.front()) <= committed) pending_.pop_front();
  acked_ = committed;
  sent_upto_ = committed;
}

void Outbox::OnAck(uint64_t sequence) {
  MutexLock lock(&mu_);
  while (!pending_.empty() && DurableSequence(pending_.front()) <= sequence) pending_.pop_front();
  acked_ = std::max(acked_, sequence);
}

bool Outbox::DropOldest() {
  MutexLock lock(&mu_);
  if (pending_.empty()) return false;
  pending_.pop_front();
  ++dropped_;
  return true;
}

std::optional<v1::AgentMessage> Outbox::NextToSend() {
  MutexLock lock(&mu_);
  if (!numbered_) return std::nullopt;
  // Sequences in pending_ are increasing: binary-search the first one above the cursor.
  auto it = std::upper_bound(
      pending_.begin(), pending_.end(), sent_upto_,
      [](uint64_t seq, const v1::AgentMessage& m) { return seq < DurableSequence(m); });
  if (it == pending_.end()) return std::nullopt;
  sent_upto_ = DurableSequence(*it);
  return *it;
}

size_t Outbox::pending() const {
  MutexLock lock(&mu_);
  return pending_.size();
}
uint64_t Outbox::dropped() const {
  MutexLock lock(&mu_);
  return dropped_;
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
