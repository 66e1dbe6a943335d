// The logging facade: one structured line per event on stderr,
//   ts=2026-11-24T15:17:10.123Z level=info msg="agent connected" agent=web1 seq=42
// built on spdlog. Values that need it are quoted and escaped. Fields whose key names a secret
// (password, token, secret, authorization) are written as [redacted]; use RedactUrl() for
// connection strings. Thread-safe.
#ifndef VIGIE_COMMON_LOG_H_
#define VIGIE_COMMON_LOG_H_

#include <initializer_list>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace vigie::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// One key=value pair. Anything absl::StrCat accepts can be a value.
struct Field {
  Field(absl::string_view k, const absl::AlphaNum& v) : key(k), value(v.Piece()) {}
  Field(absl::string_view k, const absl::Status& s) : key(k), value(s.ToString()) {}
  template <typename B, std::enable_if_t<std::is_same_v<B, bool>, int> = 0>
  Field(absl::string_view k, B b) : key(k), value(b ? "true" : "false") {}
  std::string key;
  std::string value;
};
using Fields = std::initializer_list<Field>;

// Parses "debug", "info", "warn" or "error".
absl::Status SetLevel(absl::string_view name);
void SetLevel(Level level);
bool Enabled(Level level);

void Write(Level level, absl::string_view msg, Fields fields);
inline void Debug(absl::string_view msg, Fields fields = {}) { Write(Level::kDebug, msg, fields); }
inline void Info(absl::string_view msg, Fields fields = {}) { Write(Level::kInfo, msg, fields); }
inline void Warn(absl::string_view msg, Fields fields = {}) { Write(Level::kWarn, msg, fields); }
inline void Error(absl::string_view msg, Fields fields = {}) { Write(Level::kError, msg, fields); }

// The line Write() would emit after the timestamp and level: msg="..." k=v ... (for tests).
std::string FormatLine(absl::string_view msg, Fields fields);

// "postgresql://vigie:s3cret@db/vigie" -> "postgresql://vigie:[redacted]@db/vigie"; also
// redacts password=... in key/value connection strings.
std::string RedactUrl(absl::string_view url);

}  // namespace vigie::log

#endif  // VIGIE_COMMON_LOG_H_
