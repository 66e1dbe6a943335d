// Silences and recurring maintenance windows: which alerts' notifications are held back, and
// when. Pure logic (time is passed in); PgStore stores silences and applies it when it decides
// whether an alert transition is sent.
#ifndef VIGIE_CONTROLPLANE_SILENCES_H_
#define VIGIE_CONTROLPLANE_SILENCES_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "vigie/v1/admin.pb.h"

namespace vigie::controlplane {

struct Silence {
  std::string id;
  // Exact label values; "" matches an alert without the label.
  std::map<std::string, std::string> matchers;
  int64_t starts_ms = 0;
  int64_t ends_ms = 0;
  // Non-zero: the window [starts, ends) repeats every this long, until repeat_until_ms (0 =
  // forever; no window starts at or after it).
  int64_t repeat_every_ms = 0;
  int64_t repeat_until_ms = 0;
  std::string created_by;
  std::string comment;
  int64_t created_ms = 0;

  bool Matches(const std::map<std::string, std::string>& labels) const;
  bool ActiveAt(int64_t now_ms) const;
  // When its last window ends; nullopt for a recurring silence without repeat_until.
  std::optional<int64_t> LastEndMs() const;
  // True once no window is active at or after `now_ms` (it can be purged later).
  bool EndedBy(int64_t now_ms) const;
};

inline constexpr size_t kMaxSilenceMatchers = 32;
inline constexpr size_t kMaxSilenceText = 1024;

// Validates a silence as created through the Admin API: matchers (1 to 32, valid label names,
// at least one non-empty value), times (ends after starts and after `now`; a one-off silence
// at most 366 days long and starting within 366 days), repeat_every (at least 1m, at most
// 366d, longer than the window), texts (valid UTF-8, at most 1 KiB). `created_by` defaults to
// `caller`. The id is left empty. Errors are InvalidArgument naming the field and the value.
absl::StatusOr<Silence> SilenceFromProto(const v1::Silence& proto, absl::Time now,
                                         const std::string& caller);
void SilenceToProto(const Silence& s, absl::Time now, v1::Silence* out);

// The first silence in `silences` active at `now_ms` that matches `labels`, or nullptr.
const Silence* SilencedBy(const std::vector<Silence>& silences,
                          const std::map<std::string, std::string>& labels, int64_t now_ms);

}  // namespace vigie::controlplane

#endif  // VIGIE_CONTROLPLANE_SILENCES_H_
