#include "common/agent_message.h"

#include "absl/strings/str_cat.h"
#include "re2/re2.h"

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

absl::Status ValidateLabels(const google::protobuf::Map<std::string, std::string>& labels,
                            size_t max_labels, absl::string_view field) {
  static const RE2 kLabel("[a-zA-Z_][a-zA-Z0-9_]{0,99}");
  if (labels.size() > max_labels) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", labels.size(), " labels exceed the limit of ", max_labels));
  }
  for (const auto& [k, v] : labels) {
    if (!RE2::FullMatch(k, kLabel)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": \"", k, "\" is not a valid label name"));
    }
    if (v.size() > 1024) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, "[\"", k, "\"]: value longer than 1024 bytes"));
    }
    if (v.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, "[\"", k, "\"]: value contains a NUL byte"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateSample(const v1::Sample& s, size_t max_labels, absl::string_view field) {
  static const RE2 kMetric("[a-zA-Z_:][a-zA-Z0-9_:]{0,199}");
  if (!RE2::FullMatch(s.name(), kMetric)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".name: \"", s.name(), "\" is not a metric name"));
  }
  // PostgreSQL's timestamptz range is wider; this keeps timestamps sane.
  if (s.timestamp_ms() < 0 || s.timestamp_ms() > 253402300799999) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".timestamp_ms: ", s.timestamp_ms(), " is outside years 1970-9999"));
  }
  return ValidateLabels(s.labels(), max_labels, absl::StrCat(field, ".labels"));
}

}  // namespace vigie
