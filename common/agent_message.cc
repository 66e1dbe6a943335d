#include "common/agent_message.h"

namespace vigie {

uint64_t DurableSequence(const v1::AgentMessage& m) {
  switch (m.payload_case()) {
    case v1::AgentMessage::kMetrics:
      return m.metrics().sequence();
    case v1::AgentMessage::kChecks:
      return m.checks().sequence();
    case v1::AgentMessage::kServiceEvent:
      return m.service_event().sequence();
    default:
      return 0;
  }
}

void SetDurableSequence(v1::AgentMessage* m, uint64_t sequence) {
  switch (m->payload_case()) {
    case v1::AgentMessage::kMetrics:
      m->mutable_metrics()->set_sequence(sequence);
      break;
    case v1::AgentMessage::kChecks:
      m->mutable_checks()->set_sequence(sequence);
      break;
    case v1::AgentMessage::kServiceEvent:
      m->mutable_service_event()->set_sequence(sequence);
      break;
    default:
      break;
  }
}

}  // namespace vigie
