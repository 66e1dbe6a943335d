// The notifier's configuration, validated: NotifierConfig (YAML) -> NotifierOptions.
#ifndef VIGIE_NOTIFIER_OPTIONS_H_
#define VIGIE_NOTIFIER_OPTIONS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/grpc_security.h"
#include "common/http_server.h"
#include "notifier/delivery.h"
#include "notifier/webhook.h"
#include "vigie/v1/config.pb.h"

namespace vigie::notifier {

struct NotifierOptions {
  std::string grpc_listen = "127.0.0.1:7401";
  std::string http_listen = "127.0.0.1:9103";
  // Security: TLS on grpc_listen, the plaintext health port, and the token callers present.
  ServerTlsOptions tls;
  bool insecure_listener = false;
  std::string health_listen;
  std::string client_token;  // secret
  HttpAuth http_auth;
  DeliveryOptions delivery;
  std::vector<WebhookOptions> webhooks;
};

// Errors are InvalidArgument naming the field (e.g. "receivers[1].webhook.url") and the value.
absl::StatusOr<NotifierOptions> NotifierOptionsFromConfig(const v1::NotifierConfig& c);

}  // namespace vigie::notifier

#endif  // VIGIE_NOTIFIER_OPTIONS_H_
