// Helpers over the agent stream's messages, shared by the agent and the control plane.
#ifndef VIGIE_COMMON_AGENT_MESSAGE_H_
#define VIGIE_COMMON_AGENT_MESSAGE_H_

#include <cstdint>

#include "vigie/v1/agent.pb.h"

namespace vigie {

// The sequence number of a durable message (metrics, checks, service_event); 0 for others.
uint64_t DurableSequence(const v1::AgentMessage& m);
// Sets it; does nothing for messages that are not durable.
void SetDurableSequence(v1::AgentMessage* m, uint64_t sequence);

}  // namespace vigie

#endif  // VIGIE_COMMON_AGENT_MESSAGE_H_
