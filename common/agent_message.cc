#include "common/agent_message.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/stubs/common.h"

namespace vigie {

const char* CheckStatusName(v1::CheckStatus status) {
  switch (status) {
    case v1::CHECK_STATUS_OK:
      return "ok";
    case v1::CHECK_STATUS_WARNING:
      return "warning";
    case v1::CHECK_STATUS_CRITICAL:
      return "critical";
    default:
      return "unknown";
  }
}

double CheckStatusValue(v1::CheckStatus status) {
  switch (status) {
    case v1::CHECK_STATUS_OK:
      return 0;
    case v1::CHECK_STATUS_WARNING:
      return 1;
    case v1::CHECK_STATUS_CRITICAL:
      return 2;
    default:
      return 3;
  }
}

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

const std::vector<const char*>& SampleRejectReasons() {
  static const auto* kAll = new std::vector<const char*>{
      kReasonInvalidUtf8,       kReasonBadName, kReasonBadLabelName, kReasonTooManyLabels,
      kReasonLabelValueTooLong, kReasonNulByte, kReasonBadTimestamp};
  return *kAll;
}

bool IsValidUtf8(absl::string_view s) {
  return google::protobuf::internal::IsStructurallyValidUTF8(s.data(), static_cast<int>(s.size()));
}

std::string SafeText(absl::string_view s, size_t max_bytes) {
  std::string out;
  auto append = [&out](absl::string_view part) {
    for (char c : part) out.push_back(c == '\0' ? '?' : c);
  };
  while (!s.empty()) {
    // The longest valid prefix, by protobuf's own rule (so the result always parses).
    size_t n = static_cast<size_t>(google::protobuf::internal::UTF8SpnStructurallyValid(
        google::protobuf::StringPiece(s.data(), s.size())));
    const size_t room = max_bytes - out.size();
    if (n > room) {
      n = room;
      // Back off to a character boundary (continuation bytes are 10xxxxxx).
      while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
      append(s.substr(0, n));
      return out;
    }
    append(s.substr(0, n));
    s.remove_prefix(n);
    if (s.empty() || out.size() >= max_bytes) break;
    out.push_back('?');  // one invalid byte
    s.remove_prefix(1);
  }
  return out;
}

std::string QuoteForMessage(absl::string_view value) {
  constexpr size_t kMax = 64;
  const bool cut = value.size() > kMax;
  absl::string_view shown = value.substr(0, kMax);
  // Cutting may split a multi-byte character; escaping then shows the bytes as they are.
  std::string body = IsValidUtf8(shown) ? absl::CEscape(shown) : absl::CHexEscape(shown);
  return absl::StrCat("\"", body, "\"", cut ? "..." : "");
}

namespace {

bool IsAsciiLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }

// [a-zA-Z_][a-zA-Z0-9_]{0,99}, by hand: this runs for every label of every sample.
bool IsLabelName(absl::string_view s) {
  if (s.empty() || s.size() > 100 || !(IsAsciiLetter(s[0]) || s[0] == '_')) return false;
  for (char c : s) {
    if (!(IsAsciiLetter(c) || IsAsciiDigit(c) || c == '_')) return false;
  }
  return true;
}

// [a-zA-Z_:][a-zA-Z0-9_:]{0,199}
bool IsMetricName(absl::string_view s) {
  if (s.empty() || s.size() > 200 || !(IsAsciiLetter(s[0]) || s[0] == '_' || s[0] == ':')) {
    return false;
  }
  for (char c : s) {
    if (!(IsAsciiLetter(c) || IsAsciiDigit(c) || c == '_' || c == ':')) return false;
  }
  return true;
}

absl::Status Refuse(const char* why, const char** reason, std::string message) {
  if (reason != nullptr) *reason = why;
  return absl::InvalidArgumentError(std::move(message));
}

// Error messages name `field` + `suffix`; they are only built on failure.
absl::Status CheckLabels(const google::protobuf::Map<std::string, std::string>& labels,
                         size_t max_labels, absl::string_view field, absl::string_view suffix,
                         const char** reason) {
  if (labels.size() > max_labels) {
    return Refuse(kReasonTooManyLabels, reason,
                  absl::StrCat(field, suffix, ": ", labels.size(), " labels exceed the limit of ",
                               max_labels));
  }
  for (const auto& label : labels) {
    const std::string& k = label.first;  // named, not bound: lambdas below capture them
    const std::string& v = label.second;
    if (!IsLabelName(k)) {
      return Refuse(
          kReasonBadLabelName, reason,
          absl::StrCat(field, suffix, ": ", QuoteForMessage(k), " is not a valid label name"));
    }
    auto at = [&] { return absl::StrCat(field, suffix, "[\"", k, "\"]"); };
    if (!IsValidUtf8(v)) {
      return Refuse(kReasonInvalidUtf8, reason,
                    absl::StrCat(at(), ": value ", QuoteForMessage(v), " is not valid UTF-8"));
    }
    if (v.size() > 1024) {
      return Refuse(kReasonLabelValueTooLong, reason,
                    absl::StrCat(at(), ": value of ", v.size(), " bytes exceeds 1024"));
    }
    if (v.find('\0') != std::string::npos) {
      return Refuse(kReasonNulByte, reason, absl::StrCat(at(), ": value contains a NUL byte"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateLabels(const google::protobuf::Map<std::string, std::string>& labels,
                            size_t max_labels, absl::string_view field, const char** reason) {
  return CheckLabels(labels, max_labels, field, "", reason);
}

namespace {

constexpr int64_t kYear2000Ms = 946684800000;

int64_t LatestTimestamp(const SampleLimits& limits) {
  constexpr int64_t kYear9999Ms = 253402300799999;
  return limits.now_ms > 0 ? limits.now_ms + limits.max_future_ms : kYear9999Ms;
}

}  // namespace

absl::Status ValidateTimestamp(int64_t timestamp_ms, const SampleLimits& limits,
                               absl::string_view field, const char** reason) {
  if (timestamp_ms >= kYear2000Ms && timestamp_ms <= LatestTimestamp(limits)) {
    return absl::OkStatus();
  }
  return Refuse(kReasonBadTimestamp, reason,
                absl::StrCat(field, ": ", timestamp_ms,
                             limits.now_ms > 0 ? " is before 2000 or more than 24h ahead"
                                               : " is outside years 2000-9999"));
}

absl::Status ValidateSample(const v1::Sample& s, const SampleLimits& limits,
                            absl::string_view field, const char** reason) {
  if (!IsMetricName(s.name())) {
    return Refuse(
        IsValidUtf8(s.name()) ? kReasonBadName : kReasonInvalidUtf8, reason,
        absl::StrCat(field, ".name: ", QuoteForMessage(s.name()), " is not a metric name"));
  }
  if (s.timestamp_ms() < kYear2000Ms || s.timestamp_ms() > LatestTimestamp(limits)) {
    return ValidateTimestamp(s.timestamp_ms(), limits, absl::StrCat(field, ".timestamp_ms"),
                             reason);
  }
  return CheckLabels(s.labels(), limits.max_labels, field, ".labels", reason);
}

}  // namespace vigie
