// Helpers over the agent stream's messages, shared by the agent and the control plane.
#ifndef VIGIE_COMMON_AGENT_MESSAGE_H_
#define VIGIE_COMMON_AGENT_MESSAGE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/map.h"
#include "vigie/v1/agent.pb.h"

namespace vigie {

// The sequence number of a durable message (metrics, checks, service_event); 0 for others.
uint64_t DurableSequence(const v1::AgentMessage& m);
// Sets it; does nothing for messages that are not durable.
void SetDurableSequence(v1::AgentMessage* m, uint64_t sequence);

// A check status as the value of the metric vigie_check_status: 0 OK, 1 WARNING, 2 CRITICAL,
// 3 UNKNOWN (unspecified counts as unknown). The agent exports it; the control plane feeds the
// same series to the rules as each CheckResult arrives.
double CheckStatusValue(v1::CheckStatus status);
// "ok", "warning", "critical" or "unknown": as stored and as counter labels.
const char* CheckStatusName(v1::CheckStatus status);

// The largest sequence number the control plane stores (its column is a signed bigint).
constexpr uint64_t kMaxSequence = static_cast<uint64_t>(INT64_MAX);

// Limits one sample must meet. The control plane announces its own in Welcome.
struct SampleLimits {
  size_t max_labels = 32;
  // Timestamps are accepted from 2000-01-01 up to `now_ms` + max_future_ms; 0 = no upper
  // bound beyond year 9999 (tests).
  int64_t now_ms = 0;
  int64_t max_future_ms = 24 * 3600 * 1000;
};

// Why a sample was refused, as a short label value for counters.
inline constexpr char kReasonInvalidUtf8[] = "invalid_utf8";
inline constexpr char kReasonBadName[] = "bad_name";
inline constexpr char kReasonBadLabelName[] = "bad_label_name";
inline constexpr char kReasonTooManyLabels[] = "too_many_labels";
inline constexpr char kReasonLabelValueTooLong[] = "label_value_too_long";
inline constexpr char kReasonNulByte[] = "nul_byte";
inline constexpr char kReasonBadTimestamp[] = "bad_timestamp";
// Every reason above, for pre-registering counters.
const std::vector<const char*>& SampleRejectReasons();

// True if `s` is valid UTF-8: the check protobuf applies to every proto3 string field when
// parsing, so a string that fails it would make the whole message unparseable.
bool IsValidUtf8(absl::string_view s);

// `s` made safe for a proto string field: invalid UTF-8 bytes and NULs replaced by '?', cut to
// `max_bytes` at a character boundary (e.g. a server's banner in a check message).
std::string SafeText(absl::string_view s, size_t max_bytes);

// `value` made safe to put in an error message: quoted, cut at 64 bytes, and C-escaped if it
// is not valid UTF-8 (an error message is itself a proto string).
std::string QuoteForMessage(absl::string_view value);

// The rules every sample must meet to be stored. The agent applies them at collection (so a
// bad textfile line or a mount point with invalid UTF-8 is dropped there and counted) and the
// control plane before storing: one function, so both sides agree. Errors are InvalidArgument
// naming `field` and the value; `reason`, if given, receives one of the kReason* constants.
//   labels: at most max_labels; names [a-zA-Z_][a-zA-Z0-9_]{0,99}; values valid UTF-8, at
//           most 1024 bytes, without NUL
//   sample: name [a-zA-Z_:][a-zA-Z0-9_:]{0,199}; timestamp as SampleLimits says
absl::Status ValidateLabels(const google::protobuf::Map<std::string, std::string>& labels,
                            size_t max_labels, absl::string_view field,
                            const char** reason = nullptr);
// The timestamp rule alone (for check results and service events too).
absl::Status ValidateTimestamp(int64_t timestamp_ms, const SampleLimits& limits,
                               absl::string_view field, const char** reason = nullptr);
absl::Status ValidateSample(const v1::Sample& sample, const SampleLimits& limits,
                            absl::string_view field, const char** reason = nullptr);

}  // namespace vigie

#endif  // VIGIE_COMMON_AGENT_MESSAGE_H_
