#include "controlplane/silences.h"

#include "absl/strings/str_cat.h"
#include "common/agent_message.h"
#include "common/yaml_config.h"
#include "re2/re2.h"

namespace vigie::controlplane {

namespace {

constexpr int64_t kDayMs = 24 * 3600 * 1000LL;
constexpr int64_t kMaxAheadMs = 366 * kDayMs;

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

absl::Status CheckText(absl::string_view field, const std::string& value) {
  if (!IsValidUtf8(value)) return Invalid(field, "not valid UTF-8");
  if (value.size() > kMaxSilenceText) {
    return Invalid(field, absl::StrCat("at most ", kMaxSilenceText, " bytes, got ", value.size()));
  }
  return absl::OkStatus();
}

}  // namespace

bool Silence::Matches(const std::map<std::string, std::string>& labels) const {
  for (const auto& [name, value] : matchers) {
    auto it = labels.find(name);
    if ((it == labels.end() ? "" : it->second) != value) return false;
  }
  return true;
}

bool Silence::ActiveAt(int64_t now_ms) const {
  if (now_ms < starts_ms) return false;
  if (repeat_every_ms <= 0) return now_ms < ends_ms;
  const int64_t k = (now_ms - starts_ms) / repeat_every_ms;
  const int64_t start = starts_ms + k * repeat_every_ms;
  if (repeat_until_ms != 0 && start >= repeat_until_ms) return false;
  return now_ms < start + (ends_ms - starts_ms);
}

std::optional<int64_t> Silence::LastEndMs() const {
  if (repeat_every_ms <= 0) return ends_ms;
  if (repeat_until_ms == 0) return std::nullopt;
  // The last window starts before repeat_until.
  const int64_t last_k = (repeat_until_ms - 1 - starts_ms) / repeat_every_ms;
  return starts_ms + last_k * repeat_every_ms + (ends_ms - starts_ms);
}

bool Silence::EndedBy(int64_t now_ms) const {
  const std::optional<int64_t> last = LastEndMs();
  return last && now_ms >= *last;
}

absl::StatusOr<Silence> SilenceFromProto(const v1::Silence& proto, absl::Time now,
                                         const std::string& caller) {
  static const re2::RE2 kLabelName("[a-zA-Z_][a-zA-Z0-9_]{0,99}");
  Silence s;
  const int64_t now_ms = absl::ToUnixMillis(now);
  if (proto.matchers().empty()) return Invalid("silence.matchers", "at least one is required");
  if (proto.matchers().size() > kMaxSilenceMatchers) {
    return Invalid("silence.matchers", absl::StrCat("at most ", kMaxSilenceMatchers, ", got ",
                                                    proto.matchers().size()));
  }
  bool any_value = false;
  for (const auto& [name, value] : proto.matchers()) {
    if (!re2::RE2::FullMatch(name, kLabelName)) {
      return Invalid("silence.matchers", absl::StrCat("bad label name ", QuoteForMessage(name)));
    }
    if (absl::Status st = CheckText(absl::StrCat("silence.matchers[\"", name, "\"]"), value);
        !st.ok()) {
      return st;
    }
    any_value |= !value.empty();
    s.matchers[name] = value;
  }
  if (!any_value) {
    return Invalid("silence.matchers",
                   "at least one must have a non-empty value (a silence of everything is refused)");
  }
  s.starts_ms = proto.starts_at_unix() == 0 ? now_ms : proto.starts_at_unix() * 1000;
  s.ends_ms = proto.ends_at_unix() * 1000;
  if (proto.ends_at_unix() == 0) return Invalid("silence.ends_at_unix", "required");
  if (proto.starts_at_unix() < 0 || proto.starts_at_unix() > now_ms / 1000 + kMaxAheadMs / 1000) {
    return Invalid("silence.starts_at_unix",
                   absl::StrCat("must be within 366 days from now, got ", proto.starts_at_unix()));
  }
  if (proto.ends_at_unix() < 0 || proto.ends_at_unix() > (s.starts_ms + kMaxAheadMs) / 1000) {
    return Invalid(
        "silence.ends_at_unix",
        absl::StrCat("at most 366 days after starts_at_unix, got ", proto.ends_at_unix()));
  }
  if (s.ends_ms <= s.starts_ms) {
    return Invalid("silence.ends_at_unix",
                   absl::StrCat("must be after starts_at_unix (", s.starts_ms / 1000, "), got ",
                                proto.ends_at_unix()));
  }
  absl::StatusOr<absl::Duration> every =
      ParseConfigDuration("silence.repeat_every", proto.repeat_every(), absl::ZeroDuration());
  if (!every.ok()) return every.status();
  s.repeat_every_ms = absl::ToInt64Milliseconds(*every);
  if (s.repeat_every_ms == 0) {
    if (proto.repeat_until_unix() != 0) {
      return Invalid("silence.repeat_until_unix", "only with repeat_every");
    }
    if (s.ends_ms <= now_ms) {
      return Invalid("silence.ends_at_unix", absl::StrCat("already past (now is ", now_ms / 1000,
                                                          "), got ", proto.ends_at_unix()));
    }
  } else {
    if (s.repeat_every_ms < 60 * 1000 || s.repeat_every_ms > kMaxAheadMs) {
      return Invalid("silence.repeat_every",
                     absl::StrCat("between 1m and 366d, got \"", proto.repeat_every(), "\""));
    }
    if (s.repeat_every_ms <= s.ends_ms - s.starts_ms) {
      return Invalid(
          "silence.repeat_every",
          absl::StrCat("must be longer than the window (ends_at_unix - "
                       "starts_at_unix = ",
                       (s.ends_ms - s.starts_ms) / 1000, "s), got \"", proto.repeat_every(), "\""));
    }
    if (proto.repeat_until_unix() < 0 ||
        (proto.repeat_until_unix() != 0 && proto.repeat_until_unix() * 1000 <= s.starts_ms)) {
      return Invalid("silence.repeat_until_unix",
                     absl::StrCat("must be after starts_at_unix, got ", proto.repeat_until_unix()));
    }
    if (proto.repeat_until_unix() > 4102444800) {  // 2100-01-01
      return Invalid(
          "silence.repeat_until_unix",
          absl::StrCat("at most 4102444800 (2100-01-01), got ", proto.repeat_until_unix()));
    }
    s.repeat_until_ms = proto.repeat_until_unix() * 1000;
    if (s.EndedBy(now_ms)) {
      return Invalid("silence.repeat_until_unix",
                     absl::StrCat("every window is already past, got ", proto.repeat_until_unix()));
    }
  }
  if (absl::Status st = CheckText("silence.comment", proto.comment()); !st.ok()) return st;
  if (absl::Status st = CheckText("silence.created_by", proto.created_by()); !st.ok()) return st;
  s.comment = proto.comment();
  s.created_by = proto.created_by().empty() ? caller : proto.created_by();
  s.created_ms = now_ms;
  return s;
}

void SilenceToProto(const Silence& s, absl::Time now, v1::Silence* out) {
  out->set_id(s.id);
  for (const auto& [k, v] : s.matchers) (*out->mutable_matchers())[k] = v;
  out->set_starts_at_unix(s.starts_ms / 1000);
  out->set_ends_at_unix(s.ends_ms / 1000);
  out->set_created_by(s.created_by);
  out->set_comment(s.comment);
  if (s.repeat_every_ms > 0) {
    out->set_repeat_every(absl::FormatDuration(absl::Milliseconds(s.repeat_every_ms)));
    out->set_repeat_until_unix(s.repeat_until_ms / 1000);
  }
  out->set_created_at_unix(s.created_ms / 1000);
  out->set_active(s.ActiveAt(absl::ToUnixMillis(now)));
}

const Silence* SilencedBy(const std::vector<Silence>& silences,
                          const std::map<std::string, std::string>& labels, int64_t now_ms) {
  for (const Silence& s : silences) {
    if (s.ActiveAt(now_ms) && s.Matches(labels)) return &s;
  }
  return nullptr;
}

}  // namespace vigie::controlplane
