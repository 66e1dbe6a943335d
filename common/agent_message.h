// Helpers over the agent stream's messages, shared by the agent and the control plane.
#ifndef VIGIE_COMMON_AGENT_MESSAGE_H_
#define VIGIE_COMMON_AGENT_MESSAGE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/map.h"
#include "vigie/v1/agent.pb.h"

namespace vigie {

// The sequence number of a durable message (metrics, checks, service_event); 0 for others.
uint64_t DurableSequence(const v1::AgentMessage& m);
// Sets it; does nothing for messages that are not durable.
void SetDurableSequence(v1::AgentMessage* m, uint64_t sequence);

// The rules every sample must meet to be stored; the agent applies them before sending (so a
// bad textfile line is skipped there) and the control plane before storing. Errors are
// InvalidArgument naming `field` and the value.
//   labels: at most `max_labels`; names [a-zA-Z_][a-zA-Z0-9_]{0,99}; values at most 1024
//           bytes, without NUL
//   sample: name [a-zA-Z_:][a-zA-Z0-9_:]{0,199}; timestamp in years 1970-9999; labels as above
absl::Status ValidateLabels(const google::protobuf::Map<std::string, std::string>& labels,
                            size_t max_labels, absl::string_view field);
absl::Status ValidateSample(const v1::Sample& sample, size_t max_labels, absl::string_view field);

}  // namespace vigie

#endif  // VIGIE_COMMON_AGENT_MESSAGE_H_
