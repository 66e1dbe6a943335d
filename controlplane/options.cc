#include "controlplane/options.h"

#include <algorithm>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/secrets.h"
#include "common/status.h"
#include "common/yaml_config.h"
#include "re2/re2.h"

namespace vigie::controlplane {

absl::StatusOr<ControlPlaneOptions> ControlPlaneOptionsFromConfig(const v1::ControlPlaneConfig& c) {
  ControlPlaneOptions o;
  VIGIE_ASSIGN_OR_RETURN(o.grpc, GrpcListenerFromConfig(c.grpc_listen(), "127.0.0.1:7400", c.tls(),
                                                        c.insecure(), c.health_listen()));
  if (IsSet(c.bootstrap_admin_token())) {
    VIGIE_ASSIGN_OR_RETURN(o.bootstrap_admin_token,
                           ReadSecret("bootstrap_admin_token", c.bootstrap_admin_token(), 32));
  }
  VIGIE_ASSIGN_OR_RETURN(o.http_listen,
                         ListenAddress("http_listen", c.http_listen(), o.http_listen));
  VIGIE_ASSIGN_OR_RETURN(o.http_auth, HttpAuthFromConfig("http", o.http_listen, c.http()));
  if (!c.database_url().empty() && IsSet(c.database_url_from())) {
    return absl::InvalidArgumentError(
        "database_url_from: set database_url or database_url_from, not both");
  }
  if (IsSet(c.database_url_from())) {
    VIGIE_ASSIGN_OR_RETURN(o.database_url, ReadSecret("database_url_from", c.database_url_from()));
  } else {
    o.database_url = c.database_url();
  }
  if (o.database_url.empty()) {
    return absl::InvalidArgumentError(
        "database_url: required (or database_url_from: {file: ...}), e.g. "
        "\"postgresql://vigie@127.0.0.1:5432/vigie\"");
  }
  o.notifier = c.notifier();
  if (!o.notifier.empty()) {
    VIGIE_RETURN_IF_ERROR(ValidateHostPort("notifier", o.notifier));
    if (!IsSet(c.notifier_token())) {
      return absl::InvalidArgumentError(
          "notifier_token: required with notifier (the notifier refuses unauthenticated calls)");
    }
    VIGIE_ASSIGN_OR_RETURN(o.notifier_token, ReadSecret("notifier_token", c.notifier_token()));
    VIGIE_ASSIGN_OR_RETURN(o.notifier_security,
                           ClientSecurityFromConfig("notifier_tls", "notifier", o.notifier,
                                                    c.notifier_tls(), /*insecure=*/false));
  }
  if (c.storage_workers() != 0) o.storage_workers = static_cast<int>(c.storage_workers());
  if (o.storage_workers > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("storage_workers: at most 64, got ", c.storage_workers()));
  }
  if (c.max_inflight_per_stream() != 0) {
    o.gateway.max_inflight_per_stream = c.max_inflight_per_stream();
  }
  if (o.gateway.max_inflight_per_stream > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_inflight_per_stream: at most 1024, got ", c.max_inflight_per_stream()));
  }
  if (c.max_message_bytes() != 0) o.max_message_bytes = c.max_message_bytes();
  if (o.max_message_bytes < 1024 || o.max_message_bytes > (64u << 20)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_message_bytes: must be between 1024 and 67108864, got ", c.max_message_bytes()));
  }
  o.gateway.max_message_bytes = o.max_message_bytes;
  if (c.max_streams() != 0) o.gateway.max_streams = c.max_streams();
  if (c.max_inflight_bytes() != 0) o.gateway.max_inflight_bytes = c.max_inflight_bytes();
  if (o.gateway.max_inflight_bytes < o.max_message_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_inflight_bytes: must be at least max_message_bytes (",
                     o.max_message_bytes, "), got ", c.max_inflight_bytes()));
  }
  VIGIE_ASSIGN_OR_RETURN(
      o.gateway.hello_timeout,
      ParseConfigDuration("hello_timeout", c.hello_timeout(), o.gateway.hello_timeout));
  if (o.gateway.hello_timeout < absl::Seconds(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("hello_timeout: at least 1s, got \"", c.hello_timeout(), "\""));
  }
  VIGIE_ASSIGN_OR_RETURN(
      o.retention_raw, ParseConfigDuration("retention.raw", c.retention().raw(), o.retention_raw));
  if (o.retention_raw < absl::Hours(48)) {
    return absl::InvalidArgumentError(
        absl::StrCat("retention.raw: at least 2d, got \"", c.retention().raw(), "\""));
  }
  VIGIE_ASSIGN_OR_RETURN(o.retention_rollups,
                         ParseConfigDuration("retention.rollups", c.retention().rollups(),
                                             std::max(o.retention_rollups, o.retention_raw)));
  if (o.retention_rollups < o.retention_raw) {
    return absl::InvalidArgumentError(absl::StrCat("retention.rollups: at least retention.raw (",
                                                   absl::FormatDuration(o.retention_raw),
                                                   "), got \"", c.retention().rollups(), "\""));
  }
  if (c.series_cache_bytes() != 0) o.series_cache_bytes = c.series_cache_bytes();
  if (c.max_series_per_agent() != 0) o.max_series_per_agent = c.max_series_per_agent();
  if (o.series_cache_bytes < (1 << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("series_cache_bytes: at least 1048576, got ", c.series_cache_bytes()));
  }
  static const RE2 kName("[A-Za-z0-9._-]{1,64}");
  std::set<std::string> remote_names;
  for (int i = 0; i < c.remote_write_size(); ++i) {
    const v1::RemoteWrite& r = c.remote_write(i);
    const std::string field = absl::StrCat("remote_write[", i, "]");
    RemoteWriteOptions w;
    w.name = r.name();
    if (!RE2::FullMatch(w.name, kName)) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".name: \"", w.name, "\" must be 1-64 characters of A-Z a-z 0-9 . _ -"));
    }
    if (!remote_names.insert(w.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".name: \"", w.name, "\" is used by an earlier remote_write"));
    }
    w.url = r.url();
    const bool https = absl::StartsWith(w.url, "https://");
    if (!https && !absl::StartsWith(w.url, "http://")) {
      // Not echoed: URLs may carry credentials.
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".url: must start with http:// or https://"));
    }
    if (r.has_bearer_token()) {
      VIGIE_ASSIGN_OR_RETURN(w.bearer_token,
                             ReadSecret(absl::StrCat(field, ".bearer_token"), r.bearer_token()));
    }
    w.basic_auth_username = r.basic_auth_username();
    if (r.has_basic_auth_password()) {
      VIGIE_ASSIGN_OR_RETURN(
          w.basic_auth_password,
          ReadSecret(absl::StrCat(field, ".basic_auth_password"), r.basic_auth_password()));
    }
    if (!https && !r.insecure() && (!w.bearer_token.empty() || !w.basic_auth_password.empty())) {
      absl::string_view rest = absl::string_view(w.url).substr(7);
      const std::string host_port(rest.substr(0, rest.find('/')));
      if (!IsLoopback(host_port)) {
        return absl::InvalidArgumentError(
            absl::StrCat(field,
                         ".url: credentials over plain http beyond loopback; use https:// or set "
                         "insecure: true"));
      }
    }
    w.ca_file = r.ca_file();
    VIGIE_ASSIGN_OR_RETURN(
        w.timeout, ParseConfigDuration(absl::StrCat(field, ".timeout"), r.timeout(), w.timeout));
    // A chunk is sent inside the transaction holding its cursor: keep it well under the
    // session's idle-in-transaction timeout (120 s).
    if (w.timeout < absl::Milliseconds(100) || w.timeout > absl::Seconds(60)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".timeout: between 100ms and 60s, got \"", r.timeout(), "\""));
    }
    if (r.shards() != 0) w.shards = static_cast<int>(r.shards());
    if (w.shards > 16) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".shards: at most 16, got ", r.shards()));
    }
    if (r.max_samples_per_send() != 0) w.max_samples_per_send = r.max_samples_per_send();
    if (w.max_samples_per_send > 100000) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".max_samples_per_send: at most 100000, got ", r.max_samples_per_send()));
    }
    VIGIE_ASSIGN_OR_RETURN(
        w.backoff, BackoffFromConfig(absl::StrCat(field, ".backoff"), r.backoff(), w.backoff));
    o.remote_write.push_back(std::move(w));
  }
  if (c.max_samples_per_batch() != 0) o.gateway.max_samples_per_batch = c.max_samples_per_batch();
  if (c.max_labels_per_sample() != 0) o.gateway.max_labels_per_sample = c.max_labels_per_sample();
  VIGIE_ASSIGN_OR_RETURN(o.gateway.heartbeat_interval,
                         ParseConfigDuration("heartbeat_interval", c.heartbeat_interval(),
                                             o.gateway.heartbeat_interval));
  if (o.gateway.heartbeat_interval < absl::Seconds(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("heartbeat_interval: at least 1s, got \"", c.heartbeat_interval(), "\""));
  }
  VIGIE_ASSIGN_OR_RETURN(
      o.notifier_heartbeat_interval,
      ParseConfigDuration("notifier_heartbeat_interval", c.notifier_heartbeat_interval(),
                          o.notifier_heartbeat_interval));
  if (o.notifier_heartbeat_interval < absl::Seconds(1)) {
    return absl::InvalidArgumentError("notifier_heartbeat_interval: at least 1s");
  }
  VIGIE_ASSIGN_OR_RETURN(o.notify_backoff,
                         BackoffFromConfig("notify_backoff", c.notify_backoff(), o.notify_backoff));
  o.gateway.generator_url =
      c.external_url().empty() ? absl::StrCat("http://", o.http_listen, "/") : c.external_url();
  VIGIE_ASSIGN_OR_RETURN(o.rules, RulesFromProto(c.rules()));
  return o;
}

absl::StatusOr<std::vector<Rule>> LoadRulesFile(const std::string& path) {
  v1::ControlPlaneConfig config;
  VIGIE_RETURN_IF_ERROR(LoadYamlConfigFile(path, &config));
  absl::StatusOr<std::vector<Rule>> rules = RulesFromProto(config.rules());
  if (!rules.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", rules.status().message()));
  }
  return rules;
}

}  // namespace vigie::controlplane
