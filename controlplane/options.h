// The control plane's configuration, validated: ControlPlaneConfig (YAML) -> ControlPlaneOptions.
#ifndef VIGIE_CONTROLPLANE_OPTIONS_H_
#define VIGIE_CONTROLPLANE_OPTIONS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/backoff.h"
#include "common/grpc_security.h"
#include "common/http_server.h"
#include "controlplane/gateway.h"
#include "controlplane/remote_write.h"
#include "controlplane/rule_engine.h"
#include "vigie/v1/config.pb.h"

namespace vigie::controlplane {

struct ControlPlaneOptions {
  GrpcListenerOptions grpc;  // grpc_listen (default 127.0.0.1:7400), tls, health_listen
  std::string http_listen = "127.0.0.1:9102";
  HttpAuth http_auth;
  std::string database_url;           // a secret (may hold a password): never log it unredacted
  std::string bootstrap_admin_token;  // secret
  std::string notifier;
  std::string notifier_token;  // secret
  ClientSecurity notifier_security;
  int storage_workers = 4;
  absl::Duration retention_raw = absl::Hours(24 * 15);
  absl::Duration retention_rollups = absl::Hours(24 * 400);
  size_t series_cache_bytes = 64 << 20;
  size_t max_series_per_agent = 50000;
  std::vector<RemoteWriteOptions> remote_write;
  size_t max_message_bytes = 4 << 20;
  GatewayOptions gateway;
  BackoffPolicy notify_backoff;
  absl::Duration notifier_heartbeat_interval = absl::Seconds(60);
  std::vector<Rule> rules;
};

// Errors are InvalidArgument naming the field and the value.
absl::StatusOr<ControlPlaneOptions> ControlPlaneOptionsFromConfig(const v1::ControlPlaneConfig& c);

// `vigie-controlplane check-rules FILE`: the rules of a YAML file (the control plane's config,
// or a file with only `rules:`), validated as at start-up. Errors start with the path and name
// the field and the value, e.g. `rules.yaml: rules[2].op: unknown operator "=>"`.
absl::StatusOr<std::vector<Rule>> LoadRulesFile(const std::string& path);

}  // namespace vigie::controlplane

#endif  // VIGIE_CONTROLPLANE_OPTIONS_H_
