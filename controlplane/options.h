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
#include "controlplane/rule_engine.h"
#include "vigie/v1/config.pb.h"

namespace vigie::controlplane {

struct ControlPlaneOptions {
  std::string grpc_listen = "127.0.0.1:7400";
  std::string http_listen = "127.0.0.1:9102";
  std::string database_url;  // a secret (may hold a password): never log it unredacted
  // Security. insecure_listener: plaintext beyond loopback was asked for (warned about).
  ServerTlsOptions tls;
  bool insecure_listener = false;
  std::string health_listen;
  std::string bootstrap_admin_token;  // secret
  HttpAuth http_auth;
  std::string notifier;
  std::string notifier_token;  // secret
  ClientTlsOptions notifier_tls;
  int storage_workers = 4;
  size_t max_message_bytes = 4 << 20;
  GatewayOptions gateway;
  BackoffPolicy notify_backoff;
  std::vector<Rule> rules;
};

// Errors are InvalidArgument naming the field and the value.
absl::StatusOr<ControlPlaneOptions> ControlPlaneOptionsFromConfig(const v1::ControlPlaneConfig& c);

}  // namespace vigie::controlplane

#endif  // VIGIE_CONTROLPLANE_OPTIONS_H_
