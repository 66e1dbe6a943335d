// YAML configuration mapped onto protobuf messages: yaml-cpp parses the text, a walk guided by
// the message's descriptor turns it into JSON (checking every key and scalar on the way, so an
// error names the field path and line), and protobuf's JSON parser fills the message.
#ifndef VIGIE_COMMON_YAML_CONFIG_H_
#define VIGIE_COMMON_YAML_CONFIG_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/backoff.h"
#include "google/protobuf/message.h"
#include "vigie/v1/config.pb.h"

namespace vigie {

// Parses `yaml` into `message` (cleared first). Errors are InvalidArgument, e.g.
//   rules[0].opp (line 7): unknown field; known fields: name, metric, ...
absl::Status ParseYamlConfig(absl::string_view yaml, google::protobuf::Message* message);

// Reads a regular file named in config (a config file, a certificate, a secret), at most
// `max_bytes`. FIFOs, devices and anything larger are refused rather than read: a config can
// never make a process block or fill its memory. Errors name `field` and the path, never the
// contents; kNotFound if the file does not exist.
absl::StatusOr<std::string> ReadConfigFile(absl::string_view field, const std::string& path,
                                           size_t max_bytes);

// Reads (at most 16 MiB) and parses a file; errors are prefixed with the path.
absl::Status LoadYamlConfigFile(const std::string& path, google::protobuf::Message* message);

// Parses a config duration such as "500ms", "30s", "5m", "1h30m" or "15d" (whole days); ""
// gives `default_value`.
// A negative or malformed value is InvalidArgument naming `field` and the value.
absl::StatusOr<absl::Duration> ParseConfigDuration(absl::string_view field, absl::string_view value,
                                                   absl::Duration default_value);

// Parses a config size such as "512MiB", "10MB", "4096" (bytes), "1.5GiB": a number and one of
// B, kB/KB, KiB, MB, MiB, GB, GiB, TB, TiB (powers of 1000 or 1024). "" gives `default_value`.
// Errors name `field` and the value.
absl::StatusOr<uint64_t> ParseConfigBytes(absl::string_view field, absl::string_view value,
                                          uint64_t default_value);

// Checks a host:port listen or target address. Errors name `field` and the value.
absl::Status ValidateHostPort(absl::string_view field, absl::string_view value);
// True if `host_port`'s host is an IP address in 127.0.0.0/8 or ::1. Host names, "localhost"
// included, are never taken for loopback.
bool IsLoopback(absl::string_view host_port);
// InvalidArgument naming `field` and the value unless `listen` is a loopback IP; `unless` ends
// the message (what would allow it, e.g. "set tls or insecure: true").
absl::Status RequireLoopback(absl::string_view field, absl::string_view listen,
                             absl::string_view unless);
// A listener address from config: `value`, or `default_value` if empty, checked as host:port.
absl::StatusOr<std::string> ListenAddress(absl::string_view field, const std::string& value,
                                          const std::string& default_value);

// A name in a config list (a check, a service): [A-Za-z0-9._-]{1,128}, else an error naming
// `field` ("checks[3].name") and the value.
absl::Status ValidateConfigName(absl::string_view field, const std::string& value);

// A config Backoff message over `defaults`; errors name `field` (e.g. "notify_backoff.max").
absl::StatusOr<BackoffPolicy> BackoffFromConfig(absl::string_view field, const v1::Backoff& b,
                                                BackoffPolicy defaults);

}  // namespace vigie

#endif  // VIGIE_COMMON_YAML_CONFIG_H_
