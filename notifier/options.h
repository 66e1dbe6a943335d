// The notifier's configuration, validated: NotifierConfig (YAML) -> NotifierOptions.
#ifndef VIGIE_NOTIFIER_OPTIONS_H_
#define VIGIE_NOTIFIER_OPTIONS_H_

#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "common/grpc_security.h"
#include "common/http_server.h"
#include "notifier/deadman.h"
#include "notifier/delivery.h"
#include "notifier/email.h"
#include "notifier/router.h"
#include "notifier/slack.h"
#include "notifier/sms.h"
#include "notifier/webhook.h"
#include "vigie/v1/config.pb.h"

namespace vigie::notifier {

struct NotifierOptions {
  GrpcListenerOptions grpc;  // grpc_listen (default 127.0.0.1:7401), tls, health_listen
  std::string http_listen = "127.0.0.1:9103";
  std::string client_token;  // the token callers present; a secret
  HttpAuth http_auth;
  DeliveryOptions delivery;
  std::string database_url;  // secret; empty = no delivery log
  absl::Duration delivery_log_retention = absl::Hours(24 * 30);
  // Every channel of every receiver, in config order.
  struct ChannelConfig {
    std::string receiver;
    std::string kind;  // "webhook", "email", "slack", "sms"
    std::variant<WebhookOptions, EmailOptions, SlackOptions, SmsOptions> options;
  };
  std::vector<ChannelConfig> channels;
  // Who gets what (route, time_intervals); always set (without a route: everyone).
  std::shared_ptr<Router> router;
  DeadManOptions deadman;
};

// The channel a config describes.
std::unique_ptr<Channel> MakeChannel(const NotifierOptions::ChannelConfig& config);

// Errors are InvalidArgument naming the field (e.g. "receivers[1].webhook.url") and the value.
absl::StatusOr<NotifierOptions> NotifierOptionsFromConfig(const v1::NotifierConfig& c);

}  // namespace vigie::notifier

#endif  // VIGIE_NOTIFIER_OPTIONS_H_
