// Generic JSON webhook, payload compatible with Alertmanager's webhook (version "4"), so
// receivers written for Alertmanager work unchanged.
#ifndef VIGIE_NOTIFIER_WEBHOOK_H_
#define VIGIE_NOTIFIER_WEBHOOK_H_

#include <string>

#include "absl/time/time.h"
#include "notifier/channel.h"

namespace vigie::notifier {

struct WebhookOptions {
  std::string receiver;  // receiver name, put in the payload
  std::string url;
  absl::Duration timeout = absl::Seconds(10);
  bool send_resolved = true;
  std::string external_url;
  // When set, each request carries X-Vigie-Signature-256: sha256=<hex HMAC-SHA256 of the body>
  // (a secret).
  std::string hmac_secret;
};

// "sha256=" and the hex HMAC-SHA256 of `body` under `secret`.
std::string WebhookSignature(const std::string& secret, const std::string& body);

// The Alertmanager-compatible JSON body for one message: the alerts of one group.
std::string WebhookPayload(const Batch& batch, const std::string& receiver,
                           const std::string& external_url);

// POSTs WebhookPayload() (SendHttp: 2xx is success). Thread-safe. Requires curl_global_init()
// in main.
class WebhookChannel : public Channel {
 public:
  explicit WebhookChannel(WebhookOptions options) : options_(std::move(options)) {}
  absl::Status Send(const Batch& batch) override;
  bool send_resolved() const override { return options_.send_resolved; }

 private:
  const WebhookOptions options_;
};

}  // namespace vigie::notifier

#endif  // VIGIE_NOTIFIER_WEBHOOK_H_
