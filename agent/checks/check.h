// Service checks: what one check is (CheckSpec), what one run of it found (Outcome), and the
// Probe interface each protocol implements (one file per protocol, registered in registry.cc).
#ifndef VIGIE_AGENT_CHECKS_CHECK_H_
#define VIGIE_AGENT_CHECKS_CHECK_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "vigie/v1/agent.pb.h"
#include "vigie/v1/config.pb.h"

namespace vigie::agent::checks {

// The target with the password of its userinfo replaced by "xxxxx"
// ("redis://:xxxxx@db:6379"): what results, metrics, logs and errors show.
std::string RedactTarget(const std::string& target);

// True if `host` is an IPv4 or IPv6 address (not a name to resolve).
bool IsIpLiteral(const std::string& host);

// "host:port", with brackets around an IPv6 address ("[::1]:53").
std::string JoinHostPort(const std::string& host, int port);

// A target split into its parts: "https://example.org:8443/health?x=1" gives scheme "https",
// host "example.org", port 8443, path_and_query "/health?x=1".
struct Target {
  std::string scheme;
  std::string userinfo;  // "user:password" or ":password", may be empty
  std::string host;      // without brackets for IPv6
  int port = 0;          // the scheme's default when absent
  std::string path_and_query;

  std::string HostPort() const { return JoinHostPort(host, port); }
};

// Parses a connection string; errors name `field` and the value.
absl::StatusOr<Target> ParseTarget(const std::string& target, const std::string& field);

// TLS settings of a check, validated.
struct TlsSettings {
  std::string ca_file;
  bool insecure_skip_verify = false;
  absl::Duration expiry_warning = absl::Hours(14 * 24);
  std::string server_name;  // empty: the target's host
};

// One configured check, validated, with defaults filled in.
struct CheckSpec {
  std::string name;
  std::string target;  // as written, RedactTarget()ed
  // The password, from the target's userinfo or the protocol's password_file ("" = none).
  std::string password;
  Target parsed;
  absl::Duration interval = absl::Seconds(30);
  absl::Duration timeout = absl::Seconds(10);
  int failures = 1;
  std::map<std::string, std::string> labels;
  TlsSettings tls;
  // Protocol-specific settings, as configured (validated by the protocol's factory).
  v1::CheckConfig config;
};

// Validates one check (`field` is e.g. "checks[3]"), and a list (unique names, known schemes).
absl::StatusOr<CheckSpec> CheckSpecFromConfig(const v1::CheckConfig& config,
                                              const std::string& field);
absl::StatusOr<std::vector<CheckSpec>> CheckSpecsFromConfig(
    const google::protobuf::RepeatedPtrField<v1::CheckConfig>& configs);

// Sets spec->password from the target's userinfo or `password_file` (one of them, not both);
// errors name `file_field` ("checks[2] (db).redis.password_file") and never the password.
absl::Status TakePassword(CheckSpec* spec, const std::string& password_file,
                          const std::string& file_field);

// What one run found.
struct Outcome {
  v1::CheckStatus status = v1::CHECK_STATUS_UNKNOWN;
  // Why, precisely: "HTTP 503", "certificate expired on 2026-01-02 ...", "connection refused".
  std::string message;
  // Protocol details exported as metrics (blackbox_exporter's names where one exists), e.g.
  // {"probe_http_status_code", 200}. Labels beyond check and target go in `metric_labels`.
  std::vector<std::pair<std::string, double>> metrics;
  // e.g. {"probe_tls_version_info", {"version", "TLS 1.3"}}: a metric with value 1.
  std::vector<std::pair<std::string, std::pair<std::string, std::string>>> info;
  // Metrics with one more label, e.g. {"vigie_check_perfdata_seconds", {"perf", "time"}, 0.01}.
  struct LabeledMetric {
    std::string name;
    std::pair<std::string, std::string> label;
    double value = 0;
  };
  std::vector<LabeledMetric> labeled;
};

class EventLoop;
class CurlMulti;

// What a probe may use; all of it belongs to the check loop's thread.
struct ProbeEnv {
  EventLoop* loop = nullptr;
  CurlMulti* curl = nullptr;
  std::string hostname;  // the agent's, e.g. for SMTP's EHLO
};

// One run of one check. Created on the check loop's thread, driven by it, never blocking:
// it waits on sockets through the EventLoop (or the shared CurlMulti). It calls `done` exactly
// once, at most from within Start() or a callback of the loop, and must not be used after.
// Destroying a probe that has not finished (its deadline passed) releases everything it holds.
class Probe {
 public:
  using Done = std::function<void(Outcome)>;
  virtual ~Probe() = default;
  virtual void Start(Done done) = 0;
  // The step a run is in ("resolving", "connecting", ...), for the timeout message.
  virtual std::string Phase() const = 0;
  // When the probe wants OnTimer() (its own retry or resolver timers).
  virtual absl::Time NextTimer() const { return absl::InfiniteFuture(); }
  virtual void OnTimer() {}
};

// Makes the probe for one run of `spec`; `deadline` is when the loop abandons it.
using ProbeFactory = std::function<std::unique_ptr<Probe>(const CheckSpec& spec, ProbeEnv* env,
                                                          absl::Time deadline)>;

// The protocols: scheme -> validation of its part of the config and its probe factory.
struct Protocol {
  // Validates the protocol-specific part of `spec` (field prefix e.g. "checks[3]").
  std::function<absl::Status(CheckSpec* spec, const std::string& field)> validate;
  ProbeFactory make;
};
const std::map<std::string, Protocol>& Protocols();

// Registration of each protocol (one per file).
Protocol HttpProtocol();
Protocol TcpProtocol();
Protocol SmtpProtocol();
Protocol DnsProtocol();
Protocol RedisProtocol();
Protocol PostgresqlProtocol();
Protocol CommandProtocol();

// Nagios performance data ("'label'=value[UOM];warn;crit;min;max ...") as labeled metrics in
// base units (vigie_check_perfdata_seconds{perf="time"}); malformed or "U" values skipped.
void ParsePerfData(absl::string_view text, Outcome* o);

}  // namespace vigie::agent::checks

#endif  // VIGIE_AGENT_CHECKS_CHECK_H_
